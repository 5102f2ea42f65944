"""Conformance suite for search drivers: every registered driver must pass it.

Run against real searches on the embedded ``digits_cnn`` (seconds each): a driver stays inside
the space and its pins, proposes no config twice, keeps every evaluated config inside a hard
cost budget, gives the same proposals for the same seed, and resumes after ``kill -9``
without losing or repeating a trial. `tests/testing/test_driver_conformance.py` parametrises
it over `conformance_drivers()`, so registering a driver enrols it; a driver that needs a
smaller space for the suite adds one line to `SUITE_OPTIONS`.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd

from haq.config import BitConfig, Precision

MODEL = "digits_cnn"
TARGET = "npu-bitfusion-edge"
PIN = "conv1=w8a8"
PTQ = "none,bias-correction"  # refinement choices of the space check (cheap to apply)
# Extra search options per driver (exhaustive needs a space small enough to enumerate).
SUITE_OPTIONS: dict[str, dict[str, Any]] = {
    "exhaustive": {"pins": [PIN, "conv2=w8a8", "fc1=w8a8"]},
    "amp-greedy": {"pins": [PIN, "conv2=w8a8", "fc1=w8a8"]},  # phase 1 within the suite's budgets
}


def conformance_drivers() -> list[str]:
    from haq.search.drivers import list_drivers

    return [d.name for d in list_drivers()]


def _options(driver: str) -> dict[str, Any]:
    return {"driver": driver, "target": TARGET, "pins": [PIN], **SUITE_OPTIONS.get(driver, {})}


@contextlib.contextmanager
def fresh_cache(path: Path) -> Iterator[dict[str, str]]:
    """Each run starts from its own empty user cache (sensitivity rows, measured drops), so two
    runs compare like with like; yields the environment for a child process."""
    old = os.environ.get("HAQ_CACHE_DIR")
    os.environ["HAQ_CACHE_DIR"] = str(path)
    try:
        yield {**os.environ, "PYTHONUNBUFFERED": "1"}
    finally:
        if old is None:
            os.environ.pop("HAQ_CACHE_DIR", None)
        else:
            os.environ["HAQ_CACHE_DIR"] = old


def run_search(driver: str, out: Path, budget: int = 14, seed: int = 0, **extra: Any) -> Any:
    import haq

    opts = {**_options(driver), **extra}
    with fresh_cache(out.parent / f"{out.name}-cache"):
        return haq.search(model=MODEL, budget=budget, out=str(out), workers=0, progress=False,
                          seed=seed, **opts)  # fmt: skip


def trials(out: Path) -> pd.DataFrame:
    return pd.read_parquet(out / "trials.parquet")


def _space(driver: str, ptq: str = "none") -> Any:
    from haq.hardware.profile import get_target
    from haq.models import discover_layers, load_model
    from haq.ptq import ptq_choices
    from haq.search.space import SearchSpace

    lm = load_model(MODEL)
    profile = get_target(TARGET)
    return SearchSpace.build(discover_layers(lm.model, lm.example_input()),
                             SUITE_OPTIONS.get(driver, {}).get("space", "default"),
                             lambda k, p: profile.can_run(k, p), _options(driver)["pins"],
                             ptq=ptq_choices(ptq))  # fmt: skip


def check_space_and_pins(driver: str, tmp: Path) -> None:
    """Every trial's config is one the space allows (its refinement among the --ptq choices),
    with the pinned layer as pinned."""
    res = run_search(driver, tmp / "space", ptq=PTQ)
    space = _space(driver, PTQ)
    t = trials(res.path)
    assert len(t) > 0, f"{driver}: no trial recorded"
    for cfg_json in t["config"]:
        cfg = BitConfig.from_dict(json.loads(cfg_json))
        assert space.contains(cfg), f"{driver} proposed a config outside the space: {cfg.summary()}"
        assert cfg["conv1"] == Precision.parse("w8a8"), f"{driver} broke the pin {PIN}"


def check_no_duplicates(driver: str, tmp: Path) -> None:
    """No config is evaluated twice (a repaired config may coincide, then it is cached)."""
    t = trials(run_search(driver, tmp / "dup", budget=20).path)
    fresh = t[~t["cached"].astype(bool)]
    dup = fresh["config_hash"][fresh["config_hash"].duplicated()]
    assert dup.empty, f"{driver} proposed {len(dup)} configs twice"


def check_hard_budget(driver: str, tmp: Path) -> None:
    """Every evaluated config meets a hard cost budget (repaired or rejected before)."""
    from haq.cost.size_bops import SizeBopsModel
    from haq.search.budgets import BudgetGuard, Budgets

    space = _space(driver)
    guard = BudgetGuard(space, SizeBopsModel(space.layers), Budgets())
    low = guard.cost_model.score(guard.cheapest()).size_bytes / 1e6
    high = max(guard.cost_model.score(c).size_bytes / 1e6 for c in space.baselines().values())
    limit = (low + high) / 2
    t = trials(run_search(driver, tmp / "budget", budget=12, max_size_mb=limit).path)
    done = t[t["state"] == "complete"]
    assert len(done) > 0, f"{driver}: nothing evaluated under the budget"
    assert (done["size_mb"] <= limit + 1e-9).all(), f"{driver} evaluated over budget"


def check_same_seed(driver: str, tmp: Path) -> None:
    """Two runs with one seed propose the same configs in the same order."""
    a = trials(run_search(driver, tmp / "seed-a", budget=12, seed=5).path)
    b = trials(run_search(driver, tmp / "seed-b", budget=12, seed=5).path)
    assert list(a["config_hash"]) == list(b["config_hash"]), f"{driver}: same seed, other proposals"


_SLOW_CHILD = """
import sys, time
import haq.evaluate.evaluator as ev
orig = ev.LocalEvaluator.evaluate
def slow(self, config):
    time.sleep(0.25)
    return orig(self, config)
