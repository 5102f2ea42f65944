#!/usr/bin/env python3
"""Measure per-layer torch kernel latencies (and whole-model latencies) for ``gpu-h100``.

Run from the repository root, no install needed::

    PYTHONUNBUFFERED=1 PYTHONPATH=. python3 experiments/profile_gpu_h100.py --device cuda --out DIR

Loads every model with random weights (shapes are all that matter), discovers its
Conv2d/Linear layers, measures every unique layer signature x batch x precision once with
`haq.hardware.torch_gpu` (CUDA graph replay timed by CUDA events), then whole-model forwards
(fp32/tf32/bf16/fp16, eager torch, with and without BatchNorm folding) to validate
sum-of-layers predictions. Writes into ``--out``:

* ``layers.csv`` (+ ``layers.meta.json``): the latency table (`haq.hardware.tables` schema,
  plus ``reps`` and ``method`` columns);
* ``layer_map.csv``: model, layer name, index and signature columns (without ``batch``), so
  a model's layers join to table rows on the signature columns + batch;
* ``e2e.csv``: whole-model latency per model x batch x precision x BN folding, with the sum of
  that model's layer rows beside it;
* ``log.txt``: everything printed plus every measurement.

Work runs in priority order (all precisions of the batches <= 8, their whole-model runs,
then larger batches) and stops cleanly at ``--time-budget`` seconds after start; partial
files are rewritten every ~30 s, so even a killed run leaves data behind.
"""

# ruff: noqa: E402  (the clock and the cache location are set before the heavy imports)
from __future__ import annotations

import time

T0 = time.monotonic()

import argparse
import contextlib
import datetime as dt
import gc
import logging
import os
import platform
import signal
import subprocess
import sys
import tempfile
import traceback
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
# haq's user cache would need platformdirs; nothing here needs a persistent cache.
os.environ.setdefault("HAQ_CACHE_DIR", tempfile.mkdtemp(prefix="haq-cache-"))

import pandas as pd
import torch

from haq.hardware import torch_gpu as tg
from haq.hardware import torch_gpu_models as tgm
from haq.hardware.gpu_timing import first_line, tf32_mode, tf32_state
from haq.hardware.tables import COLUMNS, SHAPE_COLUMNS, signature, write_table
from haq.models import discover_layers, load_model
from haq.runtime.machine import machine_info

TARGET = "gpu-h100"
DEFAULT_MODELS = (
    "resnet18,resnet50,mobilenet_v2,mobilenet_v3_large,efficientnet_b0,cifar_resnet20,"
    "cifar_resnet56"
)
EXTRA_COLUMNS = ["reps", "method"]
E2E_COLUMNS = [
    "model", "batch", "precision", "bn_folded", "variant", "latency_us", "p10_us", "p90_us",
    "runs", "reps", "method", "layers", "layers_covered", "layers_sum_us",
]  # fmt: skip
FLUSH_EVERY_S = 30.0
RESERVE_S = 3.0  # kept back from the budget for the final writes
EARLY_BATCH = 8  # batches up to this go first, with all precisions and their e2e runs
E2E_START_FRACTION = 0.6  # the early e2e phase pre-empts unfinished layer work from here

PRECISION_NOTES = {
    "fp32": "F.conv2d/F.linear float32, NCHW, TF32 off (cudnn.allow_tf32 = matmul.allow_tf32 = False)",
    "tf32": "as fp32 with TF32 on (cudnn and cuBLAS)",
    "bf16": "bfloat16, convolutions channels_last (cuDNN)",
    "fp16": "float16, convolutions channels_last (cuDNN)",
    "w8a8": (
        "whole int8 layer in plain eager torch: static per-tensor quantisation of the bf16 NHWC "
        "input (mul, round, clamp, cast), im2col (view for 1x1 s1, strided slice for 1x1 s2, "
        "pad+unfold copy otherwise), pad to _int_mm rules (M>16, K,N%8), torch._int_mm "
        "(cuBLASLt int8), per-channel dequantisation + bias to bf16 (addcmul, cast)"
    ),
    "w8a8-gemm": "the bare torch._int_mm of the padded operands (what a fused int8 kernel would cost at best)",
    "fp8": (
        "whole float8 e4m3 layer: quantise bf16 input to e4m3 (mul, clamp, cast), im2col as "
        "w8a8 on a byte view, pad K,N to 16, torch._scaled_mm tensor-wise scales, bf16 out, bias"
    ),
    "fp8-gemm": "the bare torch._scaled_mm of the padded operands",
}


