"""`haq space`: the search space of a model on a target (size, per-layer choices)."""

from __future__ import annotations

import argparse
import json
from typing import Any

from haq.cli.args import add_model_args


def add_space_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--target", "-t", default=None,
        help="hardware target (see `haq targets`); haq space: none by default; haq search: "
             "$HAQ_TARGET, else the target this machine is (cpu-avx512 on an AVX512-VNNI "
             "CPU), else none; 'none': size only",
    )  # fmt: skip
    p.add_argument(
        "--space",
        default="default",
        help="search space name (search_spaces/*.yaml) or a .yaml path",
    )
    p.add_argument("--pin", action="append", default=[], metavar="LAYER=PREC",
                   help="fix layers: 'first=w8a8', 'last=w8a8', a name or a glob (repeatable)")  # fmt: skip
    p.add_argument("--tie", action="append", default=[], metavar="L1,L2,...",
                   help="layers that must share one precision (repeatable)")  # fmt: skip


def register(sub: Any) -> None:
    p = sub.add_parser("space", help="show the search space of a model on a target")
    add_model_args(p)
    add_space_args(p)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=run)


def build_space(args: argparse.Namespace) -> Any:
    from haq.models import discover_layers, load_model
    from haq.search.space import SearchSpace, space_for

    loaded = load_model(args.model, args.weights, args.tokens)
    layers = discover_layers(loaded.model, loaded.example_input())
    text = loaded.preprocess.is_text
    can_run = None
    if args.target:
        from haq.hardware.profile import get_target
        from haq.quant.settings import QuantSettings, text_settings

        profile = get_target(args.target)
        s = text_settings(QuantSettings()) if text else QuantSettings()
        can_run = lambda kind, p: profile.can_run(kind, p, *s.kernel_args(p))  # noqa: E731
    ties = [t.split(",") for t in args.tie]
    return SearchSpace.build(layers, space_for(args.space, text), can_run, args.pin, ties)


def run(args: argparse.Namespace) -> int:
    space = build_space(args)
    rows = space.describe()
    if args.json:
        print(
            json.dumps(
                {"size": space.size(), "variables": len(space.variables()), "layers": rows},
                indent=2,
            )
        )
        return 0
    width = max(len(r["layer"]) for r in rows)
    for r in rows:
        note = " (pinned)" if r["pinned"] else f" (tied to {r['tied_to']})" if r["tied_to"] else ""
        print(f"{r['layer']:<{width}}  {r['kind']:<6}  {r['choices']}{note}")
    print(f"\n{len(space.variables())} search variables, {space.size():.4g} configs")
    return 0
