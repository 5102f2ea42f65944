"""Pareto dominance, the non-dominated mask and front ranks for any number of objectives.

Everything is reduced to minimisation first (maximised columns are negated), so one set of
comparisons serves every mix of directions. NaN rows are never on a front and never dominate
anything: a trial whose accuracy or cost is unknown must not hide a measured one.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from numpy.typing import ArrayLike, NDArray

DIRECTIONS = ("minimize", "maximize")

# Rows of the candidate block per chunk, so the (chunk, n) comparison stays near 16 MB.
_CHUNK_ELEMENTS = 1 << 24


def validate_directions(directions: Sequence[str]) -> list[str]:
    """Lower-cased directions; a typo such as "max" must fail loudly, not flip an objective."""
    if isinstance(directions, str):
        raise ValueError(f"directions must be a sequence of strings, got the string {directions!r}")
    out = []
    for d in directions:
        norm = str(d).strip().lower()
        if norm not in DIRECTIONS:
            raise ValueError(f"direction must be 'minimize' or 'maximize', got {d!r}")
        out.append(norm)
    if not out:
        raise ValueError("need at least one objective direction")
    return out


def as_minimization(points: ArrayLike, directions: Sequence[str]) -> NDArray[np.float64]:
    """An (n, d) float copy with maximised columns negated, so smaller is better everywhere."""
    dirs = validate_directions(directions)
    arr = np.array(points, dtype=np.float64, copy=True)
    if arr.size == 0:
        arr = arr.reshape(0, len(dirs))
    if arr.ndim != 2:
        raise ValueError(
            f"points must be a 2-D (n_points, n_objectives) array, got shape {arr.shape}"
        )
    if arr.shape[1] != len(dirs):
        raise ValueError(
            f"points have {arr.shape[1]} objective columns but {len(dirs)} directions were given"
        )
    for j, d in enumerate(dirs):
        if d == "maximize":
            arr[:, j] = -arr[:, j]
    return arr


def _as_vector(p: ArrayLike, directions: Sequence[str]) -> NDArray[np.float64]:
    arr = np.asarray(p, dtype=np.float64).reshape(1, -1)
    return as_minimization(arr, directions)[0]


def dominates(a: ArrayLike, b: ArrayLike, directions: Sequence[str]) -> bool:
    """True if ``a`` is no worse than ``b`` everywhere and strictly better somewhere.

    Identical points do not dominate each other; a NaN in either point gives False.
    """
    x, y = _as_vector(a, directions), _as_vector(b, directions)
    if np.isnan(x).any() or np.isnan(y).any():
        return False
    return bool(np.all(x <= y) and np.any(x < y))


def _dominated_by_any(cand: NDArray[np.float64], others: NDArray[np.float64]) -> NDArray[np.bool_]:
    """For each row of ``cand``: is it dominated by some row of ``others``? (no NaN allowed)"""
    n_c, n_o = cand.shape[0], others.shape[0]
    out = np.zeros(n_c, dtype=bool)
    if n_c == 0 or n_o == 0:
        return out
    step = max(1, _CHUNK_ELEMENTS // max(1, n_o))
    for start in range(0, n_c, step):
        block = cand[start : start + step]
        le = np.ones((block.shape[0], n_o), dtype=bool)  # others[j] <= block[i] in every column
        lt = np.zeros((block.shape[0], n_o), dtype=bool)  # others[j] < block[i] in some column
        for k in range(cand.shape[1]):
            col_o = others[None, :, k]
            col_b = block[:, k, None]
            le &= col_o <= col_b
            lt |= col_o < col_b
        out[start : start + step] = (le & lt).any(axis=1)
    return out


def domination_matrix(min_points: NDArray[np.float64]) -> NDArray[np.bool_]:
    """``D[i, j]`` is True when row i dominates row j (minimisation, rows without NaN)."""
    n, d = min_points.shape
    le = np.ones((n, n), dtype=bool)
    lt = np.zeros((n, n), dtype=bool)
    for k in range(d):
        col = min_points[:, k]
        le &= col[:, None] <= col[None, :]
        lt |= col[:, None] < col[None, :]
    return le & lt


def non_dominated_mask(points: ArrayLike, directions: Sequence[str]) -> NDArray[np.bool_]:
    """Boolean mask of the rows no other row dominates.

    NaN rows are False and are ignored as dominators; identical points are all kept.
    """
    pts = as_minimization(points, directions)
    valid = ~np.isnan(pts).any(axis=1)
    mask = np.zeros(pts.shape[0], dtype=bool)
    good = pts[valid]
    mask[valid] = ~_dominated_by_any(good, good)
    return mask


def non_dominated_sort(points: ArrayLike, directions: Sequence[str]) -> NDArray[np.int64]:
    """Front rank per row: 0 for the Pareto front, 1 for the front once rank 0 is removed, ...

    NaN rows get rank -1 (unranked). One domination matrix is built (n^2 booleans, 25 MB at
    n = 5000) and fronts are peeled off by counting dominators, so the whole sort is O(n^2 d)
    however many fronts there are.
    """
    pts = as_minimization(points, directions)
    n = pts.shape[0]
    ranks = np.full(n, -1, dtype=np.int64)
    valid_idx = np.flatnonzero(~np.isnan(pts).any(axis=1))
    if valid_idx.size == 0:
        return ranks
    dom = domination_matrix(pts[valid_idx])
    n_dominators = dom.sum(axis=0)
    remaining = np.ones(valid_idx.size, dtype=bool)
    rank = 0
    current = n_dominators == 0
    while current.any():
        ranks[valid_idx[current]] = rank
        remaining &= ~current
        n_dominators = n_dominators - dom[current].sum(axis=0)
        current = remaining & (n_dominators == 0)
        rank += 1
    return ranks