class Stop(BaseException):
    """The run must end (signal, budget, broken device): write what there is.

    A BaseException, like KeyboardInterrupt, so the per-job ``except Exception`` handlers
    do not swallow it.
    """


def _on_signal(signum: int, _frame: Any) -> None:
    raise Stop(f"signal {signal.Signals(signum).name}")


# ------------------------------------------------------------------------------ plumbing


class Log:
    """Lines to log.txt (all) and stdout (unless quiet), with the time since start."""

    def __init__(self, path: Path) -> None:
        self.file = path.open("a", encoding="utf-8")

    def __call__(self, msg: str, echo: bool = True) -> None:
        line = f"[{time.monotonic() - T0:7.1f}s] {msg}"
        self.file.write(line + "\n")
        self.file.flush()
        if echo:
            print(line, flush=True)


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


@dataclass
class State:
    out: Path
    log: Log
    device: torch.device
    meta: dict[str, Any]
    rows: list[dict[str, Any]] = field(default_factory=list)
    e2e_rows: list[dict[str, Any]] = field(default_factory=list)
    layer_map: list[dict[str, Any]] = field(default_factory=list)
    failures: list[dict[str, Any]] = field(default_factory=list)
    disabled: dict[str, str] = field(default_factory=dict)  # precision -> why (mid-run)
    fail_streak: dict[str, int] = field(default_factory=dict)
    last_flush: float = field(default_factory=time.monotonic)
    wall: dict[str, tuple[int, float]] = field(default_factory=dict)  # job type -> (n, s)

    def add_wall(self, key: str, seconds: float) -> None:
        n, t = self.wall.get(key, (0, 0.0))
        self.wall[key] = (n + 1, t + seconds)


# ------------------------------------------------------------------------------- outputs


def _layers_frame(rows: list[dict[str, Any]]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=COLUMNS + EXTRA_COLUMNS)


def _e2e_frame(state: State) -> pd.DataFrame:
    """e2e rows with the sum of the model's layer rows at the same batch and precision."""
    frame = pd.DataFrame(state.e2e_rows, columns=E2E_COLUMNS)
    if frame.empty or not state.rows or not state.layer_map:
        return frame
    key = SHAPE_COLUMNS
    layers = _layers_frame(state.rows)[key + ["batch", "precision", "latency_us"]]
    lmap = pd.DataFrame(state.layer_map)
    for i, row in frame.iterrows():
        mine = lmap[lmap["model"] == row["model"]][key]
        at = layers[(layers["batch"] == row["batch"]) & (layers["precision"] == row["precision"])]
        joined = mine.merge(at, on=key, how="left")
        covered = int(joined["latency_us"].notna().sum())
        frame.loc[i, "layers"] = len(mine)
        frame.loc[i, "layers_covered"] = covered
        frame.loc[i, "layers_sum_us"] = (
            round(float(joined["latency_us"].sum()), 3) if covered == len(mine) else float("nan")
        )
    return frame.astype({"layers": "Int64", "layers_covered": "Int64"})


