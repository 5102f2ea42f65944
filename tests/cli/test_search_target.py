"""`haq search` without --target: $HAQ_TARGET, else the target this machine is an instance of
(said in one line), else none; and its progress modes (-q, --log-json)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from haq.cli import main
from haq.cli.search import _target
from haq.hardware import reachable
from haq.runtime import machine


def test_the_machine_target_is_picked_and_said(monkeypatch: pytest.MonkeyPatch,
                                              capsys: pytest.CaptureFixture[str]) -> None:  # fmt: skip
    monkeypatch.delenv("HAQ_TARGET")
    vnni = ["avx2", "avx512f", "avx512bw", "avx512_vnni"]
    monkeypatch.setattr(machine, "machine_info", lambda: {"flags": vnni})
    assert reachable.local_target() == "cpu-avx512" and _target(None) == "cpu-avx512"
    assert (
        "--target cpu-avx512: this machine's CPU is of that target's class"
        in capsys.readouterr().err
    )
    monkeypatch.setattr(machine, "machine_info", lambda: {"flags": ["avx2"]})  # no AVX-512
    assert reachable.local_target() is None and _target(None) is None
    assert capsys.readouterr().err == ""


def test_explicit_and_environment_targets_win(monkeypatch: pytest.MonkeyPatch) -> None:
    assert _target("none") is None and _target("gpu-t4") == "gpu-t4"
    monkeypatch.setenv("HAQ_TARGET", "bitfusion-edge")
    assert _target(None) == "bitfusion-edge" and _target("gpu-t4") == "gpu-t4"


def _search(tmp_path: Path, *flags: str) -> int:
    return main(["search", "--model", "digits_cnn", "--budget", "3", "--workers", "0",
                 "--out", str(tmp_path / "run"), *flags])  # fmt: skip


def test_log_json_gives_only_json_lines(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert _search(tmp_path, "--log-json") == 0
    events = [json.loads(line) for line in capsys.readouterr().err.splitlines()]
    kinds = {e["event"] for e in events}
    assert {"start", "progress", "trials"} <= kinds
    last = [e for e in events if e["event"] == "trials"][-1]
    assert last["done"] == last["total"] == 3


def test_quiet_prints_no_progress(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert _search(tmp_path, "-q") == 0
    assert capsys.readouterr().err == ""
