"""The hybrid driver: the first ILP sweep covers the cost range coarse to fine, each solution
meets its penalty level, the re-fitted sweep follows the measured drops, and the evolution
tries a choice no faster than a higher-bit one only once the undominated moves stop paying."""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import numpy as np

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


def _driver(tmp_path: Path, ilp_points: int = 8, target: str = "npu-bitfusion-edge",
            **options: str):  # fmt: skip
    opts = SearchOptions(model="digits_cnn", target=target, budget=40,
                         out=str(tmp_path / target), progress=False)  # fmt: skip
    search = Search(opts)
    ctx = search.driver_context()
    driver = get_driver("hybrid").make({"ilp_points": str(ilp_points), **options})
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


def test_loss_mode_sweeps_the_kl_and_signs_only_the_surrogate_prior(tmp_path: Path) -> None:
    _, driver = _driver(tmp_path, sensitivity="loss")
    assert driver.mode == "loss"
    table = driver.table
    # what the ILP sums is the KL, never negative: signed noise summed over many layers
    # would let it lower every layer for free
    for v, o in driver.cols:
        assert driver.penalty(v, o) == max(table.score(v, o), 0.0)
    # the surrogate's prior adds the label term beyond its noise, which may be negative
    for k, (i, o) in enumerate(driver.pairs):
        v = driver.var_names[i]
        assert driver.pair_pen[k] == table.score(v, o) + table.score(v, o, "label")
    assert (driver.pair_pen < 0).any()
    kl_driver = _driver(tmp_path / "kl", sensitivity="kl")[1]
    assert (kl_driver.pair_pen >= 0).all()


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


def _tell_all(search: Search, driver, configs, top1: float) -> None:
    i, k = search.objectives.index("top1"), search.objectives.index("latency")
    for n, cfg in enumerate(configs):
        values = [0.0] * len(search.objectives)
        values[i], values[k] = top1, search.cost_model.score(cfg).latency_ms
        driver.tell(TrialRecord(len(driver.records), cfg, None, "complete", "complete",
                                source="baseline" if n == 0 else "ilp", values=values))  # fmt: skip


def _started(tmp_path: Path, target: str) -> tuple[Search, Any]:
    search, driver = _driver(tmp_path, target=target)
    _tell_all(search, driver, [driver.reference], 90.0)
    return search, driver


def test_equally_fast_lower_bits_wait_until_the_undominated_moves_stop_paying(
    tmp_path: Path,
) -> None:
    # on the T4 w6a8 runs the int8 kernel: as fast as w8a8, so only worth a try later
    _, driver = _started(tmp_path, "gpu-t4")
    first = driver._evolve(1, pending=[])
    assert first and driver._undominated(driver._params(first[0].config))
    # on this int8-only CPU every choice of 8 bits or fewer runs the int8 kernel; with every
    # config of the undominated choices evaluated (all equally accurate) the lower-bit ones
    # (as fast, possibly more accurate) are tried
    search, driver = _started(tmp_path, "cpu-avx512")
    assert all(set(driver.choices[v]) < set(o) for v, o in driver.vars if len(o) > 2)
    plain = list(itertools.product(*(driver.choices[v] for v in driver.var_names)))
    _tell_all(search, driver, [driver._config(p) for p in plain], 90.0)
    later = driver._evolve(4, pending=[])
    assert later and not any(driver._undominated(driver._params(p.config)) for p in later)
