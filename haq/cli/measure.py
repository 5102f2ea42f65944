"""`haq measure`: time a run's front on the target's runtime, beside the prediction."""

from __future__ import annotations

import argparse
import json
from typing import Any


def register(sub: Any) -> None:
    p = sub.add_parser(
        "measure",
        help="time every front point of a run in the target's runtime (ONNX Runtime here) and "
        "store measured latency beside the prediction",
    )
    p.add_argument("run", metavar="RUN_DIR", help="results directory written by `haq search`")
    p.add_argument("--rounds", type=int, default=10,
                   help="interleaved rounds over all configs (default 10)")  # fmt: skip
    p.add_argument("--runs-per-round", type=int, default=10,
                   help="timed runs of each config per round (default 10)")  # fmt: skip
    p.add_argument("--warmup", type=int, default=3, help="untimed runs of each config first")
    p.add_argument("--threads", type=int, default=None,
                   help="intra-op threads (default: the threads the run's latency was predicted for)")  # fmt: skip
    p.add_argument("--quiet", "-q", action="store_true", help="no progress lines")
    p.add_argument("--json", action="store_true", help="print measured.json's content")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from haq.search.measure import MeasureOptions, measure_front

    opts = MeasureOptions(args.rounds, args.runs_per_round, args.warmup, args.threads,
                          progress=not args.quiet)  # fmt: skip
    out = measure_front(args.run, opts)
    if args.json:
        print(json.dumps(out))
        return 0
    print(f"{'config':<14} {'predicted':>10} {'measured':>10} {'error':>8}  summary")
    for row in sorted(out["configs"].values(), key=lambda r: r["measured_latency_ms"]):
        pred = f"{row['predicted_ms']:.4g}" if row["predicted_ms"] else "-"
        err = f"{row['latency_error_pct']:+.1f}%" if row["latency_error_pct"] is not None else "-"
        mark = "  (dominated once measured)" if row.get("dominated_when_measured") else ""
        print(f"{row['name']:<14} {pred:>10} {row['measured_latency_ms']:>10.4g} {err:>8}  "
              f"{row['summary']}{mark}")  # fmt: skip
    print(f"ms on {out['target']} ({out['threads']} thread(s), {out['statistic']}); mean "
          f"|error| {out['mape_pct']}%; results: {args.run}/measured.json, pareto.json, trials.parquet")  # fmt: skip
    note = out["machine_check"]["note"]
    if note and args.quiet:  # else the progress lines said it
        print(note)
    return 0