ev.LocalEvaluator.evaluate = slow
from haq.cli import main
sys.exit(main(sys.argv[1:]))
"""


def _completed(out: Path) -> pd.DataFrame:
    path = out / "trials.parquet"
    if not path.is_file():
        return pd.DataFrame()
    try:
        t = pd.read_parquet(path)
    except Exception:  # noqa: BLE001 - a concurrent atomic replace: read again next poll
        return pd.DataFrame()
    return t[t["state"] == "complete"]


def _cli_args(driver: str, budget: int) -> list[str]:
    args = ["search", "--model", MODEL, "--target", TARGET, "--pin", PIN, "--driver", driver,
            "--budget", str(budget), "--workers", "0", "-q", "--seed", "3"]  # fmt: skip
    extra = SUITE_OPTIONS.get(driver, {})
    for pin in extra.get("pins", [])[1:]:
        args += ["--pin", pin]
    return [*args, "--space", extra["space"]] if "space" in extra else args


def check_kill_and_resume(driver: str, tmp: Path, budget: int = 14, kill_after: int = 6) -> None:
    """kill -9 mid-search, resume: nothing finished is lost or evaluated again, the budget is
    met exactly (or the driver runs out as in an uninterrupted run), and the front equals an
    uninterrupted run's."""
    from haq.cli import main

    ref = tmp / "ref"
    with fresh_cache(tmp / "ref-cache"):
        assert main([*_cli_args(driver, budget), "--out", str(ref)]) == 0
    expected = len(trials(ref))  # a driver that runs out of proposals ends below the budget
    kill_after = min(kill_after, max(1, expected // 2))
    out = tmp / "killed"
    with fresh_cache(tmp / "killed-cache") as env:  # the killed run and its resume share one
        proc = subprocess.Popen([sys.executable, "-c", _SLOW_CHILD, *_cli_args(driver, budget), "--out", str(out)],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)  # fmt: skip
        deadline = time.time() + 120
        while time.time() < deadline and len(_completed(out)) < kill_after and proc.poll() is None:
            time.sleep(0.05)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        before = _completed(out)
        assert kill_after <= len(before) < expected, f"{driver}: the search must be killed mid-run"
        assert main(["search", "--resume", str(out), "-q", "--workers", "0"]) == 0
    after = trials(out)
    done = after[after["state"] == "complete"]
    assert set(before["trial"]) <= set(done["trial"]), f"{driver} lost trials on resume"
    kept = done.set_index("trial").loc[before["trial"], "config_hash"]
    assert list(kept) == list(before["config_hash"]), f"{driver} rewrote finished trials"
    fresh = done[~done["cached"].astype(bool)]
    assert not fresh["config_hash"].duplicated().any(), f"{driver} evaluated a config twice"
    assert len(after) == expected, (
        f"{driver}: {len(after)} trials after resume, {expected} uninterrupted"
    )
    if driver not in NONDETERMINISTIC_RESUME:
        pts = {json.dumps(p["config"], sort_keys=True) for p in _points(out)}
        assert pts == {json.dumps(p["config"], sort_keys=True) for p in _points(ref)}, (
            f"{driver}: the resumed front differs from an uninterrupted run's"
        )


# Samplers whose state advances on draws the kill discards: their fronts after a resume may
# differ from an uninterrupted run's (still without losing or repeating a trial).
NONDETERMINISTIC_RESUME: set[str] = set()


def _points(out: Path) -> list[dict[str, Any]]:
    return json.loads((out / "pareto.json").read_text())["points"]


CHECKS = {
    "space_and_pins": check_space_and_pins,
    "no_duplicates": check_no_duplicates,
    "hard_budget": check_hard_budget,
    "same_seed": check_same_seed,
    "kill_and_resume": check_kill_and_resume,
}
