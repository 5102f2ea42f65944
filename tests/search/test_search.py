"""Whole searches on the embedded digits model: results files, budgets, bad inputs, --val-split
(resume after kill -9 is in the driver conformance suite, for every driver)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import haq
from haq import BitConfig, HaqError
from haq.cli import main
from haq.search import SearchResult


def _search(out: Path, budget: int = 10, **kw) -> SearchResult:
    return haq.search(
        model="digits_cnn", budget=budget, out=str(out), workers=0, progress=False, **kw
    )


def test_results_directory(tmp_path: Path) -> None:
    res = _search(tmp_path / "run", budget=10)
    for name in ("study.db", "trials.parquet", "pareto.json", "run.json", "sensitivity.csv"):
        assert (res.path / name).is_file(), name
    trials = res.trials
    assert len(trials) == 10 and set(trials["state"]) <= {"complete", "pruned", "fail"}
    summaries = set(trials["summary"].dropna())
    assert {"fp32 x6", "w8a8 x6", "w4a8 x6"} <= summaries  # baselines evaluated first
    front = res.front
    assert len(front) >= 1 and front["test_top1"].notna().all()
    for name, cfg in res.configs.items():
        assert BitConfig.load(res.path / "configs" / f"{name}.yaml") == cfg
    run = json.loads((res.path / "run.json").read_text())
    assert run["model_hash"] and run["objectives"] == ["top1", "size"]
    assert run["validation"]["source"] == "digits:calib" and run["test"]["source"] == "digits"
    ax = res.plot()
    ax.figure.savefig(res.path / "front.png")
    assert (res.path / "front.png").stat().st_size > 1000
    # the front dominates or matches the uniform w8a8 baseline
    w8 = trials[trials["summary"] == "w8a8 x6"].iloc[0]
    assert any(r.top1 >= w8.obj_top1 and r.size <= w8.obj_size for r in front.itertuples())


def test_size_budget_is_repaired_before_evaluation(tmp_path: Path) -> None:
    res = _search(tmp_path / "b", budget=12, max_size_mb=0.040)
    t = res.trials
    evaluated = t[t["state"] == "complete"]
    assert (evaluated["size_mb"] <= 0.040 + 1e-9).all()
    assert evaluated["repaired"].any()


def test_bad_inputs_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "x"
    cases = [
        ["--driver", "annealing"],
        ["--max-size-mb", "0.001"],  # impossible budget
        ["--objectives", "top1,energy"],  # no target to score energy
        [
            "--model",
            "cifar_resnet20",
            "--weights",
            "none",
            "--data",
            "digits",
        ],  # data that does not fit the model
        ["--budget", "0"],
        ["--resume", str(tmp_path / "missing")],
        ["--driver-opt", "sensitivity=accuracy", "--budget", "5"],  # phase 1 exceeds the budget
        ["--driver-opt", "speed=11"],  # unknown driver option
        ["--driver-opt", "sensitivity"],  # not KEY=VALUE
        ["--driver", "nsga2", "--driver-opt", "population=0"],
        ["--val-split", "1.5"],
        ["--val-split", "0"],
        ["--ptq", "adaroud"],
        ["--ptq", "adaround", "--adaround-iterations", "0"],
        ["--ptq", "none,,adaround"],  # an empty refinement choice
        ["--ptq", "none,brecq"],  # an unknown method among the choices
        ["--ptq", "adaround+gptq"],  # two learned roundings at once
    ]
    for extra in cases:
        code = main(
            ["search", "--model", "digits_cnn", "--out", str(out), "--workers", "0", "-q", *extra]
        )
        err = capsys.readouterr().err
        assert code == 2 and err.startswith("haq: error:") and err.count("\n") == 1, (extra, err)


def test_existing_results_are_not_overwritten(tmp_path: Path) -> None:
    res = _search(tmp_path / "r", budget=4)
    before = (res.path / "pareto.json").read_bytes()
    with pytest.raises(HaqError, match="already holds a search"):
        _search(tmp_path / "r", budget=4)
    assert (res.path / "pareto.json").read_bytes() == before


def test_val_split_validates_and_tests_on_disjoint_parts_of_data(tmp_path: Path) -> None:
    from haq.data import DataSplit, load_data
    from haq.models import load_model

    res = _search(tmp_path / "vs", budget=6, val_split=0.3)
    run = json.loads((res.path / "run.json").read_text())
    assert run["validation"]["source"] == "digits" and run["validation"]["split"]["part"] == "val"
    pre = load_model("digits_cnn").preprocess
    val = load_data("digits", pre, split=DataSplit(0.3, 0, "val"))
    test = load_data("digits", pre, split=DataSplit(0.3, 0, "test"))
    assert not set(val.indices) & set(test.indices)
    point = json.loads((res.path / "pareto.json").read_text())["points"][0]
    # digits calibrates on its own calib split, so the whole validation part validates
    assert point["val"]["n_images"] == len(val) and point["test"]["n_images"] == len(test)
