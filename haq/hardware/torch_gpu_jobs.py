"""The gpu-h100 profiling run: plan the jobs, run them in priority order within a time budget,
and keep the files current (what the ``gpu-h100`` builder and ``experiments/profile_gpu_h100.py``
run).

Loads every model with random weights (shapes are all that matter), discovers its Conv2d/Linear
layers, measures every unique layer signature x batch x precision once with
`haq.hardware.torch_gpu` (CUDA graph replay timed by CUDA events), then whole-model forwards
(fp32/tf32/bf16/fp16, eager torch, with and without BatchNorm folding:
`haq.hardware.torch_gpu_models`) to validate sum-of-layers predictions. The files it writes are
described in `haq.hardware.torch_gpu_files`.

Work runs in priority order (all precisions of the batches <= 8, their whole-model runs, then
larger batches) and stops cleanly at ``time_budget`` seconds after the start; partial files
are rewritten every ~30 s, and SIGTERM/SIGINT end the run after writing them, so even a killed
run leaves data behind. The CPU device runs the same jobs with ``time.perf_counter`` timing:
for tests and smoke runs only.
"""

from __future__ import annotations

import contextlib
import gc
import logging
import platform
import signal
import threading
import time
import traceback
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import torch

from haq.errors import HaqError
from haq.hardware import torch_gpu as tg
from haq.hardware import torch_gpu_models as tgm
from haq.hardware.gpu_timing import first_line, tf32_mode, tf32_state
from haq.hardware.tables import signature
from haq.hardware.torch_gpu_files import Log, State, base_meta, flush, summarise, write_csv
from haq.hardware.torch_gpu_measure import E2EJob, Job, LayerJob, ModelCache, run_e2e, run_layer
from haq.models import discover_layers, load_model

DEFAULT_MODELS = ("resnet18", "resnet50", "mobilenet_v2", "mobilenet_v3_large", "efficientnet_b0",
                  "cifar_resnet20", "cifar_resnet56")  # fmt: skip
E2E_VARIANTS = ("folded", "plain")  # Conv-BN folded with torch.fx, or the model as loaded
FLUSH_EVERY_S = 30.0
RESERVE_S = 3.0  # kept back from the budget for the final writes
EARLY_BATCH = 8  # batches up to this go first, with all precisions and their e2e runs
E2E_START_FRACTION = 0.6  # the early e2e phase pre-empts unfinished layer work from here
NO_CUDA = (
    "gpu-h100 is measured with torch on a CUDA device; none is visible here "
    "(torch.cuda.is_available() is False): run on a machine with an H100"
)


class Stop(BaseException):
    """The run must end (signal, budget, broken device): write what there is.

    A BaseException, like KeyboardInterrupt, so the per-job ``except Exception`` handlers
    do not swallow it.
    """


def _on_signal(signum: int, _frame: Any) -> None:
    raise Stop(f"signal {signal.Signals(signum).name}")


@dataclass(frozen=True)
class GpuProfileOptions:
    """What to measure and how long for (the experiment's flags, as the builder's options)."""

    device: str = "cuda"  # or "cpu": the same jobs, perf_counter timed (tests, smoke runs)
    models: tuple[str, ...] = DEFAULT_MODELS
    batches: tuple[int, ...] = (1, 8, 32)
    precisions: tuple[str, ...] = tg.PRECISIONS
    quick: bool = False  # few reps/samples (smoke test)
    time_budget: float = 200.0  # seconds after the start at which measuring stops
    e2e: bool = True  # the whole-model runs
    e2e_variants: tuple[str, ...] = E2E_VARIANTS
    threads: int | None = None  # torch CPU threads (default 1 on cpu, torch's own on cuda)
    plan_only: bool = False  # log the plan, measure nothing

    def __post_init__(self) -> None:
        if self.device not in ("cuda", "cpu"):
            raise HaqError(f"device must be cuda or cpu, not {self.device!r}")
        bad = [p for p in self.precisions if p not in tg.PRECISIONS]
        if bad:
            raise HaqError(f"unknown precisions {bad}; choose from {list(tg.PRECISIONS)}")
        if any(v not in E2E_VARIANTS for v in self.e2e_variants):
            raise HaqError(f"e2e variants are folded and/or plain, not {list(self.e2e_variants)}")

    def layer_settings(self) -> tg.TimingSettings:
        return tg.TimingSettings.quick() if self.quick else tg.TimingSettings()


