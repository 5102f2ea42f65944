"""Which ONNX Runtime nodes make a config's prediction miss: per-op time, worst vs best configs.

Reads a `cost_model_validation.py` result, takes one network's configs with the largest and
smallest prediction error (``--pred``, default the "after --profile auto" lookup), exports
them as the validation did, and profiles each in ORT (1 thread): kernel time per op type, and
for every node whose time differs most between the two groups, what produced its input in
the optimized graph (e.g. a MaxPool reading QuantizeLinear's uint8 output, not a float conv's).

    python experiments/boundary_nodes.py --results cost_model_validation_amx
        --model shufflenet_v2_x1_0 [--worst 2 --best 2]
"""

from __future__ import annotations

import argparse
import json
import tempfile
from collections import defaultdict
from pathlib import Path
from typing import Any

from cost_model_validation import AFTER, quantizer

from common import RESULTS, machine, save


def profile_config(q: Any, kernels: list[str], tmp: Path, label: str) -> dict[str, Any]:
    """Per-node kernel µs (median of 20 profiled runs) and each node's input producer."""
    import onnx

    from haq.export.onnx_export import export_onnx
    from haq.hardware.ort.target import class_config
    from haq.runtime.ort import make_session, node_times, random_feeds

    data = export_onnx(q, class_config([s.name for s in q.layers], kernels), batch=1)[0]
    optimized = tmp / f"{label}.onnx"
    sess = make_session(data, threads=1, profile=True, profile_prefix=str(tmp / label),
                        optimized_model_path=optimized)  # fmt: skip
    feeds = random_feeds(sess, 1)
    for _ in range(30):
        sess.run(None, feeds)
    times = node_times(json.loads(Path(sess.end_profiling()).read_text()), 20)
    graph = onnx.load(optimized).graph
    producer = {o: n.op_type for n in graph.node for o in n.output}
    inputs = {n.name: [producer.get(i, "graph input") for i in n.input[:1]] for n in graph.node}
    return {name: {**t, "input_from": inputs.get(name, [None])[0]} for name, t in times.items()}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--results", default="cost_model_validation_amx")
    ap.add_argument("--model", default="shufflenet_v2_x1_0")
    ap.add_argument("--pred", default=AFTER, help="prediction method the errors are read from")
    ap.add_argument("--worst", type=int, default=2)
    ap.add_argument("--best", type=int, default=2)
    args = ap.parse_args()
    rows = [r for r in json.loads((RESULTS / f"{args.results}.json").read_text())["rows"]
            if r["model"] == args.model]  # fmt: skip
    for r in rows:
        r["error_pct"] = 100 * (r["pred_ms"][args.pred] / r["best_round_median_ms"] - 1)
    by_error = sorted(range(len(rows)), key=lambda i: -abs(rows[i]["error_pct"]))
    groups = {"worst": by_error[: args.worst], "best": by_error[-args.best :]}
    q = quantizer(args.model)
    configs: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for group, picks in groups.items():
            for i in picks:
                nodes = profile_config(q, rows[i]["kernels"], Path(tmp), f"c{i}")
                per_op: dict[str, float] = defaultdict(float)
                for t in nodes.values():
                    per_op[t["op_type"]] += t["kernel_us"]
                configs[f"config {i}"] = {
                    "group": group, "error_pct": round(rows[i]["error_pct"], 1),
                    "measured_ms": rows[i]["best_round_median_ms"],
                    "first_kernels": rows[i]["kernels"][:4],
                    "per_op_us": {k: round(v) for k, v in sorted(per_op.items(), key=lambda kv: -kv[1])},
                    "nodes": nodes,
                }  # fmt: skip
    # op types whose time differs most between the groups (mean per group)
    ops = {op for c in configs.values() for op in c["per_op_us"]}

    def mean_us(group: str, op: str) -> float:
        cs = [c for c in configs.values() if c["group"] == group]
        return sum(c["per_op_us"].get(op, 0) for c in cs) / len(cs)

    gaps = sorted(((mean_us("worst", op) - mean_us("best", op), op) for op in ops), reverse=True)
    top = gaps[0][1]
    feeders = {name: {"kernel_us": round(c["nodes"][n]["kernel_us"]), "input_from": c["nodes"][n]["input_from"]}
               for name, c in configs.items() for n in c["nodes"] if c["nodes"][n]["op_type"] == top}  # fmt: skip
    for c in configs.values():
        del c["nodes"]
    out = {"machine": machine(), "results": args.results, "model": args.model, "pred": args.pred,
           "configs": configs, "op_gap_us": {op: round(g) for g, op in gaps[:8]},
           "top_op": top, "top_op_nodes": feeders}  # fmt: skip
    for name, c in configs.items():
        print(f"{name} ({c['group']}, error {c['error_pct']} %, first layers {c['first_kernels']})")
    print("op types by extra time in the worst configs (us):", out["op_gap_us"])
    print(f"{top} nodes:", json.dumps(feeders))
    save(f"boundary_nodes_{args.model}", out)


if __name__ == "__main__":
    main()