def flush(state: State, complete: bool, stopped: str | None = None) -> None:
    """(Re)write every output file from what has been measured so far."""
    meta = dict(state.meta)
    meta["complete"] = complete
    meta["stopped_reason"] = stopped
    meta["elapsed_s"] = round(time.monotonic() - T0, 1)
    meta["rows"] = len(state.rows)
    meta["e2e_rows"] = len(state.e2e_rows)
    meta["disabled_mid_run"] = state.disabled
    by_prec: dict[str, int] = {}
    for f in state.failures:
        by_prec[f["precision"]] = by_prec.get(f["precision"], 0) + 1
    meta["failures"] = {"count": len(state.failures), "by_precision": by_prec,
                        "first": state.failures[:30]}  # fmt: skip
    coverage: dict[str, dict[str, int]] = {}
    for r in state.rows:
        b = coverage.setdefault(f"batch {r['batch']}", {})
        b[r["precision"]] = b.get(r["precision"], 0) + 1
    meta["coverage"] = coverage
    meta["job_wall_s"] = {
        k: {"jobs": n, "total_s": round(t, 2), "mean_ms": round(1000 * t / n, 1)}
        for k, (n, t) in sorted(state.wall.items())
    }
    write_table(_layers_frame(state.rows), state.out / "layers.csv", meta=meta)
    try:
        e2e = _e2e_frame(state)
    except Exception as exc:  # the join is a convenience: never lose the raw rows over it
        state.log(f"layers_sum_us join failed ({type(exc).__name__}: {exc}); raw e2e rows kept")
        e2e = pd.DataFrame(state.e2e_rows, columns=E2E_COLUMNS)
    e2e.to_csv(state.out / ".e2e.csv.tmp", index=False)
    os.replace(state.out / ".e2e.csv.tmp", state.out / "e2e.csv")
    state.last_flush = time.monotonic()


def _nvidia_smi() -> dict[str, str]:
    """Driver, clocks and power state as nvidia-smi reports them (errors recorded, not raised).

    Two queries: one unknown field fails a whole query, so the essentials go first.
    """
    out: dict[str, str] = {}
    for fields in (
        ["name", "driver_version", "pstate", "persistence_mode"],
        ["clocks.sm", "clocks.max.sm", "clocks.mem", "power.limit", "temperature.gpu",
         "mig.mode.current"],
    ):  # fmt: skip
        try:
            res = subprocess.run(
                ["nvidia-smi", f"--query-gpu={','.join(fields)}", "--format=csv,noheader"],
                capture_output=True, text=True, timeout=10, check=False,
            )  # fmt: skip
        except (OSError, subprocess.SubprocessError) as exc:
            out["error"] = f"nvidia-smi not usable: {type(exc).__name__}: {exc}"
            break
        if res.returncode != 0 or not res.stdout.strip():
            msg = (res.stderr or res.stdout).strip()[:200]
            out[f"error ({fields[0]}...)"] = f"exit {res.returncode}: {msg}"
            continue
        values = [v.strip() for v in res.stdout.strip().splitlines()[0].split(",")]
        out.update(zip(fields, values, strict=False))
    return out


