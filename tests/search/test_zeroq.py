"""zeroq-dp: the Pareto-frontier DP equals brute force; the driver proposes its frontier."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np

import haq
from haq.search.drivers.zeroq import pareto_dp


def _brute(costs: list[list[int]], pens: list[list[float]]) -> list[tuple[int, float]]:
    points = [(sum(c[k] for c, k in zip(costs, ks, strict=True)),
               sum(p[k] for p, k in zip(pens, ks, strict=True)))
              for ks in itertools.product(*(range(len(c)) for c in costs))]  # fmt: skip
    front = []
    for cost, pen in sorted(points):
        if not front or pen < front[-1][1] - 1e-12:
            front.append((cost, pen))
    return front


def test_dp_frontier_matches_brute_force() -> None:
    rng = np.random.default_rng(0)
    for _ in range(30):
        n_vars = int(rng.integers(1, 6))
        costs = [list(rng.integers(0, 9, size=int(rng.integers(1, 4)))) for _ in range(n_vars)]
        pens = [list(rng.random(len(c)).round(3)) for c in costs]
        got = pareto_dp(costs, pens)
        assert [(c, round(p, 9)) for c, p, _ in got] == [
            (c, round(p, 9)) for c, p in _brute(costs, pens)
        ]
        for cost, pen, picks in got:  # the choices reproduce their own totals
            assert cost == sum(c[k] for c, k in zip(costs, picks, strict=True))
            assert abs(pen - sum(p[k] for p, k in zip(pens, picks, strict=True))) < 1e-9


def test_driver_proposes_its_frontier_cheapest_first(tmp_path: Path) -> None:
    res = haq.search(model="digits_cnn", target="npu-bitfusion-edge", driver="zeroq-dp", budget=12,
                     workers=0, progress=False, out=str(tmp_path / "z"))  # fmt: skip
    dp = res.trials[res.trials["source"] == "dp"]
    assert len(dp) >= 3
    assert dp["latency_ms"].is_monotonic_increasing  # proposed in the frontier's cost order
