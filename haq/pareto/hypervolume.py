"""Exact hypervolume (the volume a front dominates up to a reference point), any dimension.

Used to compare search runs with one number that rewards both reaching further and covering
the trade-off. Methods, all exact and deterministic:

* 1-D: the distance from the best point to the reference.
* 2-D: sort by the first objective and sum the staircase strips.
* 3-D: sweep along the third objective, keeping the 2-D staircase of the points seen so far
  and its area up to date (O(n log n) searches plus list edits).
* d >= 4: WFG (While, Bradstreet & Barone, 2012): points sorted worst-first in the last
  objective, so each point's exclusive volume is its slab height times a (d-1)-D exclusive
  area; that area is the point's box minus the hypervolume of the non-dominated "limit set".
  Recursion bottoms out in the 3-D sweep. Fine for the < 200 point fronts the search keeps.
"""

from __future__ import annotations

import bisect
from collections.abc import Sequence

import numpy as np
from numpy.typing import ArrayLike, NDArray

from haq.pareto.sorting import _dominated_by_any, as_minimization, validate_directions


def default_reference(
    points: ArrayLike, directions: Sequence[str], margin: float = 0.1
) -> NDArray[np.float64]:
    """A reference point slightly worse than the worst finite value of each objective.

    Per column: minimise -> ``max + margin * range``; maximise -> ``min - margin * range``
    (so for accuracy it sits just below the worst accuracy). When a column has zero range the
    offset is ``margin * max(|worst|, 1)`` so the reference still lies strictly beyond every
    point. A positive margin lets the extreme points of the front count; margin 0 gives the
    nadir, where they contribute nothing. Rows with NaN are ignored. The result depends on the
    points, so pass one fixed reference when comparing the hypervolumes of different runs.
    """
    if margin < 0:
        raise ValueError(f"margin must be >= 0, got {margin}")
    dirs = validate_directions(directions)
    arr = np.array(points, dtype=np.float64)
    if arr.size == 0:
        arr = arr.reshape(0, len(dirs))
    pts = as_minimization(arr, dirs)
    pts = pts[np.isfinite(pts).all(axis=1)]
    if pts.shape[0] == 0:
        raise ValueError("default_reference needs at least one finite point")
    worst = pts.max(axis=0)
    span = worst - pts.min(axis=0)
    offset = np.where(span > 0, margin * span, margin * np.maximum(np.abs(worst), 1.0))
    ref_min = worst + offset
    sign = np.array([-1.0 if d == "maximize" else 1.0 for d in dirs])
    return ref_min * sign


def hypervolume(points: ArrayLike, directions: Sequence[str], reference: ArrayLike) -> float:
    """Volume dominated by ``points`` and bounded by ``reference``.

    Points that are not strictly better than the reference in every objective, and rows with
    NaN, contribute nothing. A point infinitely good in some objective gives ``inf``.
    """
    dirs = validate_directions(directions)
    pts = as_minimization(points, dirs)
    ref = as_minimization(np.asarray(reference, dtype=np.float64).reshape(1, -1), dirs)[0]
    if not np.isfinite(ref).all():
        raise ValueError(f"reference must be finite, got {reference!r}")
    pts = pts[~np.isnan(pts).any(axis=1)]
    pts = pts[(pts < ref).all(axis=1)]
    if pts.shape[0] == 0:
        return 0.0
    if not np.isfinite(pts).all():
        return float("inf")
    # Duplicates and dominated points add nothing; dropping them keeps WFG's limit sets small.
    pts = np.unique(pts, axis=0)
    pts = pts[~_dominated_by_any(pts, pts)]
    return float(_hv(pts, ref))


def _hv(pts: NDArray[np.float64], ref: NDArray[np.float64]) -> float:
    """Hypervolume of a non-dominated, duplicate-free, minimisation set beaten by ``ref``."""
    n, d = pts.shape
    if n == 0:
        return 0.0
    if d == 1:
        return float(ref[0] - pts[:, 0].min())
    if n == 1:
        return float(np.prod(ref - pts[0]))
    if d == 2:
        return _hv2(pts, ref)
    if d == 3:
        return _hv3(pts, ref)
    return _wfg(pts, ref)


def _hv2(pts: NDArray[np.float64], ref: NDArray[np.float64]) -> float:
    """Staircase sum; tolerant of dominated points and duplicates via the running minimum."""
    order = np.lexsort((pts[:, 1], pts[:, 0]))
    x = pts[order, 0]
    y_best = np.minimum.accumulate(pts[order, 1])
    widths = np.diff(np.append(x, ref[0]))
    return float(np.sum(widths * (ref[1] - y_best)))


