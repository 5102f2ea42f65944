"""Latency of an exported model as ONNX Runtime really runs it, with a per-layer kernel table.

Totals come from wall-clock runs without the profiler (its overhead reaches +65% on small
graphs); attribution comes from a separate profiled session whose node times are mapped back to
haq layer names (`haq.runtime.ort.LayerMap`).

onnxruntime and onnx are imported inside functions: ``import haq`` stays light.
"""

from __future__ import annotations

import dataclasses
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from haq.errors import HaqError
from haq.runtime.machine import CpuWatch, busy_message
from haq.runtime.ort import (
    LayerMap,
    load_graph,
    make_session,
    model_source,
    node_times,
    optimized_nodes,
    random_feeds,
)

# --------------------------------------------------------------------------- benchmark


@dataclass
class BenchResult:
    """Wall-clock latency (profiler off) plus per-layer kernel times (profiled session).

    ``per_layer``: one row per haq layer in execution order: layer, op_type (as executed, ``+``
    joined when a layer runs as several nodes), nodes, kernel_us (median over profiled runs),
    share (of summed kernel time). ``per_node``: every executed node: node, op_type, domain,
    provider, kernel_us, share, layer (None = "other": Q/DQ, Transpose, pooling, ...), match.
    ``per_op``: kernel time by executed op type, with the part not inside any layer.
    """

    median_ms: float
    p10_ms: float
    p90_ms: float
    mean_ms: float
    min_ms: float
    best_round_median_ms: float
    runs: int
    rounds: int
    warmup: int
    threads: int
    batch: int
    ort_version: str
    model: str | None = None
    inputs: dict[str, list[int]] = field(default_factory=dict)
    per_layer: list[dict[str, Any]] = field(default_factory=list)
    per_node: list[dict[str, Any]] = field(default_factory=list)
    per_op: list[dict[str, Any]] = field(default_factory=list)
    profile_runs: int = 0
    kernel_total_us: float | None = None
    other_us: float | None = None
    others_cpu_before: float | None = None
    others_cpu_during: float | None = None
    busy_warning: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _percentile(sorted_ms: Sequence[float], q: float) -> float:
    """Linear-interpolated percentile (numpy's default) of sorted values."""
    pos = (len(sorted_ms) - 1) * q
    lo = int(pos)
    hi = min(lo + 1, len(sorted_ms) - 1)
    return sorted_ms[lo] + (sorted_ms[hi] - sorted_ms[lo]) * (pos - lo)


def _profile(
    src: str | bytes,
    layer_map: LayerMap,
    threads: int,
    feeds: dict[str, Any],
    warmup: int,
    runs: int,
) -> tuple[list[dict[str, Any]], list[dict[str, Any]], list[dict[str, Any]], float, float]:
    """Profiled session: per-node, per-layer, per-op rows, kernel total and other µs."""
    with tempfile.TemporaryDirectory(prefix="haq-bench-") as tmp:
        opt = Path(tmp) / "optimized.onnx"
        sess = make_session(src, threads=threads, profile=True, optimized_model_path=opt,
                            profile_prefix=str(Path(tmp) / "profile"))  # fmt: skip
        for _ in range(warmup + runs):
            sess.run(None, feeds)
        with open(sess.end_profiling()) as f:
            events = json.load(f)
        nodes = optimized_nodes(opt)
    times = node_times(events, runs)
    total = sum(t["kernel_us"] for t in times.values()) or 1.0
    per_node: list[dict[str, Any]] = []
    for name, t in sorted(times.items(), key=lambda kv: kv[1]["order"]):
        proto = nodes.get(name)
        m = layer_map.match(
            name,
            t["op_type"],
            list(proto.input) if proto is not None else [],
            list(proto.output) if proto is not None else [],
        )
        per_node.append({
            "node": name,
            "op_type": t["op_type"],
            "domain": (proto.domain or "ai.onnx") if proto is not None else None,
            "provider": t["provider"],
            "kernel_us": round(t["kernel_us"], 3),
            "share": round(t["kernel_us"] / total, 5),
            "layer": m.layer,
            "match": m.match,
        })  # fmt: skip
    per_layer: dict[str, dict[str, Any]] = {}
    per_op: dict[str, dict[str, Any]] = {}
    for row in per_node:
        op = per_op.setdefault(row["op_type"], {"op_type": row["op_type"], "nodes": 0,
                                                "kernel_us": 0.0, "other_us": 0.0})  # fmt: skip
        op["nodes"] += 1
        op["kernel_us"] += row["kernel_us"]
        if row["layer"] is None:
            op["other_us"] += row["kernel_us"]
            continue
        lay = per_layer.setdefault(row["layer"], {"layer": row["layer"], "op_type": "",
                                                  "nodes": [], "kernel_us": 0.0})  # fmt: skip
        ops = lay["op_type"].split("+") if lay["op_type"] else []
        if row["op_type"] not in ops:
            lay["op_type"] = "+".join([*ops, row["op_type"]])
        lay["nodes"].append(row["node"])
        lay["kernel_us"] += row["kernel_us"]
    for lay in per_layer.values():
        lay["kernel_us"] = round(lay["kernel_us"], 3)
        lay["share"] = round(lay["kernel_us"] / total, 5)
    ops_sorted = sorted(per_op.values(), key=lambda r: -r["kernel_us"])
    for op in ops_sorted:
        op["kernel_us"] = round(op["kernel_us"], 3)
        op["other_us"] = round(op["other_us"], 3)
        op["share"] = round(op["kernel_us"] / total, 5)
    other = sum(r["kernel_us"] for r in per_node if r["layer"] is None)
    return list(per_layer.values()), per_node, ops_sorted, round(total, 3), round(other, 3)