def _base_meta(args: argparse.Namespace, device: torch.device) -> dict[str, Any]:
    settings = _settings(args)
    e2e = tg.TimingSettings.e2e(args.quick)
    meta: dict[str, Any] = {
        "target": TARGET,
        "provenance": "measured",
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "script": "experiments/profile_gpu_h100.py",
        "argv": sys.argv[1:],
        "runtime": {
            "python": platform.python_version(),
            "torch": torch.__version__,
            "cuda": torch.version.cuda,
            "cudnn": torch.backends.cudnn.version()
            if torch.backends.cudnn.is_available()
            else None,
            "cudnn_benchmark": torch.backends.cudnn.benchmark,
            "cudnn_benchmark_limit": getattr(torch.backends.cudnn, "benchmark_limit", None),
        },
        "host": machine_info(),
        "clocks_locked": False,
        "l2_flushed": False,
        "timing_settings": settings.__dict__,
        "e2e_timing_settings": e2e.__dict__,
        "threads_column": (
            "1 on CUDA (one stream; the column only means something for CPU tables), "
            "torch.get_num_threads() on CPU"
        ),
        "layer_semantics": (
            "one layer with bias (as after BatchNorm folding), no activation, random data; "
            "input produced once outside the timed region; conv padding inferred from "
            "in/out size (k-1)//2, dilation 1"
        ),
        "precisions": {p: PRECISION_NOTES[p] for p in args.precisions},
        "not_applicable": {
            "kinds": ["dwconv", "gconv"],
            "precisions": list(tg.INT8_PRECISIONS + tg.FP8_PRECISIONS),
            "reason": tg.NO_INTEGER_KERNEL,
        },  # fmt: skip
        "models": args.models,
        "batches": args.batches,
        "quick": args.quick,
        "files": {
            "layers.csv": "latency table rows (haq.hardware.tables schema + reps, method)",
            "layer_map.csv": "model, name, index + signature columns without batch: joins to "
            "layers.csv on those columns + batch",
            "e2e.csv": "whole-model eager torch forward per model x batch x precision x "
            "bn_folded, CUDA-graph timed, with layers_sum_us = sum of the model's layer rows "
            "at the same batch and precision (NaN unless every layer has a row)",
            "log.txt": "the run's log",
        },
    }
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        cap = torch.cuda.get_device_capability(device)
        meta["device"] = {
            "name": torch.cuda.get_device_name(device),
            "capability": f"sm{cap[0]}{cap[1]}",
            "total_memory_gib": round(props.total_memory / 2**30, 1),
            "multiprocessors": props.multi_processor_count,
        }
        meta["nvidia_smi"] = _nvidia_smi()
        with contextlib.suppress(Exception):  # private API; absent is fine
            meta["runtime"]["cuda_driver_api"] = torch._C._cuda_getDriverVersion()
        meta["method"] = (
            f"per measurement: {settings.warmup} eager warm-up calls on a side stream (cuDNN "
            f"autotuning, benchmark=True), then one CUDA graph capturing N back-to-back calls "
            f"(N chosen so a replay lasts ~{settings.target_us:g} us, {settings.min_reps}.."
            f"{settings.max_reps}), replayed {settings.samples} times between CUDA events; "
            "latency_us is the median per-call time over the replays, p10/p90 likewise; "
            "clocks not locked, L2 not flushed"
        )
    else:
        meta["device"] = {"name": machine_info()["processor"], "type": "cpu"}
        meta["method"] = (
            f"CPU fallback (smoke test only): {settings.samples} perf_counter loops of N calls"
        )
    return meta


# ---------------------------------------------------------------------------- measurement


def _settings(args: argparse.Namespace) -> tg.TimingSettings:
    return tg.TimingSettings.quick() if args.quick else tg.TimingSettings()


def _record_failure(state: State, job: LayerJob | E2EJob, exc: BaseException) -> None:
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


def _device_ok(state: State) -> bool:
    if state.device.type != "cuda":
        return True
    try:
        torch.cuda.synchronize(state.device)
        return True
    except Exception as exc:  # a sticky CUDA error: nothing more can be measured
        state.log(f"CUDA context is broken ({type(exc).__name__}: {first_line(exc)})")
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
    except torch.cuda.OutOfMemoryError as exc:
        torch.cuda.empty_cache()
        _record_failure(state, job, exc)
        return True
    except Exception as exc:
        _record_failure(state, job, exc)
        return _device_ok(state)
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
    t0 = time.monotonic()
    try:
        net, variant = cache.get(job, state.device)
        timing = tgm.measure_model(
            net, (job.batch, *shapes[job.model]), job.precision, state.device, settings
        )
        wall = time.monotonic() - t0
        state.add_wall(f"e2e {job.precision}", wall)
    except torch.cuda.OutOfMemoryError as exc:
        cache.net, cache.key = None, None
        torch.cuda.empty_cache()
        _record_failure(state, job, exc)
        return True
    except Exception as exc:
        _record_failure(state, job, exc)
        return _device_ok(state)
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


# ---------------------------------------------------------------------------------- plan


