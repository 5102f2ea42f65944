"""`haq targets`: the hardware targets, their provenance and which tables they carry."""

from __future__ import annotations

import argparse
import json
from typing import Any


def register(sub: Any) -> None:
    p = sub.add_parser("targets", help="list hardware targets (hardware_profiles/*.yaml)")
    p.add_argument("--json", action="store_true", help="print a JSON list")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from haq.cost.learned import MODEL_FILE, LearnedCostModel
    from haq.hardware.profile import list_targets

    rows = []
    for p in list_targets():
        row = p.to_dict()
        row["learned_model"] = (LearnedCostModel.folder_of(p) / MODEL_FILE).is_file()
        rows.append(row)
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    if not rows:
        print("no hardware profiles installed (hardware_profiles/*.yaml)")
        return 0
    width = max(len(r["id"]) for r in rows)
    for r in rows:
        tables = ",".join(r["tables"]) or "none (roofline)"
        learned = " +learned" if r["learned_model"] else ""
        print(
            f"{r['id']:<{width}}  {r['kind']:<3}  {r['provenance']:<9}  tables: {tables}{learned}"
        )
        kernels = ", ".join(r["kernels"][:8]) + (
            f", ... ({len(r['kernels'])})" if len(r["kernels"]) > 8 else ""
        )
        print(f"{'':<{width}}  kernels: {kernels}; batch {r['batch']}, "
              f"threads {','.join(map(str, r['threads']))}")  # fmt: skip
        first = r["description"].split(". ")[0].rstrip(".")
        print(f"{'':<{width}}  {first}.")
    return 0
