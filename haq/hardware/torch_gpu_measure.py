"""Running one job of a gpu-h100 profiling run (`haq.hardware.torch_gpu_jobs`): a layer
signature at one batch and precision, or a whole-model forward, measured into the run's
`State`. A failure is recorded and the run goes on; only a broken CUDA context ends it.
"""

from __future__ import annotations

import time
import traceback
from dataclasses import dataclass
from typing import Any

import torch

from haq.hardware import torch_gpu as tg
from haq.hardware import torch_gpu_models as tgm
from haq.hardware.gpu_timing import first_line
from haq.hardware.torch_gpu_files import State


@dataclass
class LayerJob:
    sig: dict[str, Any]
    precision: str

    def describe(self) -> str:
        s = self.sig
        shape = (
            f"{s['kind']} {s['in_channels']}->{s['out_channels']} k{s['kernel_h']}x{s['kernel_w']}"
            f" s{s['stride_h']} g{s['groups']} {s['in_h']}x{s['in_w']}"
        )
        return f"{shape} b{s['batch']} {self.precision}"


@dataclass
class E2EJob:
    model: str
    batch: int
    precision: str
    fold_bn: bool

    def describe(self) -> str:
        fold = "bn-folded" if self.fold_bn else "plain"
        return f"e2e {self.model} b{self.batch} {self.precision} {fold}"


Job = LayerJob | E2EJob


def _record_failure(state: State, job: Job, exc: BaseException) -> None:
    """Log a failed job; 25 failed layers of one precision in a row disable that precision."""
    precision = job.precision
    entry = {
        "job": job.describe(),
        "precision": precision,
        "error": f"{type(exc).__name__}: {first_line(exc)}",
    }
    state.failures.append(entry)
    n = sum(1 for f in state.failures if f["precision"] == precision)
    state.log(f"FAILED {entry['job']}: {entry['error']}", echo=n <= 3)
    if n <= 1:
        state.log("".join(traceback.format_exception(exc)).rstrip(), echo=False)
    if isinstance(job, LayerJob):
        state.fail_streak[precision] = state.fail_streak.get(precision, 0) + 1
        if state.fail_streak[precision] >= 25 and precision not in state.disabled:
            state.disabled[precision] = f"25 failures in a row, last: {entry['error']}"
            state.log(f"disabling {precision} for the rest of the run: {entry['error']}")


def _failed(state: State, job: Job, exc: Exception) -> bool:
    """Record a failed job; whether the device is still usable (after an OOM it is)."""
    if isinstance(exc, torch.cuda.OutOfMemoryError):
        torch.cuda.empty_cache()
        _record_failure(state, job, exc)
        return True
    _record_failure(state, job, exc)
    if state.device.type != "cuda":
        return True
    try:
        torch.cuda.synchronize(state.device)
        return True
    except Exception as broken:  # a sticky CUDA error: nothing more can be measured
        state.log(f"CUDA context is broken ({type(broken).__name__}: {first_line(broken)})")
        return False


def run_layer(state: State, job: LayerJob, settings: tg.TimingSettings) -> bool:
    """Measure one row; False if the device is unusable afterwards."""
    if job.precision in state.disabled:
        return True
    t0 = time.monotonic()
    try:
        row = tg.measure(job.sig, job.precision, state.device, settings)
        wall = time.monotonic() - t0
        state.add_wall(f"layer {job.sig['kind']} {job.precision}", wall)
    except tg.Unsupported as exc:
        state.log(f"skip {job.describe()}: {exc}", echo=False)
        return True
    except Exception as exc:
        return _failed(state, job, exc)
    state.fail_streak[job.precision] = 0
    state.rows.append(row)
    state.log(
        f"{job.describe()}: {row['latency_us']:.2f} us [{row['p10_us']:.2f}, {row['p90_us']:.2f}]"
        f" x{row['reps']} {row['method']} | {row['kernel']} | wall {1000 * wall:.0f} ms",
        echo=False,
    )
    return True


class ModelCache:
    """CPU models (plain and BN-folded) and the one device copy in use."""

    def __init__(self, models: dict[str, torch.nn.Module]) -> None:
        self.cpu = models
        self.folded: dict[str, torch.nn.Module | str] = {}
        self.key: tuple[str, str, bool] | None = None
        self.net: torch.nn.Module | None = None
        self.variant = ""

    def get(self, job: E2EJob, device: torch.device) -> tuple[torch.nn.Module, str]:
        key = (job.model, job.precision, job.fold_bn)
        if key != self.key:
            self.net = None
            if device.type == "cuda":
                torch.cuda.empty_cache()
            base = self.cpu[job.model]
            if job.fold_bn:
                if job.model not in self.folded:
                    try:
                        from torch.fx.experimental.optimization import fuse

                        self.folded[job.model] = fuse(base)
                    except Exception as exc:
                        self.folded[job.model] = f"{type(exc).__name__}: {first_line(exc)}"
                folded = self.folded[job.model]
                if isinstance(folded, str):
                    raise RuntimeError(f"BN folding (torch.fx) failed: {folded}")
                base = folded
            self.net, label = tgm.prepare_model(base, job.precision, device, fold_bn=False)
            self.variant = label.replace("eager", "eager+bn-folded(fx)" if job.fold_bn else "eager")
            self.key = key
        assert self.net is not None
        return self.net, self.variant


def run_e2e(
    state: State,
    job: E2EJob,
    cache: ModelCache,
    shapes: dict[str, tuple[int, ...]],
    settings: tg.TimingSettings,
) -> bool:
    """Time one whole-model forward; False if the device is unusable afterwards."""
    t0 = time.monotonic()
    try:
        net, variant = cache.get(job, state.device)
        timing = tgm.measure_model(
            net, (job.batch, *shapes[job.model]), job.precision, state.device, settings
        )
        wall = time.monotonic() - t0
        state.add_wall(f"e2e {job.precision}", wall)
    except Exception as exc:
        if isinstance(exc, torch.cuda.OutOfMemoryError):
            cache.net, cache.key = None, None  # free the model copy before emptying the cache
        return _failed(state, job, exc)
    state.e2e_rows.append(
        {
            "model": job.model,
            "batch": job.batch,
            "precision": job.precision,
            "bn_folded": job.fold_bn,
            "variant": variant,
            "latency_us": round(timing.median_us, 3),
            "p10_us": round(timing.p10_us, 3),
            "p90_us": round(timing.p90_us, 3),
            "runs": timing.runs,
            "reps": timing.reps,
            "method": timing.method,
        }  # fmt: skip
    )
    state.log(
        f"{job.describe()}: {timing.median_us:.1f} us x{timing.reps} {timing.method} "
        f"| wall {1000 * wall:.0f} ms"
    )
    return True