def discover(args: argparse.Namespace, state: State) -> tuple[list[dict], dict, dict]:
    """Load models, write layer_map.csv; unique signatures (no batch) in first-seen order."""
    unique: dict[tuple, dict[str, Any]] = {}
    models: dict[str, torch.nn.Module] = {}
    shapes: dict[str, tuple[int, ...]] = {}
    logging.getLogger("haq").setLevel(logging.ERROR)  # the random-weights warning, once each
    for name in args.models:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                loaded = load_model(name, weights="none")
                specs = discover_layers(loaded.model, loaded.example_input())
        except Exception as exc:
            state.log(f"cannot load {name}: {type(exc).__name__}: {first_line(exc)}; skipped")
            continue
        models[name] = loaded.model
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
    lm = pd.DataFrame(state.layer_map)
    lm.to_csv(state.out / ".layer_map.csv.tmp", index=False)
    os.replace(state.out / ".layer_map.csv.tmp", state.out / "layer_map.csv")
    return list(unique.values()), models, shapes


@dataclass
class Phase:
    name: str
    jobs: list[LayerJob | E2EJob]
    start_by: float | None = None  # monotonic time: pre-empt earlier phases from then on
    pos: int = 0  # next job

    @property
    def finished(self) -> bool:
        return self.pos >= len(self.jobs)


def plan(
    args: argparse.Namespace, sigs: list[dict[str, Any]], models: dict, precisions: list[str]
) -> list[Phase]:
    """Phases in priority order: layers of each early batch, their e2e, then each late batch.

    The early e2e phase starts at the latest after `E2E_START_FRACTION` of the budget, even
    if early layer phases are unfinished (they resume after it), so a slow run still
    validates.
    """

    def layer_jobs(batch: int) -> list[LayerJob | E2EJob]:
        return [
            LayerJob({**sig, "batch": batch}, p)
            for sig in sigs
            for p in precisions
            if tg.applicable(sig["kind"], p)
        ]

    def e2e_jobs(batches: list[int]) -> list[LayerJob | E2EJob]:
        if args.no_e2e:
            return []
        e2e_precisions = [p for p in tgm.E2E_PRECISIONS if p in precisions]
        folds = [f == "folded" for f in args.e2e_variants]
        return [
            E2EJob(m, b, p, fold)
            for m in models
            for p in e2e_precisions
            for fold in folds
            for b in batches
        ]

    early = [b for b in args.batches if b <= EARLY_BATCH]
    late = [b for b in args.batches if b > EARLY_BATCH]
    phases = [Phase(f"layers b{b}", layer_jobs(b)) for b in early]
    if early:
        start_by = T0 + E2E_START_FRACTION * args.time_budget
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


