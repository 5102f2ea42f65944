"""`haq models`: list the model registry."""

from __future__ import annotations

import argparse
import json
from typing import Any


def register(sub: Any) -> None:
    p = sub.add_parser("models", help="list registered models")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from haq.models import list_models

    entries = list_models()
    if args.json:
        print(json.dumps([{"name": e.name, "family": e.family, "num_classes": e.num_classes,
                           "input_size": list(e.preprocess.input_size), "description": e.description}
                          for e in entries], indent=2))  # fmt: skip
        return 0
    width = max(len(e.name) for e in entries)
    for e in entries:
        print(
            f"{e.name:<{width}}  {e.family:<11}  {'x'.join(map(str, e.preprocess.input_size)):<9}  {e.description}"
        )
    return 0
