"""`haq layers`: a model's quantizable layer table."""

from __future__ import annotations

import argparse
from typing import Any

from haq.cli.args import add_model_args


def register(sub: Any) -> None:
    p = sub.add_parser("layers", help="print a model's quantizable layer table")
    add_model_args(p)
    fmt = p.add_mutually_exclusive_group()
    fmt.add_argument("--json", action="store_true")
    fmt.add_argument("--csv", action="store_true")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from haq.models import discover_layers, layers_frame, load_model
    from haq.models.weights import quiet_random_weights

    with quiet_random_weights(args.weights):  # shapes and MACs: the values do not matter
        loaded = load_model(args.model, args.weights, args.tokens)
    frame = layers_frame(discover_layers(loaded.model, loaded.example_input()))
    if args.json:
        print(frame.to_json(orient="records", indent=2))
    elif args.csv:
        print(frame.to_csv(index=False), end="")
    else:
        import pandas as pd

        with pd.option_context("display.max_rows", None, "display.width", 200):
            print(frame.to_string(index=False))
        print(f"\n{len(frame)} quantizable layers, {frame['macs'].sum() / 1e6:.1f} M MACs, "
              f"{frame['params'].sum() / 1e6:.3f} M params")  # fmt: skip
    return 0
