"""Timing a torch callable the way the GPU tables are measured: CUDA graph replay between CUDA
events (warm-up on a side stream, ``reps`` back-to-back calls per graph, ``samples`` replays),
or ``time.perf_counter`` loops on the CPU (tests and smoke runs). Median, p10 and p90 of the
per-call time; TF32 set per op. Only torch is imported."""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import torch


@dataclass(frozen=True)
class TimingSettings:
    """How one measurement is taken (see the module docstring)."""

    warmup: int = 3  # eager calls before timing (cuDNN benchmark runs in the first)
    samples: int = 10  # timed graph replays (or CPU loops): the statistics' sample size
    target_us: float = 500.0  # wanted duration of one sample; sets reps per sample
    min_reps: int = 10  # amortises the graph launch (a few us) over at least this many calls
    max_reps: int = 100
    max_sample_us: float = 3000.0  # ...unless min_reps calls would take longer than this
    use_graphs: bool = True  # CUDA only; False: time eager launches between events

    @classmethod
    def quick(cls) -> TimingSettings:
        return cls(warmup=1, samples=3, target_us=300.0, min_reps=2, max_reps=20)

    @classmethod
    def e2e(cls, quick: bool = False) -> TimingSettings:
        """Whole-model forwards: fewer, longer calls."""
        if quick:
            return cls(warmup=1, samples=3, target_us=2000.0, min_reps=1, max_reps=3)
        return cls(
            warmup=3, samples=10, target_us=5000.0, min_reps=1, max_reps=20, max_sample_us=2e4
        )


@dataclass(frozen=True)
class Timing:
    median_us: float
    p10_us: float
    p90_us: float
    runs: int  # samples
    reps: int  # calls per sample
    method: str  # "cuda-graph", "cuda-events-eager", "perf_counter"


# ----------------------------------------------------------------------------- settings


def is_cuda(device: torch.device | str) -> bool:
    return torch.device(device).type == "cuda"


@contextlib.contextmanager
def tf32_mode(enabled: bool | None) -> Iterator[None]:
    """Set cuDNN-conv and cuBLAS-matmul TF32 (legacy flags, the only API torch < 2.9 has)."""
    if enabled is None:
        yield
        return
    try:
        before = (torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32)
    except RuntimeError:  # torch >= 2.9 refuses to read legacy flags after mixed-API writes
        before = (True, False)  # torch's defaults
    torch.backends.cudnn.allow_tf32 = enabled
    torch.backends.cuda.matmul.allow_tf32 = enabled
    try:
        yield
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = before


def tf32_state() -> dict[str, Any]:
    """What torch reports for TF32 right now, through both APIs (for the metadata)."""
    state: dict[str, Any] = {}
    for name, get in (
        ("cudnn.allow_tf32", lambda: torch.backends.cudnn.allow_tf32),
        ("cuda.matmul.allow_tf32", lambda: torch.backends.cuda.matmul.allow_tf32),
        ("cudnn.fp32_precision", lambda: torch.backends.cudnn.fp32_precision),
        ("cudnn.conv.fp32_precision", lambda: torch.backends.cudnn.conv.fp32_precision),
        ("cuda.matmul.fp32_precision", lambda: torch.backends.cuda.matmul.fp32_precision),
    ):
        try:
            state[name] = get()
        except Exception as exc:  # attribute absent in this torch, or mixed-API refusal
            state[name] = f"n/a ({type(exc).__name__})"
    return state


def _quantile(values: list[float], q: float) -> float:
    """Linear-interpolation quantile (numpy's default), without numpy."""
    xs = sorted(values)
    if len(xs) == 1:
        return xs[0]
    pos = q * (len(xs) - 1)
    lo = math.floor(pos)
    hi = min(lo + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (pos - lo)


def _reps(estimate_us: float, settings: TimingSettings) -> int:
    """Calls per sample: ~target_us worth, within [min_reps, max_reps], but a sample of a slow
    op stays under max_sample_us (down to 2 calls)."""
    if estimate_us <= 0:
        return settings.max_reps
    n = max(settings.min_reps, min(settings.max_reps, round(settings.target_us / estimate_us)))
    if n * estimate_us > settings.max_sample_us:
        n = max(min(2, settings.min_reps), min(n, int(settings.max_sample_us // estimate_us)))
    return n


def _summarise(per_call_us: list[float], reps: int, method: str) -> Timing:
    return Timing(
        median_us=_quantile(per_call_us, 0.5),
        p10_us=_quantile(per_call_us, 0.1),
        p90_us=_quantile(per_call_us, 0.9),
        runs=len(per_call_us),
        reps=reps,
        method=method,
    )


# ------------------------------------------------------------------------------- timing


def _time_cpu(fn: Callable[[], Any], settings: TimingSettings) -> Timing:
    for _ in range(max(1, settings.warmup)):
        fn()
    t0 = time.perf_counter()
    fn()
    reps = _reps((time.perf_counter() - t0) * 1e6, settings)
    samples = []
    for _ in range(settings.samples):
        t0 = time.perf_counter()
        for _ in range(reps):
            fn()
        samples.append((time.perf_counter() - t0) * 1e6 / reps)
    return _summarise(samples, reps, "perf_counter")


def _time_cuda(fn: Callable[[], Any], device: torch.device, settings: TimingSettings) -> Timing:
    # Warm up on a side stream, as torch.cuda.graphs asks before a capture.
    current = torch.cuda.current_stream(device)
    side = torch.cuda.Stream(device)
    side.wait_stream(current)
    with torch.cuda.stream(side):
        for _ in range(max(1, settings.warmup)):
            fn()
    current.wait_stream(side)
    torch.cuda.synchronize(device)

    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    for _ in range(3):
        fn()
    end.record()
    end.synchronize()
    eager_us = start.elapsed_time(end) * 1000.0 / 3
    reps = _reps(eager_us, settings)
    events = [
        (torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True))
        for _ in range(settings.samples)
    ]

    method = "cuda-events-eager"
    if settings.use_graphs:
        graph = torch.cuda.CUDAGraph()
        try:
            with torch.cuda.graph(graph):
                for _ in range(reps):
                    fn()
        except RuntimeError as exc:
            # The eager warm-up ran, so this is capture-specific: time eager launches instead
            # (they include launch overhead; the method column says so).
            del graph
            torch.cuda.synchronize(device)  # raises if the context itself is broken
            method = f"cuda-events-eager (graph capture failed: {first_line(exc)[:80]})"
        else:
            try:
                graph.replay()  # the first replay uploads the graph
                torch.cuda.synchronize(device)
                for s, e in events:
                    s.record()
                    graph.replay()
                    e.record()
                torch.cuda.synchronize(device)
                per_call = [s.elapsed_time(e) * 1000.0 / reps for s, e in events]
                return _summarise(per_call, reps, "cuda-graph")
            finally:
                del graph

    for s, e in events:
        s.record()
        for _ in range(reps):
            fn()
        e.record()
    torch.cuda.synchronize(device)
    return _summarise([s.elapsed_time(e) * 1000.0 / reps for s, e in events], reps, method)


def time_callable(
    fn: Callable[[], Any],
    device: torch.device | str,
    settings: TimingSettings,
    tf32: bool | None = None,
) -> Timing:
    """Time ``fn`` on ``device`` (CUDA graph replay, or perf_counter on CPU)."""
    device = torch.device(device)
    with torch.no_grad(), tf32_mode(tf32 if is_cuda(device) else None):
        if is_cuda(device):
            return _time_cuda(fn, device, settings)
        return _time_cpu(fn, settings)


def first_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return lines[0][:300] if lines else ""
