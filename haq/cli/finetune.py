"""`haq finetune`: quantization-aware fine-tuning of chosen front points of a run."""

from __future__ import annotations

import argparse
import json
from typing import Any


def register(sub: Any) -> None:
    p = sub.add_parser(
        "finetune", help="QAT fine-tune front points of a run; re-score, export, check in ORT"
    )
    p.add_argument("run", metavar="RUN_DIR", help="results directory written by `haq search`")
    p.add_argument("--points", required=True,
                   help="comma-separated front points (names from pareto.json, e.g. trial-0012)")  # fmt: skip
    p.add_argument(
        "--epochs", type=float, default=1.0, help="passes over the training images (default 1)"
    )
    p.add_argument("--lr", type=float, default=0.01,
                   help="Adam rate in quantization steps per update (default 0.01)")  # fmt: skip
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--train-data", default=None,
                   help="labelled training images (ImageFolder root); default: the run's --calib-data")  # fmt: skip
    p.add_argument(
        "--train-limit", type=int, default=None, help="use a seeded subset of N training images"
    )
    p.add_argument(
        "--no-distill", action="store_true", help="labels only (default adds KL to the float model)"
    )
    p.add_argument(
        "--threads", type=int, default=1, help="ONNX Runtime threads for the accuracy check"
    )
    p.add_argument("--json", action="store_true", help="print the entries as JSON")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from haq.cli.args import positive
    from haq.errors import HaqError
    from haq.search.finetune import FinetuneOptions, finetune_points

    positive("--train-limit", args.train_limit)
    positive("--batch-size", args.batch_size)
    if args.epochs <= 0 or args.lr <= 0:
        raise HaqError("--epochs and --lr must be positive")
    points = tuple(p.strip() for p in args.points.split(",") if p.strip())
    opts = FinetuneOptions(points, args.epochs, args.lr, args.batch_size, args.train_data, args.train_limit,
                           not args.no_distill, args.threads)  # fmt: skip
    entries = finetune_points(args.run, opts)
    if args.json:
        print(json.dumps(entries))
        return 0
    for e in entries.values():
        print(f"{e['point']} ({e['summary']}): test top-1 {e['before_top1']:.2f}% -> {e['after_top1']:.2f}% "
              f"after {e['epochs']:g} epochs ({e['steps']} steps, {e['seconds']:.0f} s); "
              f"ONNX Runtime {e['ort_top1']:.2f}% ({e['onnx']})")  # fmt: skip
    print(f"results: {args.run}/finetuned.json")
    return 0