def benchmark(
    model: Any,
    threads: int = 1,
    batch: int = 1,
    runs: int = 50,
    warmup: int = 10,
    profile: bool = True,
    *,
    profile_runs: int | None = None,
    busy_check_s: float = 0.3,
    rounds: int = 1,
    pause_s: float = 1.0,
) -> BenchResult:
    """Median wall-clock latency of ``model`` (path, bytes or ModelProto) on the CPU provider.

    Warm-up runs first (the first run is 1.5-2.7x slower), then ``runs`` timed runs with the
    profiler off. With ``profile``, a second session with the profiler on runs
    ``profile_runs`` (default min(runs, 20)) more times for the per-layer table. Other
    processes' CPU use is sampled for ``busy_check_s`` before and during timing; above 25% of
    the CPUs, ``busy_warning`` is set and printed to stderr. ``rounds`` > 1 times ``runs``
    runs that many times, ``pause_s`` apart: the statistics cover all of them, and
    ``best_round_median_ms`` is the fastest round's median (the statistic the measured
    cpu-avx512 tables hold: the latency when other load leaves the CPUs alone).
    """
    import onnxruntime as ort

    for name, value, least in (("threads", threads, 1), ("batch", batch, 1), ("runs", runs, 1),
                               ("warmup", warmup, 0), ("rounds", rounds, 1)):  # fmt: skip
        if value < least:
            raise HaqError(f"{name} must be at least {least}, not {value}")
    src, label = model_source(model)
    sess = make_session(src, threads=threads)
    layer_map = (
        LayerMap(load_graph(model if hasattr(model, "graph") else src, label)) if profile else None
    )
    feeds = random_feeds(sess, batch)

    watch = CpuWatch()
    time.sleep(busy_check_s)
    before = watch.others()
    for _ in range(warmup):
        sess.run(None, feeds)
    watch = CpuWatch()
    per_round: list[list[float]] = []
    for r in range(rounds):
        if r:
            time.sleep(pause_s)
            sess.run(None, feeds)  # re-warm after the pause
        times = []
        for _ in range(runs):
            t0 = time.perf_counter()
            sess.run(None, feeds)
            times.append((time.perf_counter() - t0) * 1e3)
        per_round.append(times)
    ms = [t for times in per_round for t in times]
    during = watch.others()
    del sess
    warning = busy_message(before, during, threads)
    if warning:
        print(f"haq: warning: {warning}", file=sys.stderr)

    ms_sorted = sorted(ms)
    result = BenchResult(
        median_ms=round(statistics.median(ms), 4),
        p10_ms=round(_percentile(ms_sorted, 0.10), 4),
        p90_ms=round(_percentile(ms_sorted, 0.90), 4),
        mean_ms=round(statistics.fmean(ms), 4),
        min_ms=round(ms_sorted[0], 4),
        best_round_median_ms=round(min(statistics.median(t) for t in per_round), 4),
        runs=runs,
        rounds=rounds,
        warmup=warmup,
        threads=threads,
        batch=batch,
        ort_version=ort.__version__,
        model=label if isinstance(src, str) else None,
        inputs={k: list(v.shape) for k, v in feeds.items()},
        others_cpu_before=None if before is None else round(before, 3),
        others_cpu_during=None if during is None else round(during, 3),
        busy_warning=warning,
    )
    if layer_map is not None:
        n = profile_runs if profile_runs is not None else min(runs, 20)
        per_layer, per_node, per_op, total, other = _profile(
            src, layer_map, threads, feeds, warmup=min(warmup, 5), runs=max(1, n)
        )
        result.per_layer, result.per_node, result.per_op = per_layer, per_node, per_op
        result.profile_runs, result.kernel_total_us, result.other_us = max(1, n), total, other
    return result