def torch_device(name: str) -> torch.device:
    """The device to measure on; a one-line `HaqError` when CUDA is asked for but absent."""
    if name == "cuda" and not torch.cuda.is_available():
        raise HaqError(NO_CUDA)
    return torch.device("cuda", 0) if name == "cuda" else torch.device("cpu")


# ---------------------------------------------------------------------------------- plan


def discover(models: Sequence[str], state: State) -> tuple[list[dict], dict, dict]:
    """Load models, write layer_map.csv; unique signatures (no batch) in first-seen order."""
    unique: dict[tuple, dict[str, Any]] = {}
    loaded_models: dict[str, torch.nn.Module] = {}
    shapes: dict[str, tuple[int, ...]] = {}
    haq_log = logging.getLogger("haq")
    level = haq_log.level
    haq_log.setLevel(logging.ERROR)  # the random-weights warning, once each
    try:
        for name in models:
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    loaded = load_model(name, weights="none")
                    specs = discover_layers(loaded.model, loaded.example_input())
            except Exception as exc:
                state.log(f"cannot load {name}: {type(exc).__name__}: {first_line(exc)}; skipped")
                continue
            loaded_models[name] = loaded.model
            shapes[name] = tuple(loaded.entry.preprocess.input_size)
            for spec in specs:
                sig = signature(spec, 1)
                del sig["batch"]
                state.layer_map.append(
                    {
                        "model": name,
                        "name": spec.name,
                        "index": spec.index,
                        **sig,
                        "macs": spec.macs,
                        "params": spec.params,
                    }  # fmt: skip
                )
                unique.setdefault(tuple(sig.values()), sig)
            state.log(f"{name}: {len(specs)} layers")
    finally:
        haq_log.setLevel(level)
    write_csv(pd.DataFrame(state.layer_map), state.out / "layer_map.csv")
    return list(unique.values()), loaded_models, shapes


@dataclass
class Phase:
    name: str
    jobs: list[Job]
    start_by: float | None = None  # monotonic time: pre-empt earlier phases from then on
    pos: int = 0  # next job

    @property
    def finished(self) -> bool:
        return self.pos >= len(self.jobs)


def plan(
    options: GpuProfileOptions,
    sigs: list[dict[str, Any]],
    models: Sequence[str],
    precisions: Sequence[str],
    t0: float,
) -> list[Phase]:
    """Phases in priority order: layers of each early batch, their e2e, then each late batch.

    The early e2e phase starts at the latest after `E2E_START_FRACTION` of the budget, even
    if early layer phases are unfinished (they resume after it), so a slow run still
    validates.
    """

    def layer_jobs(batch: int) -> list[Job]:
        return [
            LayerJob({**sig, "batch": batch}, p)
            for sig in sigs
            for p in precisions
            if tg.applicable(sig["kind"], p)
        ]

    def e2e_jobs(batches: list[int]) -> list[Job]:
        if not options.e2e:
            return []
        e2e_precisions = [p for p in tgm.E2E_PRECISIONS if p in precisions]
        folds = [f == "folded" for f in options.e2e_variants]
        return [
            E2EJob(m, b, p, fold)
            for m in models
            for p in e2e_precisions
            for fold in folds
            for b in batches
        ]

    early = [b for b in options.batches if b <= EARLY_BATCH]
    late = [b for b in options.batches if b > EARLY_BATCH]
    phases = [Phase(f"layers b{b}", layer_jobs(b)) for b in early]
    if early:
        start_by = t0 + E2E_START_FRACTION * options.time_budget
        phases.append(Phase(f"e2e b{','.join(map(str, early))}", e2e_jobs(early), start_by))
    for b in late:
        phases += [Phase(f"layers b{b}", layer_jobs(b)), Phase(f"e2e b{b}", e2e_jobs([b]))]
    return [p for p in phases if p.jobs]


