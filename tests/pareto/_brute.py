"""Brute-force references written independently of haq.pareto: plain loops in the original
(mixed-direction) space, no negation trick, so a shared bug cannot hide."""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence

import numpy as np


def better_eq(a: float, b: float, direction: str) -> bool:
    return a <= b if direction == "minimize" else a >= b


def strictly_better(a: float, b: float, direction: str) -> bool:
    return a < b if direction == "minimize" else a > b


def brute_dominates(a: Sequence[float], b: Sequence[float], dirs: Sequence[str]) -> bool:
    if any(math.isnan(x) for x in [*a, *b]):
        return False
    return all(better_eq(x, y, d) for x, y, d in zip(a, b, dirs, strict=True)) and any(
        strictly_better(x, y, d) for x, y, d in zip(a, b, dirs, strict=True)
    )


def brute_mask(points: np.ndarray, dirs: Sequence[str]) -> np.ndarray:
    pts = [list(map(float, p)) for p in points]
    out = []
    for i, p in enumerate(pts):
        if any(math.isnan(x) for x in p):
            out.append(False)
            continue
        out.append(not any(brute_dominates(q, p, dirs) for j, q in enumerate(pts) if j != i))
    return np.array(out, dtype=bool)


def brute_ranks(points: np.ndarray, dirs: Sequence[str]) -> np.ndarray:
    """Peel fronts one at a time with the brute-force mask."""
    n = len(points)
    ranks = np.full(n, -1)
    left = [i for i in range(n) if not np.isnan(points[i]).any()]
    rank = 0
    while left:
        sub = points[left]
        m = brute_mask(sub, dirs)
        for i, keep in zip(left, m, strict=True):
            if keep:
                ranks[i] = rank
        left = [i for i, keep in zip(left, m, strict=True) if not keep]
        rank += 1
    return ranks


def _beats_ref(p: Sequence[float], ref: Sequence[float], dirs: Sequence[str]) -> bool:
    return not any(math.isnan(x) for x in p) and all(
        strictly_better(x, r, d) for x, r, d in zip(p, ref, dirs, strict=True)
    )


def hv_inclusion_exclusion(points: np.ndarray, dirs: Sequence[str], ref: Sequence[float]) -> float:
    """Exact: sum over non-empty subsets of (-1)^(|S|+1) * volume(intersection of boxes)."""
    pts = [list(map(float, p)) for p in points if _beats_ref(p, ref, dirs)]
    assert len(pts) <= 12, "inclusion-exclusion is exponential"
    total = 0.0
    for r in range(1, len(pts) + 1):
        for subset in itertools.combinations(pts, r):
            vol = 1.0
            for j, d in enumerate(dirs):
                col = [p[j] for p in subset]
                worst = max(col) if d == "minimize" else min(col)
                vol *= abs(ref[j] - worst)
            total += (-1) ** (r + 1) * vol
    return total


def hv_grid(points: np.ndarray, dirs: Sequence[str], ref: Sequence[int]) -> int:
    """Exact for integer coordinates: count the unit cells inside some point's box."""
    pts = [list(map(float, p)) for p in points if _beats_ref(p, ref, dirs)]
    if not pts:
        return 0
    ranges = []
    for j, d in enumerate(dirs):
        best = min(p[j] for p in pts) if d == "minimize" else max(p[j] for p in pts)
        lo, hi = (int(best), int(ref[j])) if d == "minimize" else (int(ref[j]), int(best))
        ranges.append(range(lo, hi))  # cell [c, c + 1)
    count = 0
    for cell in itertools.product(*ranges):
        for p in pts:
            inside = True
            for j, d in enumerate(dirs):
                c = cell[j]
                if d == "minimize":
                    inside = p[j] <= c and c + 1 <= ref[j]
                else:
                    inside = p[j] >= c + 1 and c >= ref[j]
                if not inside:
                    break
            if inside:
                count += 1
                break
    return count
