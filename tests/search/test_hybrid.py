"""The hybrid driver's ILP phases: the first sweep covers the cost range coarse to fine, each
solution meets its penalty level, and the re-fitted sweep follows the measured drops; its
evolution credits no area to accuracy above the best baseline's."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from haq.config import BitConfig
from haq.search.drivers import get_driver
from haq.search.drivers.hybrid import coarse_to_fine
from haq.search.drivers.surrogate import CURVATURE, DropFit
from haq.search.options import SearchOptions
from haq.search.runner import Search
from haq.search.trials import TrialRecord


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
    swept = driver._refit_sweep(DropFit(w, anchor=90.0, sigma=0.5, curvature=CURVATURE))
    assert swept and all(p[0] == driver.ref_params[0] for p in swept)
    assert any(p != driver.ref_params for p in swept)  # the free variables are lowered


def test_accuracy_above_the_best_baseline_earns_no_area(tmp_path: Path) -> None:
    search, driver = _driver(tmp_path)
    i = search.objectives.index("top1")
    names = search.space.names

    def rec(n: int, source: str, top1: float) -> TrialRecord:
        values = [0.0] * len(search.objectives)
        values[i] = top1
        return TrialRecord(n, BitConfig.uniform("w8a8", names), None, "complete", "complete",
                           source=source, values=values)  # fmt: skip

    recs = [rec(0, "baseline", 90.0), rec(1, "baseline", 89.0), rec(2, "evolution", 93.0)]
    fit = DropFit(np.zeros(len(driver.pairs)), anchor=89.0, sigma=0.5, curvature=CURVATURE)
    values = np.array([r.values for r in recs])
    capped = driver._ceiled(values, recs, {i: fit})
    assert capped[:, i].tolist() == [90.0, 89.0, 90.5]  # the lucky one capped at 90 + sigma