# ----------------------------------------------------------------------------------- main


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--device", default="cuda", choices=["cuda", "cpu"])
    ap.add_argument("--batches", default="1,8,32", help="comma list (default 1,8,32)")
    ap.add_argument("--models", default=DEFAULT_MODELS, help="comma list of registry names")
    ap.add_argument("--precisions", default=",".join(tg.PRECISIONS), help="comma list")
    ap.add_argument("--out", required=True, type=Path, help="output directory")
    ap.add_argument("--quick", action="store_true", help="few reps/samples (smoke test)")
    ap.add_argument("--time-budget", type=float, default=200.0,
                    help="seconds after start at which measuring stops (default 200)")  # fmt: skip
    ap.add_argument("--no-e2e", action="store_true", help="skip whole-model runs")
    ap.add_argument("--e2e-variants", default="folded,plain",
                    help="folded (Conv-BN folded with torch.fx) and/or plain")  # fmt: skip
    ap.add_argument("--threads", type=int, default=None,
                    help="torch CPU threads (default: 1 on --device cpu, torch's own on cuda)")  # fmt: skip
    ap.add_argument("--plan-only", action="store_true", help="print the plan and exit")
    args = ap.parse_args(argv)
    args.batches = [int(b) for b in str(args.batches).split(",") if b.strip()]
    args.models = [m.strip() for m in str(args.models).split(",") if m.strip()]
    args.precisions = [p.strip() for p in str(args.precisions).split(",") if p.strip()]
    args.e2e_variants = [v.strip() for v in str(args.e2e_variants).split(",") if v.strip()]
    bad = [p for p in args.precisions if p not in tg.PRECISIONS]
    if bad:
        ap.error(f"unknown precisions {bad}; choose from {list(tg.PRECISIONS)}")
    if any(v not in ("folded", "plain") for v in args.e2e_variants):
        ap.error("--e2e-variants takes folded and/or plain")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    log = Log(args.out / "log.txt")
    deadline = T0 + args.time_budget - RESERVE_S
    log(f"profile_gpu_h100: torch {torch.__version__}, python {platform.python_version()}, "
        f"budget {args.time_budget:g}s, argv {sys.argv[1:]}")  # fmt: skip

    if args.device == "cuda" and not torch.cuda.is_available():
        log("--device cuda but torch.cuda.is_available() is False; nothing measured")
        return 2
    device = torch.device("cuda", 0) if args.device == "cuda" else torch.device("cpu")
    if args.threads or device.type == "cpu":
        torch.set_num_threads(args.threads or 1)
    torch.backends.cudnn.benchmark = True
    torch.manual_seed(0)

    state = State(out=args.out, log=log, device=device, meta={})
    state.meta = _base_meta(args, device)
    log(f"device: {state.meta['device']}")
    if device.type == "cuda":
        log(f"nvidia-smi: {state.meta.get('nvidia_smi')}")
        log(f"cuda {torch.version.cuda}, cudnn {torch.backends.cudnn.version()}")

    reasons = tg.probe(device)
    skipped = {p: r for p, r in reasons.items() if r and p in args.precisions}
    precisions = [p for p in args.precisions if not reasons.get(p)]
    state.meta["skipped_precisions"] = skipped
    state.meta["measured_precisions"] = precisions
    with tf32_mode(False):
        state.meta["tf32_readback_fp32"] = tf32_state()
    with tf32_mode(True):
        state.meta["tf32_readback_tf32"] = tf32_state()
    try:
        state.meta["fp8_call"] = tg.resolve_scaled_mm(device)[1]
    except tg.Unsupported as exc:
        state.meta["fp8_call"] = f"unavailable: {exc}"
    for p, r in skipped.items():
        log(f"precision {p} skipped: {r}")

    sigs, models, shapes = discover(args, state)
    # Thousands of graph captures follow: keep any gc.collect() (torch < 2.5 ran one per
    # capture) from walking the models and pandas objects every time.
    with contextlib.suppress(Exception):
        torch.compiler.config.force_cudagraph_gc = False
    gc.collect()
    gc.freeze()
    state.meta["unique_signatures"] = len(sigs)
    kinds: dict[str, int] = {}
    for s in sigs:
        kinds[s["kind"]] = kinds.get(s["kind"], 0) + 1
    state.meta["unique_signatures_by_kind"] = kinds
    phases = plan(args, sigs, models, precisions)
    total = sum(len(p.jobs) for p in phases)
    state.meta["planned"] = {p.name: len(p.jobs) for p in phases}
    log(f"{len(sigs)} unique signatures {kinds}; plan: {state.meta['planned']} = {total} jobs")
    if args.plan_only:
        return 0

    settings = _settings(args)
    e2e_settings = tg.TimingSettings.e2e(args.quick)
    cache = ModelCache(models)
    done, stopped, current = 0, None, None
    # From here on a SIGTERM/SIGINT (timeout, Ctrl-C) ends the loop and still writes the files.
    previous = {sig: signal.signal(sig, _on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
    start = last_print = time.monotonic()
    try:
        while (phase := next_phase(phases, time.monotonic())) is not None:
            if phase is not current:
                what = "starts" if phase.pos == 0 else "resumes"
                log(f"phase {phase.name} {what}: {len(phase.jobs) - phase.pos} jobs left")
                if current is not None and not current.finished:
                    log(f"phase {current.name} paused at {current.pos}/{len(current.jobs)}")
                cache.net = cache.key = None
                current = phase
            if time.monotonic() >= deadline:
                raise Stop(f"time budget {args.time_budget:g}s reached")
            job = phase.jobs[phase.pos]
            phase.pos += 1
            if isinstance(job, E2EJob):
                ok = run_e2e(state, job, cache, shapes, e2e_settings)
            else:
                ok = run_layer(state, job, settings)
                if device.type == "cuda" and phase.pos % 200 == 0:
                    torch.cuda.empty_cache()
            done += 1
            if not ok:
                raise Stop("CUDA context broken")
            now = time.monotonic()
            if now - last_print >= 5.0 or phase.finished:
                eta = (now - start) / done * (total - done)
                log(f"{phase.name}: {phase.pos}/{len(phase.jobs)} | all {done}/{total} | "
                    f"{len(state.failures)} failed | ETA {eta:.0f}s | "
                    f"budget left {deadline - now:.0f}s")  # fmt: skip
                last_print = now
            if now - state.last_flush >= FLUSH_EVERY_S:
                flush(state, complete=False, stopped="partial (still running)")
    except Stop as exc:
        stopped = str(exc)
        log(f"stopping: {stopped} after {done}/{total} jobs")
    except Exception as exc:  # never lose what was measured
        stopped = f"unexpected {type(exc).__name__}: {first_line(exc)}"
        log(f"stopping: {stopped}\n{traceback.format_exc()}")
    cache.net = None
    for sig, handler in previous.items():
        signal.signal(sig, handler)
    gc.unfreeze()
    state.meta["done_jobs"] = done
    state.meta["planned_jobs"] = total
    state.meta["phases_done"] = {p.name: f"{p.pos}/{len(p.jobs)}" for p in phases}
    flush(state, complete=stopped is None, stopped=stopped)
    try:
        summarise(state)
    except Exception as exc:
        log(f"summary failed ({type(exc).__name__}: {exc}); the files are complete")
    log(f"wrote {args.out} ({len(state.rows)} layer rows, {len(state.e2e_rows)} e2e rows) "
        f"in {time.monotonic() - T0:.1f}s")  # fmt: skip
    return 0


def summarise(state: State) -> None:
    """A compact digest for a human (and a 12 kB output tail); the files hold everything."""
    if state.rows:
        frame = _layers_frame(state.rows)
        counts = frame.groupby(["batch", "precision"]).size().unstack(fill_value=0)
        state.log("rows per batch x precision:\n" + counts.to_string())
        med = frame.groupby(["batch", "precision"])["latency_us"].median().unstack()
        state.log("median layer latency (us):\n" + med.round(2).to_string())
    e2e = _e2e_frame(state)
    if not e2e.empty:
        e2e = e2e.assign(
            cell=[
                f"{lat / 1000:.3g}ms/{sum_ / lat:.2f}" if sum_ == sum_ else f"{lat / 1000:.3g}ms/-"
                for lat, sum_ in zip(e2e["latency_us"], e2e["layers_sum_us"], strict=True)
            ]
        )
        pivot = e2e.pivot_table(
            index=["model", "batch", "bn_folded"], columns="precision", values="cell",
            aggfunc="first",
        )  # fmt: skip
        state.log("e2e latency / (sum of layer rows / e2e):\n" + pivot.to_string())
    walls = ", ".join(f"{k} {1000 * t / n:.0f}ms" for k, (n, t) in sorted(state.wall.items()) if n)
    state.log(f"mean wall per job: {walls}")
    if state.failures:
        by: dict[str, int] = {}
        for f in state.failures:
            by[f["precision"]] = by.get(f["precision"], 0) + 1
        state.log(f"failures by precision: {by} (details in layers.meta.json and log.txt)")


if __name__ == "__main__":
    sys.exit(main())
