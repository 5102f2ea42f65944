"""The hybrid driver's ILP phases: the first sweep covers the cost range coarse to fine, each
solution meets its penalty level, and the re-fitted sweep follows the measured drops."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from haq.search.drivers import get_driver
from haq.search.drivers.hybrid import coarse_to_fine
from haq.search.runner import Search, SearchOptions


def test_coarse_to_fine_is_a_permutation_ends_first() -> None:
    for n in range(12):
        order = coarse_to_fine(n)
        assert sorted(order) == list(range(n))
    assert coarse_to_fine(9)[:3] == [0, 8, 4]


def _driver(tmp_path: Path, ilp_points: int = 8):
    opts = SearchOptions(model="digits_cnn", target="npu-bitfusion-edge", budget=40,
                         out=str(tmp_path / "r"), progress=False)  # fmt: skip
    search = Search(opts)
    ctx = search.driver_context()
    driver = get_driver("hybrid").make({"ilp_points": str(ilp_points)})
    driver.start(ctx, [], None)
    return search, driver


def test_first_sweep_spreads_over_cost_and_meets_penalty_levels(tmp_path: Path) -> None:
    search, driver = _driver(tmp_path)
    ilp = [p for p in driver.ask(30) if p.source == "ilp"]
    assert 4 <= len(ilp) <= 8
    lat = [search.cost_model.score(p.config).latency_ms for p in ilp]
    # both ends of the sweep come first, then the middle
    assert lat[0] == min(lat) and lat[1] == max(lat)
    assert min(lat[:2]) < lat[2] < max(lat[:2])
    for p in ilp:
        summed = sum(driver.penalty(v, str(p.config[v])) for v, _ in driver.vars)
        assert summed <= p.driver_attrs["penalty_budget"] * (1 + 1e-6) + 1e-9


def test_refit_sweep_follows_the_fitted_drops(tmp_path: Path) -> None:
    _, driver = _driver(tmp_path)
    # pretend one variable's every lower choice costs 100 points: no swept config may touch it
    w = np.zeros(len(driver.pairs))
    victim = driver.var_names[0]
    for k, (i, _o) in enumerate(driver.pairs):
        if driver.var_names[i] == victim:
            w[k] = 100.0
    swept = driver._refit_sweep(w)
    assert swept and all(p[0] == driver.ref_params[0] for p in swept)
    assert any(p != driver.ref_params for p in swept)  # the free variables are lowered
