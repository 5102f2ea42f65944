"""A second network for the search-quality claim: the embedded digits_cnn (trained on sklearn's
digits, no ../shared needed) on npu-bitfusion-edge, every driver at the same small budget and
seeds, serial. Reports the validation hypervolume of each run's front (the results' fixed
axes: accuracy / 100, latency / 1.1x the costliest baseline) and the largest speed-up over
uniform w8a8 within 0.5 points of its validation top-1.

    python experiments/driver_check_digits.py [--budget 40] [--seeds 0,1,2]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
from pathlib import Path

import haq

from common import save


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--budget", type=int, default=40)
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--drivers", default="hybrid,nsga2,tpe,random")
    args = ap.parse_args()
    rows: dict[str, dict[str, object]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for driver in args.drivers.split(","):
            hvs, speedups = [], []
            for seed in (int(s) for s in args.seeds.split(",")):
                out = Path(tmp) / f"{driver}-{seed}"
                res = haq.search(model="digits_cnn", target="npu-bitfusion-edge", budget=args.budget,
                                 driver=driver, seed=seed, workers=0, progress=False, out=str(out))  # fmt: skip
                pareto = json.loads((out / "pareto.json").read_text())
                w8 = pareto["baselines"]["w8a8"]
                ok = [p for p in pareto["points"]
                      if p["val"]["top1"] >= w8["val"]["top1"] - 0.5]  # fmt: skip
                speedups.append(max(w8["cost"]["latency_ms"] / p["cost"]["latency_ms"] for p in ok))
                hvs.append(res.hypervolume)
            rows[driver] = {"hypervolume": hvs, "mean_hypervolume": statistics.mean(hvs),
                            "speedup_within_0.5": speedups}  # fmt: skip
            print(f"{driver:>7}: mean HV {statistics.mean(hvs):.4f} {[round(h, 4) for h in hvs]}, "
                  f"speed-up within 0.5 points {[round(s, 3) for s in speedups]}", file=sys.stderr)  # fmt: skip
    save("driver_check_digits", {"budget": args.budget, "seeds": args.seeds, "rows": rows})


if __name__ == "__main__":
    main()