def next_phase(phases: list[Phase], now: float) -> Phase | None:
    """The first unfinished phase, unless a later one is due (started or past start_by)."""
    pending = [p for p in phases if not p.finished]
    for p in pending[1:]:
        if p.pos > 0 or (p.start_by is not None and now >= p.start_by):
            return p
    return pending[0] if pending else None


# ------------------------------------------------------------------------------------ run


def execute(
    phases: list[Phase],
    run_job: Callable[[Job, Phase], bool],
    state: State,
    deadline: float,
    budget: float,
    on_switch: Callable[[], None] = lambda: None,
    clock: Callable[[], float] = time.monotonic,
) -> tuple[int, str | None]:
    """Run the phases' jobs in `next_phase` order until done, ``deadline`` or a `Stop`.

    ``run_job(job, phase)`` returns False when the device is broken; ``on_switch`` runs
    between phases.
    Returns the jobs done and why the run stopped early (None: every job ran).
    """
    total = sum(len(p.jobs) for p in phases)
    done, current = 0, None
    start = last_print = clock()
    try:
        while (phase := next_phase(phases, clock())) is not None:
            if phase is not current:
                what = "starts" if phase.pos == 0 else "resumes"
                state.log(f"phase {phase.name} {what}: {len(phase.jobs) - phase.pos} jobs left")
                if current is not None and not current.finished:
                    state.log(f"phase {current.name} paused at {current.pos}/{len(current.jobs)}")
                on_switch()
                current = phase
            if clock() >= deadline:
                raise Stop(f"time budget {budget:g}s reached")
            job = phase.jobs[phase.pos]
            phase.pos += 1
            ok = run_job(job, phase)
            done += 1
            if not ok:
                raise Stop("CUDA context broken")
            now = clock()
            if now - last_print >= 5.0 or phase.finished:
                eta = (now - start) / done * (total - done)
                state.log(f"{phase.name}: {phase.pos}/{len(phase.jobs)} | all {done}/{total} | "
                          f"{len(state.failures)} failed | ETA {eta:.0f}s | "
                          f"budget left {deadline - now:.0f}s")  # fmt: skip
                last_print = now
            if now - state.last_flush >= FLUSH_EVERY_S:
                flush(state, complete=False, stopped="partial (still running)")
    except Stop as exc:
        state.log(f"stopping: {exc} after {done}/{total} jobs")
        return done, str(exc)
    except Exception as exc:  # never lose what was measured
        stopped = f"unexpected {type(exc).__name__}: {first_line(exc)}"
        state.log(f"stopping: {stopped}\n{traceback.format_exc()}")
        return done, stopped
    return done, None


