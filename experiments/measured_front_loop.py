"""The hardware loop as a user runs it, twice: `haq search --measure-front` on a network the
target's tables never profiled (``--profile auto`` measures its layers first), then a second,
new search of the same network, whose cost model now scales by the configs the first one
timed (`haq.hardware.network_walls`). Per search: the profile step's seconds, the cost
model's label, and |predicted - measured| / measured over every measured config (front
points and uniform baselines), from its ``measured.json``.

The second search's configs are largely the first one's, re-timed in a new run: its error is
in-sample for the scale (what one ratio per network leaves plus run-to-run noise);
`cost_model_validation.py`'s leave-one-out rows are the out-of-sample check.

    python experiments/measured_front_loop.py --target experiments/runs/amx/cpu-amx.yaml
        [--models mobilenet_v3_small,shufflenet_v2_x1_0] [--budget 12] [--out measured_front_loop]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from pathlib import Path
from typing import Any

from haq.cli import main as haq

from common import ROOT, save

RUNS = ROOT / "experiments" / "runs"


def one_search(model: str, target: str, budget: int, out: Path) -> dict[str, Any]:
    t0 = time.time()
    code = haq(["search", "--model", model, "--weights", "none", "--target", target,
                "--budget", str(budget), "--workers", "0", "--out", str(out), "--measure-front"])  # fmt: skip
    if code != 0:
        raise SystemExit(f"haq search {model} exited {code}")
    measured = json.loads((out / "measured.json").read_text())
    run = json.loads((out / "run.json").read_text())
    labels = sorted(
        {c["cost"]["model"] for c in json.loads((out / "pareto.json").read_text())["points"]}
    )
    errors = [r["latency_error_pct"] for r in measured["configs"].values()]
    return {
        "seconds": round(time.time() - t0, 1),
        "cost_calibration": run.get("cost_calibration"),
        "front_cost_models": labels,
        "configs": len(errors),
        "mape_pct": measured["mape_pct"],
        "mean_signed_error_pct": round(sum(errors) / len(errors), 2),
        "machine_check_ratio": measured["machine_check"]["ratio"],
        "per_config": {r["name"]: {"predicted_ms": r["predicted_ms"],
                                   "measured_ms": r["measured_latency_ms"],
                                   "error_pct": r["latency_error_pct"]}
                       for r in measured["configs"].values()},
    }  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--target", required=True, help="a target this CPU measures")
    ap.add_argument("--models", default="mobilenet_v3_small,shufflenet_v2_x1_0")
    ap.add_argument("--budget", type=int, default=12)
    ap.add_argument("--out", default="measured_front_loop")
    args = ap.parse_args()
    root = RUNS / args.out
    shutil.rmtree(root, ignore_errors=True)  # a fresh overlay: the loop starts unprofiled
    os.environ["HAQ_OVERLAY_DIR"] = str(root / "overlay")
    results = {}
    for model in args.models.split(","):
        first = one_search(model, args.target, args.budget, root / f"{model}-first")
        second = one_search(model, args.target, args.budget, root / f"{model}-second")
        results[model] = {"first": first, "second": second}
        print(f"{model}: first search |error| {first['mape_pct']}% over {first['configs']} configs; "
              f"second (scale {second['cost_calibration']}) {second['mape_pct']}%", flush=True)  # fmt: skip
    save(args.out, {"target": args.target, "budget": args.budget, "models": results,
                    "argv": sys.argv[1:], "measured_at": time.strftime("%Y-%m-%dT%H:%M:%S%z")})  # fmt: skip


if __name__ == "__main__":
    main()
