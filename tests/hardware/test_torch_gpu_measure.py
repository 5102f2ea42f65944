"""One job of the gpu-h100 run on CPU: a row on success, a recorded failure (and the run goes
on) otherwise; 25 failed layers of one precision in a row switch that precision off."""

from __future__ import annotations

from pathlib import Path

import torch

from haq.hardware import torch_gpu as tg
from haq.hardware.torch_gpu_files import Log, State
from haq.hardware.torch_gpu_measure import LayerJob, run_layer
from tests.hardware.test_torch_gpu import _sig

QUICK = tg.TimingSettings.quick()


def _state(tmp_path: Path) -> State:
    return State(out=tmp_path, log=Log(tmp_path / "log.txt", t0=0.0), device=torch.device("cpu"),
                 meta={})  # fmt: skip


def test_a_row_on_success_and_a_skip_without_a_kernel(tmp_path: Path) -> None:
    state = _state(tmp_path)
    assert run_layer(state, LayerJob(_sig(), "fp32"), QUICK)
    dw = _sig("dwconv", cin=8, cout=8, groups=8)
    assert run_layer(state, LayerJob(dw, "w8a8"), QUICK)  # no int8 depthwise kernel: no row
    assert [r["precision"] for r in state.rows] == ["fp32"] and state.failures == []
    assert "layer conv fp32" in state.wall and "skip dwconv" in (tmp_path / "log.txt").read_text()


def test_failures_are_recorded_and_a_streak_disables_the_precision(tmp_path: Path) -> None:
    state = _state(tmp_path)
    bad = {**_sig(k=3, hw=8), "out_h": 20}  # no padding maps 8 to 20: the op cannot be built
    for _ in range(25):
        assert run_layer(state, LayerJob(bad, "fp16"), QUICK)  # the CPU stays usable
    assert len(state.failures) == 25 and state.failures[0]["precision"] == "fp16"
    assert "ValueError: no padding maps 8 to 20" in state.failures[0]["error"]
    assert "fp16" in state.disabled and state.rows == []
    assert run_layer(state, LayerJob(_sig(), "fp16"), QUICK) and state.rows == []  # switched off
    assert run_layer(state, LayerJob(_sig(), "fp32"), QUICK) and len(state.rows) == 1
    assert state.fail_streak["fp32"] == 0