@contextlib.contextmanager
def _stop_on_signals() -> Iterator[None]:
    """SIGTERM/SIGINT (a timeout, Ctrl-C) raise `Stop`, so the files are still written."""
    if threading.current_thread() is not threading.main_thread():  # signals are main-only
        yield
        return
    previous = {s: signal.signal(s, _on_signal) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


def _probe_precisions(state: State, options: GpuProfileOptions) -> list[str]:
    """The asked precisions the device runs; the others and the TF32/fp8 setup in the meta."""
    reasons = tg.probe(state.device)
    skipped = {p: r for p, r in reasons.items() if r and p in options.precisions}
    precisions = [p for p in options.precisions if not reasons.get(p)]
    state.meta["skipped_precisions"] = skipped
    state.meta["measured_precisions"] = precisions
    with tf32_mode(False):
        state.meta["tf32_readback_fp32"] = tf32_state()
    with tf32_mode(True):
        state.meta["tf32_readback_tf32"] = tf32_state()
    try:
        state.meta["fp8_call"] = tg.resolve_scaled_mm(state.device)[1]
    except tg.Unsupported as exc:
        state.meta["fp8_call"] = f"unavailable: {exc}"
    for p, r in skipped.items():
        state.log(f"precision {p} skipped: {r}")
    return precisions


def profile_gpu(
    out: Path,
    options: GpuProfileOptions | None = None,
    *,
    t0: float | None = None,
    script: str = "haq.hardware.torch_gpu_jobs",
    argv: Sequence[str] = (),
) -> State:
    """Measure into ``out`` (created); the `State` holds the rows and the metadata written.

    ``t0`` is the monotonic start the time budget counts from (default: now; the experiment
    passes its process start). ``script`` and ``argv`` are recorded in the metadata. A CUDA
    device that is asked for but absent is a `HaqError` (after logging it to log.txt).
    """
    options = options or GpuProfileOptions()
    t0 = time.monotonic() if t0 is None else t0
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    log = Log(out / "log.txt", t0)
    try:
        return _profile(out, options, log, t0, script, argv)
    finally:
        log.close()


def _profile(out: Path, options: GpuProfileOptions, log: Log, t0: float, script: str,
             argv: Sequence[str]) -> State:  # fmt: skip
    deadline = t0 + options.time_budget - RESERVE_S
    log(f"profile_gpu_h100: torch {torch.__version__}, python {platform.python_version()}, "
        f"budget {options.time_budget:g}s, argv {list(argv)}")  # fmt: skip
    try:
        device = torch_device(options.device)
    except HaqError as exc:
        log(f"{exc}; nothing measured")
        raise
    if options.threads or device.type == "cpu":
        torch.set_num_threads(options.threads or 1)
    torch.backends.cudnn.benchmark = True
    torch.manual_seed(0)

    state = State(out=out, log=log, device=device, meta={})
    state.meta = base_meta(options, device, script, argv)
    log(f"device: {state.meta['device']}")
    if device.type == "cuda":
        log(f"nvidia-smi: {state.meta.get('nvidia_smi')}")
        log(f"cuda {torch.version.cuda}, cudnn {torch.backends.cudnn.version()}")
    precisions = _probe_precisions(state, options)

    sigs, models, shapes = discover(options.models, state)
    # Thousands of graph captures follow: keep any gc.collect() (torch < 2.5 ran one per
    # capture) from walking the models and pandas objects every time.
    with contextlib.suppress(Exception):
        torch.compiler.config.force_cudagraph_gc = False
    gc.collect()
    gc.freeze()
    try:
        state.meta["unique_signatures"] = len(sigs)
        kinds: dict[str, int] = {}
        for s in sigs:
            kinds[s["kind"]] = kinds.get(s["kind"], 0) + 1
        state.meta["unique_signatures_by_kind"] = kinds
        phases = plan(options, sigs, list(models), precisions, t0)
        total = sum(len(p.jobs) for p in phases)
        state.meta["planned"] = {p.name: len(p.jobs) for p in phases}
        log(f"{len(sigs)} unique signatures {kinds}; plan: {state.meta['planned']} = {total} jobs")
        if options.plan_only:
            return state
        _measure(state, options, phases, models, shapes, deadline)
    finally:
        gc.unfreeze()
    log(f"wrote {out} ({len(state.rows)} layer rows, {len(state.e2e_rows)} e2e rows) "
        f"in {time.monotonic() - t0:.1f}s")  # fmt: skip
    return state


def _measure(state: State, options: GpuProfileOptions, phases: list[Phase],
             models: dict[str, torch.nn.Module], shapes: dict[str, tuple[int, ...]],
             deadline: float) -> None:  # fmt: skip
    """Run the plan, then write the final files and the summary."""
    settings = options.layer_settings()
    e2e_settings = tg.TimingSettings.e2e(options.quick)
    cache = ModelCache(models)
    cuda = state.device.type == "cuda"

    def run_job(job: Job, phase: Phase) -> bool:
        if isinstance(job, E2EJob):
            return run_e2e(state, job, cache, shapes, e2e_settings)
        ok = run_layer(state, job, settings)
        if cuda and phase.pos % 200 == 0:
            torch.cuda.empty_cache()
        return ok

    def on_switch() -> None:
        cache.net = cache.key = None

    with _stop_on_signals():
        done, stopped = execute(phases, run_job, state, deadline, options.time_budget, on_switch)
    cache.net = None
    state.meta["done_jobs"] = done
    state.meta["planned_jobs"] = sum(len(p.jobs) for p in phases)
    state.meta["phases_done"] = {p.name: f"{p.pos}/{len(p.jobs)}" for p in phases}
    flush(state, complete=stopped is None, stopped=stopped)
    try:
        summarise(state)
    except Exception as exc:
        state.log(f"summary failed ({type(exc).__name__}: {exc}); the files are complete")
