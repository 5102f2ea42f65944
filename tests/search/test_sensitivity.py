"""The sensitivity cache: proxies and measured drops, computed once, reused by later searches."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

import haq
from haq.cli import main

TARGET = ["--model", "digits_cnn", "--target", "npu-bitfusion-edge"]


def _sources(out: Path) -> pd.Series:
    return pd.read_parquet(out / "trials.parquet")["source"]


def test_cli_table_is_cached_and_measured_drops_feed_the_driver(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    csv = tmp_path / "sens.csv"
    assert main(["sensitivity", *TARGET, "--accuracy", "--hessian", "-q", "-o", str(csv)]) == 0
    rows = pd.read_csv(csv)
    assert {"kl", "sqnr_db", "hessian", "top1_drop"} <= set(rows.columns)
    assert len(rows) == len(rows.drop_duplicates(["variable", "precision"])) > 20
    hessian = rows.loc[rows["precision"] == "w2a8", "hessian"]
    # a Hutchinson trace estimate may come out slightly negative for a flat layer
    assert hessian.notna().all() and (hessian > 0).sum() > len(hessian) / 2
    assert rows["kl"].max() > 0
    capsys.readouterr()
    assert main(["sensitivity", *TARGET, "--accuracy", "-q"]) == 0
    assert "(0.0 s computed here" in capsys.readouterr().err  # all rows from the cache
    # the hybrid driver's accuracy mode finds every drop cached: no phase-1 evaluation
    res = haq.search(model="digits_cnn", target="npu-bitfusion-edge", budget=10, workers=0,
                     progress=False, out=str(tmp_path / "s"), driver_options={"sensitivity": "accuracy"})  # fmt: skip
    assert (_sources(res.path) == "sensitivity").sum() == 0
    assert "ilp" in set(_sources(res.path))


def test_phase_one_drops_are_trials_then_cached(tmp_path: Path) -> None:
    opts = {"model": "digits_cnn", "target": "npu-bitfusion-edge", "workers": 0, "progress": False,
            "driver_options": {"sensitivity": "accuracy"}, "val_limit": 200}  # fmt: skip
    first = haq.search(budget=40, out=str(tmp_path / "a"), **opts)
    measured = (_sources(first.path) == "sensitivity").sum()
    assert measured > 5
    assert (
        json.loads((first.path / "pareto.json").read_text())["evaluations_by_source"]["sensitivity"]
        == measured
    )
    second = haq.search(budget=10, out=str(tmp_path / "b"), **opts)
    assert (_sources(second.path) == "sensitivity").sum() == 0


def test_bad_inputs(capsys: pytest.CaptureFixture[str]) -> None:
    for extra in (["-o", "table.txt"], ["--val-split", "0.2"], ["--calib-limit", "0"]):
        assert main(["sensitivity", *TARGET, "-q", *extra]) == 2
        err = capsys.readouterr().err
        assert err.startswith("haq: error:") and err.count("\n") == 1, (extra, err)


def _table_source(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, labels: bool = True):
    from dataclasses import replace

    from haq.search.options import SearchOptions
    from haq.search.runner import Search

    monkeypatch.setenv("HAQ_CACHE_DIR", str(tmp_path / "cache"))  # a table of its own
    search = Search(SearchOptions(model="digits_cnn", target="npu-bitfusion-edge", budget=10,
                                  out=str(tmp_path / "run"), progress=False))  # fmt: skip
    ctx = search.driver_context()
    if not labels:
        ev = ctx.sensitivity.evaluator
        ev.data = replace(ev.data, y=None)
    return search, ctx


def test_loss_column_is_the_labelled_cross_entropy_change(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import math

    import numpy as np
    import torch
    import torch.nn.functional as F

    from haq.search.sensitivity import reference_config, with_choice

    search, ctx = _table_source(tmp_path, monkeypatch)
    table = ctx.sensitivity.table(search.space)
    assert table.has("loss")
    ev = ctx.sensitivity.evaluator
    ref = reference_config(search.space)

    def ce(config) -> float:
        return float(F.cross_entropy(ev.logits(config).double(), ev.data.y))

    row = table.rows.sort_values("kl").iloc[-1]  # the most damaging change
    var, choice = row["variable"], row["precision"]
    expected = ce(with_choice(search.space, ref, var, choice)) - ce(ref)
    assert table.score(var, choice, "loss") == pytest.approx(expected, rel=1e-9, abs=1e-12)
    assert expected > 0
    # unlike KL the loss change is signed: both signs occur across the table
    assert (table.rows["kl"] >= -1e-9).mean() > 0.9
    assert (table.rows["loss"] < 0).any() and (table.rows["loss"] > 0).any()
    # ``label``: loss minus KL per image, its mean shrunk towards 0 by its standard error
    float_logp = F.log_softmax(ev.reference.double(), 1)

    def per_image(config) -> torch.Tensor:
        logp = F.log_softmax(ev.logits(config).double(), 1)
        kl = (float_logp.exp() * (float_logp - logp)).sum(1)
        return F.nll_loss(logp, ev.data.y, reduction="none") - kl

    g = per_image(with_choice(search.space, ref, var, choice)) - per_image(ref)
    mean, se = float(g.mean()), float(g.std()) / len(g) ** 0.5
    assert table.score(var, choice, "label") == pytest.approx(
        math.copysign(max(abs(mean) - se, 0.0), mean), abs=1e-9
    )
    rows = table.rows
    gap = rows["loss"] - rows["kl"]
    assert (rows["label"].abs() <= gap.abs() + 1e-12).all()
    assert ((rows["label"] == 0) | (np.sign(rows["label"]) == np.sign(gap))).all()
    assert (rows["label"] == 0).any() and (rows["label"] != 0).any()


def test_hybrid_falls_back_to_kl_without_labels(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from haq.search.drivers import get_driver

    _, ctx = _table_source(tmp_path, monkeypatch, labels=False)
    driver = get_driver("hybrid").make({"sensitivity": "loss"})
    driver.start(ctx, [], None)
    assert not ctx.sensitivity.last.has("loss")
    assert driver.mode == "kl"
    assert all(p >= 0 for p in driver.pair_pen) and driver.pair_pen.max() > 0
