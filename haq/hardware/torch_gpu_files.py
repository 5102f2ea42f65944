"""What a gpu-h100 profiling run (`haq.hardware.torch_gpu_jobs`) keeps and writes: its log,
the rows measured so far (`State`), the metadata that says how they were measured, and the
files rewritten from them on every flush:

* ``layers.csv`` (+ ``layers.meta.json``): the latency table (`haq.hardware.tables` schema,
  plus ``reps`` and ``method`` columns);
* ``layer_map.csv``: model, layer name, index and signature columns (without ``batch``), so
  a model's layers join to table rows on the signature columns + batch (written once, by the
  job runner's discovery);
* ``e2e.csv``: whole-model latency per model x batch x precision x BN folding, with the sum of
  that model's layer rows beside it;
* ``log.txt``: everything printed plus every measurement.

Every file is replaced atomically, so a run killed between two flushes leaves whole files.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import platform
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd
import torch

from haq.hardware import torch_gpu as tg
from haq.hardware.tables import COLUMNS, SHAPE_COLUMNS, write_table
from haq.runtime.machine import machine_info

if TYPE_CHECKING:
    from haq.hardware.torch_gpu_jobs import GpuProfileOptions

TARGET = "gpu-h100"
EXTRA_COLUMNS = ["reps", "method"]
E2E_COLUMNS = [
    "model", "batch", "precision", "bn_folded", "variant", "latency_us", "p10_us", "p90_us",
    "runs", "reps", "method", "layers", "layers_covered", "layers_sum_us",
]  # fmt: skip

# What each precision's row times (copied into layers.meta.json; see `haq.hardware.torch_gpu`).
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


class Log:
    """Lines to log.txt (all) and stdout (unless not echoed), with the time since the start."""

    def __init__(self, path: Path, t0: float) -> None:
        self.file = path.open("a", encoding="utf-8")
        self.t0 = t0

    def __call__(self, msg: str, echo: bool = True) -> None:
        line = f"[{time.monotonic() - self.t0:7.1f}s] {msg}"
        self.file.write(line + "\n")
        self.file.flush()
        if echo:
            print(line, flush=True)

    def close(self) -> None:
        self.file.close()


@dataclass
class State:
    """Everything measured so far: what a flush writes, so a stopped run loses nothing."""

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


def layers_frame(rows: list[dict[str, Any]]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=COLUMNS + EXTRA_COLUMNS)


def e2e_frame(state: State) -> pd.DataFrame:
    """e2e rows with the sum of the model's layer rows at the same batch and precision."""
    frame = pd.DataFrame(state.e2e_rows, columns=E2E_COLUMNS)
    if frame.empty or not state.rows or not state.layer_map:
        return frame
    key = SHAPE_COLUMNS
    layers = layers_frame(state.rows)[key + ["batch", "precision", "latency_us"]]
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


def write_csv(frame: pd.DataFrame, path: Path) -> None:
    """Replace ``path`` atomically (a temporary file beside it, then os.replace)."""
    tmp = path.with_name(f".{path.name}.tmp")
    frame.to_csv(tmp, index=False)
    os.replace(tmp, path)


def flush(state: State, complete: bool, stopped: str | None = None) -> None:
    """(Re)write layers.csv, layers.meta.json and e2e.csv from what has been measured so far."""
    meta = dict(state.meta)
    meta["complete"] = complete
    meta["stopped_reason"] = stopped
    meta["elapsed_s"] = round(time.monotonic() - state.log.t0, 1)
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
    write_table(layers_frame(state.rows), state.out / "layers.csv", meta=meta)
    try:
        e2e = e2e_frame(state)
    except Exception as exc:  # the join is a convenience: never lose the raw rows over it
        state.log(f"layers_sum_us join failed ({type(exc).__name__}: {exc}); raw e2e rows kept")
        e2e = pd.DataFrame(state.e2e_rows, columns=E2E_COLUMNS)
    write_csv(e2e, state.out / "e2e.csv")
    state.last_flush = time.monotonic()


def summarise(state: State) -> None:
    """A compact digest for a human (and a 12 kB output tail); the files hold everything."""
    if state.rows:
        frame = layers_frame(state.rows)
        counts = frame.groupby(["batch", "precision"]).size().unstack(fill_value=0)
        state.log("rows per batch x precision:\n" + counts.to_string())
        med = frame.groupby(["batch", "precision"])["latency_us"].median().unstack()
        state.log("median layer latency (us):\n" + med.round(2).to_string())
    e2e = e2e_frame(state)
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


# ------------------------------------------------------------------------------ metadata


def nvidia_smi() -> dict[str, str]:
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


def base_meta(
    options: GpuProfileOptions, device: torch.device, script: str, argv: Sequence[str]
) -> dict[str, Any]:
    """How the rows are measured: runtime, host, device, timing settings, precision notes."""
    settings = options.layer_settings()
    e2e = tg.TimingSettings.e2e(options.quick)
    meta: dict[str, Any] = {
        "target": TARGET,
        "provenance": "measured",
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "script": script,
        "argv": list(argv),
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
        "precisions": {p: PRECISION_NOTES[p] for p in options.precisions},
        "not_applicable": {
            "kinds": ["dwconv", "gconv"],
            "precisions": list(tg.INT8_PRECISIONS + tg.FP8_PRECISIONS),
            "reason": tg.NO_INTEGER_KERNEL,
        },  # fmt: skip
        "models": list(options.models),
        "batches": list(options.batches),
        "quick": options.quick,
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
        meta["nvidia_smi"] = nvidia_smi()
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
