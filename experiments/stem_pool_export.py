"""How much faster a float stem runs since the exporter keeps its max pool float.

A float layer whose output reaches an int8 layer through a max pool (a ResNet or ShuffleNet
with its stem left in float, the usual first-layer-float recipe) is quantized after the pool.
ONNX Runtime's QDQ propagation moves that QuantizeLinear in front of the pool, and the pool
then runs on uint8 in NCHW. `haq.export.graph.GraphEditor.keep_max_pools_float` puts a Clip
to the grid's own range in front of the Q, which stops the propagation and which ORT removes
afterwards.

For each network and config, both graphs (the exporter as it is, and with the guard switched
off: the graph before the fix) are timed in one interleaved run (`haq measure`'s statistic:
the fastest round's median, 1 thread, random weights: latency only), with the ORT profile's
MaxPool kernel time of each, and checked for equal outputs on one random input. With
``--targets``, each config's predicted latency on those targets (lookup cost model, 1 thread)
is set beside the measured one: tables profiled before the fix (export revision 1, their
stale pool rows dropped by `haq.hardware.ort.target.drop_stale_rows`) and after it.

    python experiments/stem_pool_export.py [--models resnet18,resnet34,resnet50,shufflenet_v2_x1_0]
        [--rounds 8] [--per-round 10] [--targets cpu-avx512,DIR/my-cpu.yaml]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import tempfile
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from cost_model_validation import quantizer

from haq.cost.lookup import LookupCostModel
from haq.export.graph import GraphEditor
from haq.export.onnx_export import export_onnx, reuse_float_graph
from haq.hardware.ort.target import class_config
from haq.hardware.profile import get_target
from haq.runtime.ort import make_session, node_times, random_feeds, runtime_info
from haq.runtime.timing import latency_stats, time_interleaved

from common import save

CONFIGS: dict[str, Callable[[int], list[str]]] = {
    "stem fp32, rest int8": lambda n: ["fp32"] + ["int8"] * (n - 1),
    "stem and classifier fp32, rest int8": lambda n: ["fp32"] + ["int8"] * (n - 2) + ["fp32"],
    "uniform int8 (control)": lambda n: ["int8"] * n,
}


def export(q: Any, kernels: list[str], guard: bool) -> bytes:
    config = class_config(q.layer_names, kernels)
    if guard:
        return export_onnx(q, config)[0]
    keep = GraphEditor.keep_max_pools_float
    GraphEditor.keep_max_pools_float = lambda self, nodes: nodes  # type: ignore[method-assign]
    try:
        return export_onnx(q, config)[0]
    finally:
        GraphEditor.keep_max_pools_float = keep  # type: ignore[method-assign]


def max_pool_us(data: bytes) -> float:
    """Summed kernel µs of the MaxPool nodes ORT ran (median of 20 profiled runs)."""
    with tempfile.TemporaryDirectory() as tmp:
        sess = make_session(data, threads=1, profile=True, profile_prefix=str(Path(tmp) / "p"))
        feeds = random_feeds(sess, 1)
        for _ in range(25):
            sess.run(None, feeds)
        times = node_times(json.loads(Path(sess.end_profiling()).read_text()), 20)
    return round(sum(t["kernel_us"] for t in times.values() if "MaxPool" in t["op_type"]), 1)


def targets(names: str) -> list[tuple[str, Any]]:
    """(label, profile) per target; one measured before export revision 2 also as it was read
    before the fix (its stale rows kept)."""
    out = []
    for name in filter(None, names.split(",")):
        profile = get_target(name)
        out.append((name, profile))
        if int(profile.provenance_details.get("export_revision", 1)) < 2:
            details = {**profile.provenance_details, "export_revision": 2}
            out.append((f"{name} (stale rows kept)",
                        dataclasses.replace(profile, provenance_details=details)))  # fmt: skip
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--models", default="resnet18,resnet34,resnet50,shufflenet_v2_x1_0")
    ap.add_argument("--rounds", type=int, default=8)
    ap.add_argument("--per-round", type=int, default=10)
    ap.add_argument("--targets", default="", help="targets whose predictions to compare")
    ap.add_argument("--out", default="stem_pool_export")
    args = ap.parse_args()
    warnings.filterwarnings("ignore")
    rows = []
    with reuse_float_graph():
        for name in args.models.split(","):
            q = quantizer(name)
            n = len(q.layer_names)
            costs = {label: LookupCostModel(profile, q.layers, threads=1, calibration=None)
                     for label, profile in targets(args.targets)}  # fmt: skip
            graphs = {(label, guard): export(q, make(n), guard)
                      for label, make in CONFIGS.items() for guard in (False, True)}  # fmt: skip
            sessions = {key: make_session(data, threads=1) for key, data in graphs.items()}
            feeds = random_feeds(next(iter(sessions.values())), 1)
            for sess in sessions.values():
                for _ in range(3):
                    sess.run(None, feeds)
            timed = time_interleaved(list(sessions.values()), feeds, args.rounds, args.per_round)
            ms = {
                key: latency_stats(t).best_round_median_ms
                for key, t in zip(sessions, timed, strict=True)
            }
            for label in CONFIGS:
                before, after = (label, False), (label, True)
                same = bool(np.array_equal(sessions[before].run(None, feeds)[0],
                                           sessions[after].run(None, feeds)[0]))  # fmt: skip
                row = {
                    "model": name, "config": label, "identical_outputs": same,
                    "before_ms": round(ms[before], 3), "after_ms": round(ms[after], 3),
                    "speedup": round(ms[before] / ms[after], 3),
                    "max_pool_us_before": max_pool_us(graphs[before]),
                    "max_pool_us_after": max_pool_us(graphs[after]),
                    "predicted_ms": {t: round(c.score(class_config(q.layer_names, CONFIGS[label](n))).latency_ms, 3)
                                     for t, c in costs.items()},
                }  # fmt: skip
                rows.append(row)
                print(f"{name:20s} {label:38s} {row['before_ms']:8.2f} -> {row['after_ms']:8.2f} ms"
                      f" ({row['speedup']:.2f}x), MaxPool {row['max_pool_us_before']} -> "
                      f"{row['max_pool_us_after']} us, identical outputs: {same}, predicted "
                      f"{row['predicted_ms']}")  # fmt: skip
    speedups = [r["speedup"] for r in rows if "control" not in r["config"]]
    save(args.out, {"argv": vars(args), "runtime": runtime_info(), "rows": rows,
                    "median_speedup_float_stem": round(statistics.median(speedups), 3)})  # fmt: skip


if __name__ == "__main__":
    main()
