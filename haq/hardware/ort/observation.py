"""One profiling job measured: its wall timing and its node times attributed to layers and
boundaries, as the observation record `haq.hardware.ort.files` stores and
`haq.hardware.ort.aggregation` turns into tables.

The wall time is the median of plain runs (profiler off); ORT's profiler then gives each
node's time, which `haq.hardware.ort.attribution.Attributor` assigns to a layer or to the
boundary in front of one. A job timed again keeps its fastest median (`add_wall`); one whose
profile lost node time to nothing (`lost_time`) is measured again by `profile_target`.
"""

from __future__ import annotations

import contextlib
import io
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from haq.hardware.ort.aggregation import spec_row
from haq.hardware.ort.attribution import Attributor, median_p10_p90, profile_nodes
from haq.hardware.ort.target import boundaries

if TYPE_CHECKING:
    from haq.models.spec import LayerSpec


@dataclass(frozen=True)
class JobSpec:
    """One config of one model at one thread count."""

    model: str
    config: str  # "uniform:int8", "alt:fp32/int8", "fp32+matmulnbits4"
    kernels: tuple[str, ...]
    threads: int
    batch: int = 1

    @property
    def key(self) -> tuple[str, int, int, str]:
        return (self.model, self.threads, self.batch, self.config)


def time_wall(data: bytes, threads: int, batch: int, runs: int, warmup: int) -> dict[str, Any]:
    """Median wall time of ``runs`` runs (profiler off) after ``warmup``, with the load."""
    from haq.export.bench import benchmark

    with contextlib.redirect_stderr(io.StringIO()):  # its busy warning: kept in the record
        r = benchmark(data, threads=threads, batch=batch, runs=runs, warmup=warmup,
                      profile=False, busy_check_s=0.1)  # fmt: skip
    return {
        "median_us": round(r.median_ms * 1e3, 2),
        "p10_us": round(r.p10_ms * 1e3, 2),
        "p90_us": round(r.p90_ms * 1e3, 2),
        "others_cpu": r.others_cpu_during,
        "busy": r.busy_warning is not None,
        "ort_version": r.ort_version,
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
    }


def add_wall(ob: dict[str, Any], wall: dict[str, Any]) -> None:
    """Record another wall timing of a job; its wall time is the fastest median (other
    processes only ever slow a run down) and the node-time scale follows it."""
    ob["walls"].append(wall)
    best = min(ob["walls"], key=lambda w: w["median_us"])
    ob["wall_us"], ob["wall_p10_us"], ob["wall_p90_us"] = (
        best["median_us"], best["p10_us"], best["p90_us"])  # fmt: skip
    ob["busy"] = best["busy"]
    ob["scale"] = round(ob["wall_us"] / (ob["profiled_total_us"] or 1.0), 5)


#: Share of a job's profiled node time that may stay unattributed before `profile_target`
#: measures it again (nameless nodes ORT made, before `attribution.name_unnamed_nodes`).
LOST_TIME_SHARE = 0.01


def lost_time(ob: dict[str, Any]) -> bool:
    """Whether an observation lost more than `LOST_TIME_SHARE` of its node time."""
    return float(ob.get("unmatched_us", 0.0)) > LOST_TIME_SHARE * float(ob["profiled_total_us"])


def measure_job(
    job: JobSpec,
    data: bytes,
    specs: Sequence[LayerSpec],
    *,
    runs: int,
    profile_runs: int,
    warmup: int,
) -> dict[str, Any]:
    """Time and attribute one exported config; the observation record (JSON-able)."""
    import onnx

    load_before = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    t0 = time.time()
    wall = time_wall(data, job.threads, job.batch, runs, warmup)
    prof = profile_nodes(data, job.threads, warmup=min(warmup, 5), runs=profile_runs)
    attr = Attributor(onnx.load_model_from_string(data), prof.optimized, [s.name for s in specs])
    layer_runs: dict[int, list[float]] = {}
    bound_runs: dict[int, list[float]] = {}
    layer_ops: dict[int, list[str]] = {}
    bound_ops: dict[int, list[str]] = {}
    unmatched = [0.0] * prof.runs
    for node, per_run in prof.times.items():
        where = attr.assign(node)
        if where is None:
            unmatched = [a + b for a, b in zip(unmatched, per_run, strict=True)]
            continue
        runs_map, ops_map = (
            (layer_runs, layer_ops) if where[0] == "layer" else (bound_runs, bound_ops)
        )
        acc = runs_map.setdefault(where[1], [0.0] * prof.runs)
        runs_map[where[1]] = [a + b for a, b in zip(acc, per_run, strict=True)]
        ops_map.setdefault(where[1], []).append(prof.ops[node])
    # scale so the buckets' medians (and the unmatched rest) sum to the wall median
    total = (
        sum(median_p10_p90(v)[0] for v in (*layer_runs.values(), *bound_runs.values()))
        + median_p10_p90(unmatched)[0]
    ) or 1.0
    wall_us = wall["median_us"]
    layers = []
    for i, s in enumerate(specs):
        med, p10, p90 = median_p10_p90(layer_runs.get(i, []))
        layers.append([i, s.name, job.kernels[i], round(med, 2), round(p10, 2), round(p90, 2),
                       "+".join(dict.fromkeys(layer_ops.get(i, [])))])  # fmt: skip
    bounds = []
    for b in boundaries(specs):
        med, p10, p90 = median_p10_p90(bound_runs.get(b.index, []))
        bounds.append([b.index, round(med, 2), round(p10, 2), round(p90, 2),
                       "+".join(bound_ops.get(b.index, []))])  # fmt: skip
    return {
        "model": job.model,
        "threads": job.threads,
        "layers_without_nodes": [s.name for i, s in enumerate(specs) if i not in layer_runs],
        "batch": job.batch,
        "config": job.config,
        "kernels": list(job.kernels),
        "specs": [spec_row(s) for s in specs],
        "wall_us": round(wall_us, 2),
        "wall_p10_us": wall["p10_us"],
        "wall_p90_us": wall["p90_us"],
        "walls": [wall],
        "runs": runs,
        "profile_runs": prof.runs,
        "profiled_total_us": round(total, 2),
        "scale": round(wall_us / total, 5),
        "unmatched_us": round(median_p10_p90(unmatched)[0], 2),
        "layers": layers,  # [index, name, class, median, p10, p90, ops] (unscaled µs)
        "boundaries": bounds,  # [index, median, p10, p90, ops] (unscaled µs)
        "others_cpu": wall["others_cpu"],
        "busy": wall["busy"],
        "loadavg_before": None if load_before is None else round(load_before, 2),
        "seconds": round(time.time() - t0, 2),
        "ort_version": wall["ort_version"],
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
    }
