"""`haq bench`: latency of an exported ONNX model on the CPU provider, with per-layer kernel times."""

from __future__ import annotations

import argparse
import json
from typing import Any

from haq.errors import HaqError


def register(sub: Any) -> None:
    p = sub.add_parser("bench", help="time an exported .onnx model with ONNX Runtime (CPU)")
    p.add_argument("model", metavar="MODEL.onnx", help="exported model (e.g. by `haq export`)")
    p.add_argument("--threads", "-t", type=int, default=1, help="intra-op threads (default 1)")
    p.add_argument("--batch", type=int, default=1, help="batch size fed (default 1)")
    p.add_argument("--runs", type=int, default=50, help="timed runs (default 50)")
    p.add_argument("--warmup", type=int, default=10, help="untimed runs first (default 10)")
    p.add_argument("--rounds", type=int, default=1,
                   help="time --runs runs this many times, 1 s apart, and report the fastest "
                        "round's median too (what the measured cpu-avx512 tables hold; "
                        "default 1)")  # fmt: skip
    p.add_argument("--no-profile", action="store_true",
                   help="skip the profiled session (no per-layer table)")  # fmt: skip
    p.add_argument("--top", type=int, default=15, help="layers shown in the table (default 15)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=run)


def _at_least(name: str, value: int, least: int) -> None:
    if value < least:
        raise HaqError(f"{name} must be at least {least}, not {value}")


def run(args: argparse.Namespace) -> int:
    from haq.export.bench import benchmark

    for name, value, least in (("--threads", args.threads, 1), ("--batch", args.batch, 1),
                               ("--runs", args.runs, 1), ("--warmup", args.warmup, 0),
                               ("--top", args.top, 1), ("--rounds", args.rounds, 1)):  # fmt: skip
        _at_least(name, value, least)
    result = benchmark(args.model, threads=args.threads, batch=args.batch, runs=args.runs,
                       warmup=args.warmup, profile=not args.no_profile, rounds=args.rounds)  # fmt: skip
    if args.json:
        print(json.dumps(result.to_dict()))
        return 0
    r = result
    print(f"{args.model}: median {r.median_ms:.3f} ms  p10 {r.p10_ms:.3f}  p90 {r.p90_ms:.3f}  "
          f"mean {r.mean_ms:.3f}  ({r.runs * r.rounds} runs, {r.threads} thread{'s' if r.threads > 1 else ''}, "
          f"batch {r.batch}, onnxruntime {r.ort_version})")  # fmt: skip
    if r.rounds > 1:
        print(f"  best of {r.rounds} rounds: median {r.best_round_median_ms:.3f} ms "
              "(the statistic of the measured cpu-avx512 tables)")  # fmt: skip
    if not r.per_node:
        return 0
    layers = sorted(r.per_layer, key=lambda row: -row["kernel_us"])
    in_layers = sum(row["kernel_us"] for row in r.per_layer)
    total = r.kernel_total_us or 1.0
    print(f"kernel time by layer (profiler, median of {r.profile_runs} runs; "
          f"{in_layers / total:.0%} of {total:.0f} us in {len(layers)} layers):")  # fmt: skip
    shown = layers[: args.top]
    more = f"({len(layers) - len(shown)} more layers)"
    width = max([len("layer"), len(more), *(len(row["layer"]) for row in shown)])
    print(f"  {'layer':<{width}}  {'op':<16} {'kernel_us':>10} {'share':>6}")
    for row in shown:
        print(f"  {row['layer']:<{width}}  {row['op_type']:<16} {row['kernel_us']:>10.1f} "
              f"{row['share']:>6.1%}")  # fmt: skip
    if len(layers) > len(shown):
        rest = sum(row["kernel_us"] for row in layers[len(shown) :])
        print(f"  {more:<{width}}  {'':<16} {rest:>10.1f} "
              f"{rest / total:>6.1%}")  # fmt: skip
    other_ops = [op for op in r.per_op if op["other_us"] > 0]
    if other_ops:
        parts = ", ".join(f"{op['op_type']} {op['other_us']:.1f}" for op in other_ops[:6])
        print(f"  {'other':<{width}}  {'':<16} {r.other_us or 0.0:>10.1f} "
              f"{(r.other_us or 0.0) / total:>6.1%}  ({parts})")  # fmt: skip
    return 0