def _hv3(pts: NDArray[np.float64], ref: NDArray[np.float64]) -> float:
    """Sweep the third objective upwards, maintaining the 2-D staircase and its area."""
    order = np.lexsort((pts[:, 1], pts[:, 0], pts[:, 2]))
    p = pts[order]
    rx, ry, rz = float(ref[0]), float(ref[1]), float(ref[2])
    xs: list[float] = []  # staircase: x ascending, y strictly descending
    ys: list[float] = []
    area = 0.0
    volume = 0.0
    n = p.shape[0]
    for i in range(n):
        qx, qy, qz = float(p[i, 0]), float(p[i, 1]), float(p[i, 2])
        j = bisect.bisect_right(xs, qx) - 1
        if not (j >= 0 and ys[j] <= qy):  # q adds area unless weakly dominated in 2-D
            k = bisect.bisect_left(xs, qx)
            top = ys[k - 1] if k > 0 else ry
            e = k
            gained = 0.0
            cur_x, cur_h = qx, top - qy
            while e < len(xs) and ys[e] >= qy:  # staircase points q now covers
                gained += (xs[e] - cur_x) * cur_h
                cur_x, cur_h = xs[e], ys[e] - qy
                e += 1
            end_x = xs[e] if e < len(xs) else rx
            gained += (end_x - cur_x) * cur_h
            area += gained
            xs[k:e] = [qx]
            ys[k:e] = [qy]
        next_z = float(p[i + 1, 2]) if i + 1 < n else rz
        volume += area * (next_z - qz)
    return volume


def _wfg(pts: NDArray[np.float64], ref: NDArray[np.float64]) -> float:
    """WFG with the last objective peeled: slab height times the exclusive (d-1)-D area."""
    # Worst first in the last objective (ties broken by the other columns, for determinism):
    # every later point is no worse there, so its limit against the current point has the
    # current point's last coordinate and the slab factors out.
    keys = tuple(pts[:, j] for j in range(pts.shape[1] - 2, -1, -1)) + (-pts[:, -1],)
    p = pts[np.lexsort(keys)]
    head, last = p[:, :-1], p[:, -1]
    sub_ref = ref[:-1]
    total = 0.0
    n = p.shape[0]
    for k in range(n):
        height = ref[-1] - last[k]
        if height <= 0:
            continue
        box = float(np.prod(sub_ref - head[k]))
        rest = head[k + 1 :]
        if rest.shape[0]:
            limit = np.maximum(rest, head[k])  # the part of each later box inside k's box
            limit = limit[(limit < sub_ref).all(axis=1)]
            if limit.shape[0]:
                limit = np.unique(limit, axis=0)
                limit = limit[~_dominated_by_any(limit, limit)]
                box -= _hv(limit, sub_ref)
        total += height * box
    return total


def hypervolume_gains(
    front: ArrayLike, candidates: ArrayLike, directions: Sequence[str], reference: ArrayLike
) -> NDArray[np.float64]:
    """For each candidate, the hypervolume it would add to ``front`` on its own.

    Two objectives are vectorised over the front's staircase (a search scores thousands of
    candidates per proposal); more objectives take the exact difference point by point.
    """
    dirs = validate_directions(directions)
    f = as_minimization(np.asarray(front, dtype=np.float64).reshape(-1, len(dirs)), dirs)
    c = as_minimization(np.asarray(candidates, dtype=np.float64).reshape(-1, len(dirs)), dirs)
    ref = as_minimization(np.asarray(reference, dtype=np.float64).reshape(1, -1), dirs)[0]
    if len(dirs) != 2:
        minimise = ["minimize"] * len(dirs)
        base = hypervolume(f, minimise, ref)
        return np.array([hypervolume(np.vstack([f, p]), minimise, ref) - base for p in c])
    f = f[~np.isnan(f).any(axis=1)]
    f = f[(f < ref).all(axis=1)]
    order = np.argsort(f[:, 0], kind="stable")
    xs = f[order, 0]
    ys = np.minimum.accumulate(f[order, 1]) if len(f) else np.empty(0)
    # s(t) = best y among front points with x <= t: +inf before xs[0], then ys[j] on [xs[j], xs[j+1])
    starts = np.concatenate([[-np.inf], xs])
    ends = np.concatenate([xs, [ref[0]]])
    level = np.minimum(np.concatenate([[np.inf], ys]), ref[1])
    cx, cy = c[:, :1], c[:, 1:2]
    lo = np.maximum(starts[None, :], cx)
    width = np.clip(np.minimum(ends[None, :], ref[0]) - lo, 0.0, None)
    height = np.clip(level[None, :] - cy, 0.0, None)
    gains = (width * height).sum(axis=1)
    bad = np.isnan(c).any(axis=1) | ~(c < ref).all(axis=1)
    gains[bad] = 0.0
    return gains
