"""`haq search --profile auto` on a user model of odd conv kinds: the layers cpu-avx512's
tables lack are measured into the user's overlay first (shipped tables untouched), the search
scores them from measured rows, and `--measure-front` checks the front against ORT."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pandas as pd
import torch
from torch import nn

from haq.cli import main
from haq.hardware.profile import get_target
from haq.hardware.reachable import machine_note, runtime_gap

GAP = runtime_gap(get_target("cpu-avx512"))
HAQ_NUM_CLASSES = 10
HAQ_PREPROCESS = {"input_size": (3, 32, 32), "mean": (0.5, 0.5, 0.5), "std": (0.25, 0.25, 0.25)}
MODEL = f"{__name__}:odd_net"


def odd_net() -> nn.Module:
    """Dense, grouped, depthwise-dilated convs and a linear: kinds the tables never saw here."""
    return nn.Sequential(
        nn.Conv2d(3, 24, 3, padding=1), nn.ReLU(),
        nn.Conv2d(24, 48, 3, padding=1, groups=4), nn.ReLU(),
        nn.Conv2d(48, 48, 3, padding=2, dilation=2, groups=48), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(48, 10),
    )  # fmt: skip


def _search(out: Path, *extra: str, target: str = "cpu-avx512") -> list[str]:
    return ["search", "--model", MODEL, "--weights", "none", "--data", "synthetic:64",
            "--calib-data", "synthetic:64", "--calib-limit", "16", "--val-limit", "32", "--target", target, "--budget", "4",
            "--workers", "0", "--out", str(out), *extra]  # fmt: skip


def _shipped_digest(target: str) -> str:
    root = get_target(target).tables["layers"].parent
    h = hashlib.sha256()
    for path in sorted(root.rglob("*")):
        if path.is_file():
            h.update(path.name.encode() + path.read_bytes())
    return h.hexdigest()


def test_profile_auto_measures_what_the_tables_lack(tmp_path: Path, monkeypatch, capsys,
                                                    local_target: str) -> None:  # fmt: skip
    """On cpu-avx512 where this CPU runs its kernels, else on this CPU profiled as a target
    of its own (`haq profile --out`): `--profile auto` measures either the same way."""
    overlay = tmp_path / "overlay"
    monkeypatch.setenv("HAQ_OVERLAY_DIR", str(overlay))
    profile = get_target(local_target)
    shipped = _shipped_digest(local_target)
    assert main(_search(tmp_path / "never", "--profile", "never", target=local_target)) == 0
    assert not overlay.exists()
    other_cpu = machine_note(profile) is not None  # tables from other CPUs
    if other_cpu:  # predictions from another CPU model are said to be that machine's
        assert "not on this CPU" in capsys.readouterr().err
    before = set(pd.read_parquet(tmp_path / "never" / "trials.parquet")["cost_model"])
    assert all("learned" in m or "roofline" in m for m in before), before
    capsys.readouterr()

    assert main(_search(tmp_path / "one", "--profile-jobs", "1", target=local_target)) == 0
    assert "left for a later run" in capsys.readouterr().err
    assert main(_search(tmp_path / "auto", "--measure-front", target=local_target)) == 0
    err = capsys.readouterr().err
    assert f"profiling {MODEL}" in err and "ETA" in err  # progress while measuring
    assert "not on this CPU" not in err  # its rows are now this machine's
    assert (overlay / profile.id / "layers.csv").is_file()
    labels = set(pd.read_parquet(tmp_path / "auto" / "trials.parquet")["cost_model"])
    assert labels == {"lookup+glue"}, labels  # every layer from measured rows, its own glue
    pareto = json.loads((tmp_path / "auto" / "pareto.json").read_text())
    assert all(p["measured_latency_ms"] > 0 for p in pareto["points"])
    assert _shipped_digest(local_target) == shipped  # the target's tables are never modified

    assert main(_search(tmp_path / "again", "-q", target=local_target)) == 0  # nothing left
    assert "profiling" not in capsys.readouterr().err
    # the configs --measure-front timed now scale this network's predictions
    again = set(pd.read_parquet(tmp_path / "again" / "trials.parquet")["cost_model"])
    assert all("+measured(" in m for m in again), again


def test_profile_ask_without_a_terminal_does_not_measure(
    tmp_path: Path, monkeypatch, capsys
) -> None:
    monkeypatch.setenv("HAQ_OVERLAY_DIR", str(tmp_path / "overlay"))
    monkeypatch.setattr("sys.stdin.isatty", lambda: False)
    assert main(_search(tmp_path / "ask", "--profile", "ask")) == 0
    err = capsys.readouterr().err
    assert not (tmp_path / "overlay").exists()
    if GAP is None:
        assert "stdin is not a terminal" in err
    else:  # nothing to ask: the target's runtime is not here, and the search says so (on a
        # CPU of its class with other int8 kernels, the machine note says why)
        assert "not measured here" in err or "predictions are not this machine's" in err


class _Unexportable(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.fc = nn.Linear(8, 10)

    def forward(self, x):  # type: ignore[no-untyped-def]
        return self.fc(torch.linalg.svd(self.conv(x).flatten(2))[1])  # svd: no ONNX conversion


def unexportable() -> nn.Module:
    return _Unexportable()


def test_a_model_that_does_not_export(tmp_path: Path, monkeypatch, capsys) -> None:
    """`haq profile` and `haq export` refuse in one line naming the op; the search warns and
    scores it with the learned model instead."""
    monkeypatch.setenv("HAQ_OVERLAY_DIR", str(tmp_path / "overlay"))
    model = f"{__name__}:unexportable"
    for args in (["profile", "--target", "cpu-avx512", "--model", model, "--threads", "1",
                  "--out", str(tmp_path / "tables" / "cpu-avx512")],
                 ["export", "--model", model, "--weights", "none", "--bits", "w8a8",
                  "--calib-data", "synthetic:16", "-o", str(tmp_path / "x.onnx")]):  # fmt: skip
        code = main(args)
        # (a machine without AVX-512 also gets a warning line about the tables)
        err = [ln for ln in capsys.readouterr().err.splitlines() if ln.startswith("haq: error:")]
        assert code == 2 and len(err) == 1 and "does not export to ONNX" in err[0], err
        assert "svd" in err[0]
    if GAP is None:
        args = [a if a != MODEL else model for a in _search(tmp_path / "run", "-q")]
        assert main(args) == 0
        assert "could not profile" in capsys.readouterr().err


def test_profile_jobs_must_be_positive(tmp_path: Path, capsys) -> None:
    assert main(_search(tmp_path / "bad", "--profile-jobs", "0")) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("haq: error: --profile-jobs must be at least 1")
    assert not (tmp_path / "bad").exists()
