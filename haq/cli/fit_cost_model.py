"""`haq fit-cost-model`: fit a target's learned latency model on its tables and save it."""

from __future__ import annotations

import argparse
import json
from typing import Any


def register(sub: Any) -> None:
    p = sub.add_parser("fit-cost-model",
                       help="fit the learned per-layer latency model of a target (cost_models/<target>/)")  # fmt: skip
    p.add_argument("--target", "-t", required=True, help="hardware target (see `haq targets`)")
    p.add_argument("--holdout-model", default=None, metavar="MODEL",
                   help="leave this model's layers out of the fit and report its error")  # fmt: skip
    p.add_argument(
        "--out",
        default=None,
        help="folder to save into (default cost_models/<target>/; with rows in your table "
        "overlay, the overlay's learned/ folder, which cost models then prefer)",
    )
    p.add_argument("--max-iter", type=int, default=300, help="boosting iterations (default 300)")
    p.add_argument("--probes", nargs="?", const="all", default="missing",
                   help="which probe-network rows (tables.probes) to train on: 'missing' "
                        "(default: only op kind x kernel class pairs no named network has, e.g. "
                        "grouped convs), 'all' (plain --probes) or 'none'; see "
                        "experiments/learned_cost_model.py for what they change")  # fmt: skip
    p.add_argument("--json", action="store_true", help="print the fit report as JSON")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from haq.cost.learned_target import fit_target
    from haq.errors import HaqError
    from haq.hardware.profile import get_target

    if args.max_iter < 1:
        raise HaqError(f"--max-iter must be at least 1, not {args.max_iter}")
    profile = get_target(args.target)
    model = fit_target(
        profile, args.holdout_model, args.out, max_iter=args.max_iter, probes=args.probes
    )
    from haq.hardware.network_walls import read_networks

    networks = read_networks(profile.id)
    r = {**model.report, "measured_networks": {
        "configs": len(networks), "networks": len({n["network"] for n in networks})}}  # fmt: skip
    folder = r["saved_to"]
    if args.json:
        print(json.dumps(r))
        return 0
    print(f"{profile.id}: fitted on {r['rows']} rows ({r['probe_rows']} from probe networks, "
          f"{r['overlay_rows']} from your overlay; "
          f"{', '.join(r['kernels'])}); saved to {folder}")  # fmt: skip
    print(f"  in-sample MAPE {r['in_sample_mape']:.1f}%")
    lomo = r["leave_one_model_out"]
    if lomo:
        parts = ", ".join(f"{m} {v['mape']:.1f}%" for m, v in lomo["per_model"].items() if v)
        print(f"  leave-one-model-out MAPE {lomo['mean_mape']:.1f}% ({parts})")
    else:
        print("  leave-one-model-out: needs a layer_map table with at least two models")
    if networks:
        m = r["measured_networks"]
        print(f"  {m['configs']} measured configs of {m['networks']} network(s) in your overlay "
              "(`haq measure` records them) scale those networks' predictions by their own "
              "measured / predicted ratio; they are not rows of this fit")  # fmt: skip
    if r["holdout"]:
        h = r["holdout"]
        print(f"  held-out {h['model']}: MAPE {h['mape']:.1f}% on {h['rows']} rows")
    return 0
