"""The gpu-h100 job runner: plan order, phase pre-emption, the time-budget stop and partial
flushes (pure logic, a fake clock), and the files a CPU run writes for a tiny model."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import torch

from haq.errors import HaqError
from haq.hardware import torch_gpu_jobs as jobs
from haq.hardware.tables import SIGNATURE_COLUMNS, read_table
from haq.hardware.torch_gpu_files import Log, State
from haq.hardware.torch_gpu_jobs import GpuProfileOptions, Phase, execute, next_phase, plan
from haq.hardware.torch_gpu_measure import E2EJob, LayerJob
from tests.hardware.test_torch_gpu import _sig


def _unbatched(**kw: Any) -> dict[str, Any]:
    sig = _sig(**kw)
    del sig["batch"]
    return sig


SIGS = [_unbatched(kind="conv"), _unbatched(kind="dwconv", cin=8, cout=8, groups=8),
        _unbatched(kind="linear", cin=16)]  # fmt: skip


def test_plan_puts_small_batches_and_their_e2e_first() -> None:
    opts = GpuProfileOptions(batches=(32, 1, 8), time_budget=100.0)
    phases = plan(opts, SIGS, ["m1", "m2"], ["fp32", "w8a8"], t0=1000.0)
    assert [p.name for p in phases] == ["layers b1", "layers b8", "e2e b1,8", "layers b32",
                                        "e2e b32"]  # fmt: skip
    layers = phases[0].jobs
    # every signature x precision it has a kernel for (no int8 dwconv), signature-major
    assert [(j.sig["kind"], j.precision) for j in layers] == [
        ("conv", "fp32"), ("conv", "w8a8"), ("dwconv", "fp32"), ("linear", "fp32"),
        ("linear", "w8a8"),
    ]  # fmt: skip
    assert all(isinstance(j, LayerJob) and j.sig["batch"] == 1 for j in layers)
    e2e = phases[2].jobs
    assert e2e[:4] == [E2EJob("m1", 1, "fp32", True), E2EJob("m1", 8, "fp32", True),
                       E2EJob("m1", 1, "fp32", False), E2EJob("m1", 8, "fp32", False)]  # fmt: skip
    assert len(e2e) == 8 and {j.precision for j in e2e} == {"fp32"}  # w8a8 has no e2e run
    assert phases[2].start_by == 1000.0 + jobs.E2E_START_FRACTION * 100.0
    assert [p.start_by for p in phases if p is not phases[2]] == [None] * 4
    assert [j.batch for j in phases[4].jobs] == [32] * 4


def test_plan_without_e2e_or_early_batches() -> None:
    opts = GpuProfileOptions(batches=(16, 32), e2e=False)
    phases = plan(opts, SIGS, ["m1"], ["fp32"], t0=0.0)
    assert [p.name for p in phases] == ["layers b16", "layers b32"]
    opts = GpuProfileOptions(batches=(1,), e2e_variants=("plain",))
    (_, e2e) = plan(opts, SIGS, ["m1"], ["fp32", "bf16"], t0=0.0)
    assert e2e.jobs == [E2EJob("m1", 1, "fp32", False), E2EJob("m1", 1, "bf16", False)]


def test_scheduler_pre_empts_for_e2e() -> None:
    a = Phase("layers b1", [object()] * 3)  # type: ignore[list-item]
    e = Phase("e2e b1", [object()] * 2, start_by=100.0)  # type: ignore[list-item]
    assert next_phase([a, e], now=50.0) is a
    assert next_phase([a, e], now=150.0) is e  # due: pre-empts
    e.pos = 1
    assert next_phase([a, e], now=0.0) is e  # started phases run to the end
    e.pos = 2
    assert next_phase([a, e], now=150.0) is a  # then the paused one resumes
    a.pos = 3
    assert next_phase([a, e], now=150.0) is None


class _Run:
    """A fake clock and job runner: every job takes 10 s and is recorded in order."""

    def __init__(self, fail_at: int | None = None) -> None:
        self.now = 0.0
        self.ran: list[str] = []
        self.switches = 0
        self.fail_at = fail_at

    def clock(self) -> float:
        return self.now

    def job(self, job: str, _phase: Phase) -> bool:
        self.ran.append(job)
        self.now += 10.0
        return len(self.ran) != self.fail_at

    def switch(self) -> None:
        self.switches += 1


def _state(tmp_path: Path) -> State:
    return State(out=tmp_path, log=Log(tmp_path / "log.txt", t0=0.0),
                 device=torch.device("cpu"), meta={"target": "gpu-h100"}, last_flush=0.0)  # fmt: skip


def _phases() -> list[Phase]:
    return [Phase("layers b1", ["a0", "a1", "a2", "a3"]),  # type: ignore[list-item]
            Phase("e2e b1", ["e0", "e1"], start_by=25.0)]  # type: ignore[list-item]  # fmt: skip


def test_execute_runs_the_due_e2e_phase_then_resumes(tmp_path: Path) -> None:
    run, state = _Run(), _state(tmp_path)
    done, stopped = execute(_phases(), run.job, state, 1000.0, 1000.0, run.switch, run.clock)
    assert (done, stopped) == (6, None)
    assert run.ran == ["a0", "a1", "a2", "e0", "e1", "a3"]
    assert run.switches == 3  # start, pre-empted by e2e, resumed
    log = (tmp_path / "log.txt").read_text()
    assert "phase layers b1 paused at 3/4" in log and "phase layers b1 resumes: 1 jobs left" in log


def test_execute_stops_at_the_budget_after_a_partial_flush(tmp_path: Path) -> None:
    run, state = _Run(), _state(tmp_path)
    phases = _phases()
    done, stopped = execute(phases, run.job, state, 35.0, 38.0, run.switch, run.clock)
    assert (done, stopped) == (4, "time budget 38s reached")
    assert run.ran == ["a0", "a1", "a2", "e0"]
    assert [p.pos for p in phases] == [3, 1]
    # at 30 s (FLUSH_EVERY_S) the files were rewritten as a partial run
    meta = json.loads((tmp_path / "layers.meta.json").read_text())
    assert meta["complete"] is False and meta["stopped_reason"] == "partial (still running)"
    assert meta["target"] == "gpu-h100" and (tmp_path / "e2e.csv").is_file()
    assert "stopping: time budget 38s reached after 4/6 jobs" in (tmp_path / "log.txt").read_text()


def test_execute_stops_on_a_broken_device_or_an_unexpected_error(tmp_path: Path) -> None:
    run = _Run(fail_at=2)
    assert execute(_phases(), run.job, _state(tmp_path), 1e9, 1e9, clock=run.clock) == (
        2, "CUDA context broken",
    )  # fmt: skip

    def boom(job: str, _phase: Phase) -> bool:
        raise ValueError(f"no {job}")

    stopped = execute(_phases(), boom, _state(tmp_path), 1e9, 1e9, clock=_Run().clock)
    assert stopped == (0, "unexpected ValueError: no a0")
    assert "Traceback" in (tmp_path / "log.txt").read_text()  # the details are kept


def test_options_are_checked() -> None:
    with pytest.raises(HaqError, match=r"unknown precisions \['fp33'\]"):
        GpuProfileOptions(precisions=("fp32", "fp33"))
    with pytest.raises(HaqError, match="folded and/or plain"):
        GpuProfileOptions(e2e_variants=("fused",))
    with pytest.raises(HaqError, match="cuda or cpu"):
        GpuProfileOptions(device="mps")


def test_no_cuda_is_one_line_and_logged(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(HaqError) as info:
        jobs.profile_gpu(tmp_path / "out", GpuProfileOptions(device="cuda"))
    assert str(info.value) == jobs.NO_CUDA and "\n" not in jobs.NO_CUDA
    assert "run on a machine with an H100" in jobs.NO_CUDA
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["log.txt"]
    assert "nothing measured" in (tmp_path / "out" / "log.txt").read_text()


def test_cpu_run_writes_the_files(tmp_path: Path) -> None:
    out = tmp_path / "out"
    opts = GpuProfileOptions(device="cpu", quick=True, models=("cifar_resnet20",), batches=(1,),
                             precisions=("fp32", "w8a8", "w8a8-gemm"),
                             e2e_variants=("folded",))  # fmt: skip
    state = jobs.profile_gpu(out, opts, script="tests", argv=["--quick"])
    assert sorted(p.name for p in out.iterdir()) == ["e2e.csv", "layer_map.csv", "layers.csv",
                                                     "layers.meta.json", "log.txt"]  # fmt: skip
    layers = read_table(out / "layers.csv")
    assert set(layers["precision"]) == {"fp32", "w8a8", "w8a8-gemm"}
    assert len(layers) == len(state.rows) == 7 * 3  # 7 unique signatures in ResNet-20
    assert list(layers.columns[-2:]) == ["reps", "method"]
    lmap = pd.read_csv(out / "layer_map.csv")
    assert len(lmap) == 20 and "batch" not in lmap.columns
    key = [c for c in SIGNATURE_COLUMNS if c != "batch"]
    joined = lmap.merge(layers[layers["precision"] == "fp32"], on=key, how="left")
    assert joined["latency_us"].notna().all()
    e2e = pd.read_csv(out / "e2e.csv")
    assert list(e2e["precision"]) == ["fp32"] and e2e["layers_covered"].iloc[0] == 20
    assert e2e["layers_sum_us"].iloc[0] == pytest.approx(joined["latency_us"].sum(), abs=0.01)
    assert bool(e2e["bn_folded"].iloc[0]) and "bn-folded" in e2e["variant"].iloc[0]
    meta = json.loads((out / "layers.meta.json").read_text())
    assert meta["complete"] is True and meta["provenance"] == "measured"
    assert (meta["script"], meta["argv"]) == ("tests", ["--quick"])
    assert meta["planned"] == {"layers b1": 21, "e2e b1": 1} and meta["done_jobs"] == 22
    assert meta["skipped_precisions"] == {} and set(meta["precisions"]) == set(opts.precisions)
    assert "wrote" in (out / "log.txt").read_text().splitlines()[-1]
