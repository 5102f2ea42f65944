"""Are ORT's nameless nodes given the right profile names? (`haq.hardware.ort.attribution.name_unnamed_nodes`)

In a quantized graph ONNX Runtime inlines HardSwish as a HardSigmoid and a Mul with no name in
its optimized graph; its profile calls them ``<op>_<internal index>``. The attribution names
them by matching, per op type, the k-th nameless node of the saved graph with the k-th
unknown profiled node in execution order. Checked per network and kernel class (random
weights, 1 thread): how many nodes were named, how much node time stays unattributed
(``unmatched``, before the fix: every nameless node's), whether any graph edge runs against
the profile's execution order under the naming, and whether every named HardSigmoid's output
shape (from the profile) equals its input producer's (an elementwise op: a wrong pairing
would join tensors of different shapes).

    python experiments/nameless_nodes.py [--models mobilenet_v3_small,mobilenet_v3_large]
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import warnings
from pathlib import Path

import onnx
from cost_model_validation import CLASSES, quantizer

from haq.export.onnx_export import export_onnx
from haq.hardware.ort.attribution import Attributor, name_unnamed_nodes
from haq.hardware.ort.target import class_config
from haq.runtime.ort import make_session, model_source, per_run_node_times, random_feeds

from common import save


def check(name: str, cls: str) -> dict[str, object]:
    q = quantizer(name)
    data, _ = export_onnx(q, class_config(q.layer_names, [cls] * len(q.layer_names)))
    src, _ = model_source(data)
    with tempfile.TemporaryDirectory() as tmp:
        opt = Path(tmp) / "optimized.onnx"
        sess = make_session(src, threads=1, profile=True, optimized_model_path=opt,
                            profile_prefix=str(Path(tmp) / "profile"))  # fmt: skip
        feeds = random_feeds(sess, 1)
        for _ in range(5):
            sess.run(None, feeds)
        with open(sess.end_profiling()) as f:
            events = json.load(f)
        graph = onnx.load(str(opt), load_external_data=False).graph
    _, times, info = per_run_node_times(events, 3)
    shapes = {e["name"].removesuffix("_kernel_time"): e["args"].get("output_type_shape")
              for e in events if e.get("cat") == "Node"}  # fmt: skip
    nameless = sum(1 for n in graph.node if not n.name)
    unknown_before = [k for k in info if k not in {n.name for n in graph.node}]
    name_unnamed_nodes(graph, info)
    attr = Attributor(onnx.load_model_from_string(data), graph, q.layer_names)
    order = {k: v["order"] for k, v in info.items()}
    producer = {o: n.name for n in graph.node for o in n.output}
    edges = [(producer.get(i), n.name) for n in graph.node for i in n.input]
    edges = [(p, c) for p, c in edges if p in order and c in order]
    named = [n for n in graph.node if n.name in set(unknown_before)]
    shape_checks = [shapes.get(n.name) == shapes.get(producer.get(n.input[0]))
                    for n in named if n.op_type == "HardSigmoid"]  # fmt: skip
    total = sum(statistics.median(v) for v in times.values())
    lost_before = sum(statistics.median(times[k]) for k in unknown_before)
    lost_after = sum(statistics.median(v) for k, v in times.items() if attr.assign(k) is None)
    return {"model": name, "class": cls, "nameless_nodes": nameless, "named": len(named),
            "unmatched_share_before_pct": round(100 * lost_before / total, 2),
            "unmatched_share_after_pct": round(100 * lost_after / total, 2),
            "edges_checked": len(edges),
            "edges_against_order": sum(order[p] >= order[c] for p, c in edges),
            "hardsigmoid_shape_checks": len(shape_checks),
            "hardsigmoid_shape_mismatches": shape_checks.count(False)}  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--models", default="mobilenet_v3_small,mobilenet_v3_large")
    ap.add_argument("--out", default="nameless_nodes")
    args = ap.parse_args()
    warnings.filterwarnings("ignore")
    rows = []
    for name in args.models.split(","):
        for cls in CLASSES:
            rows.append(check(name, cls))
            print(rows[-1], flush=True)
    save(args.out, {"argv": vars(args), "rows": rows})


if __name__ == "__main__":
    main()
