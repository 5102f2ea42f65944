"""Where a driver spends its evaluations: per run of an archive of experiments/compare_drivers.py,
the number of evaluated trials (and the best validation top-1) per band of latency as a
fraction of uniform w8a8's. Shows whether a search covers the whole trade-off or crowds one
end (the hybrid driver before its surrogate fix never evaluated a config below 0.8x w8a8 on
gpu-t4: `git show dffa604:experiments/results/compare_drivers/cifar_resnet20-gpu-t4.parquet`).

    python experiments/evolution_bands.py [--archive PATH] [--driver hybrid] [--source evolution]
"""

from __future__ import annotations

import argparse
import sys

import pandas as pd

from common import ROOT, save

BANDS = (0.0, 0.7, 0.8, 0.9, 1.0, float("inf"))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    default = ROOT / "experiments/results/compare_drivers/cifar_resnet20-gpu-t4.parquet"
    ap.add_argument("--archive", default=str(default))
    ap.add_argument("--driver", default="hybrid")
    ap.add_argument("--source", default="evolution", help="proposer to count ('' for all)")
    ap.add_argument("--w8a8-latency-ms", type=float, default=None,
                    help="default: the latency of the run's uniform w8a8 baseline")  # fmt: skip
    args = ap.parse_args()
    frame = pd.read_parquet(args.archive)
    frame = frame[(frame["driver"] == args.driver) & (frame["state"] == "complete")]
    if frame.empty:
        sys.exit(f"no complete trial of driver {args.driver} in {args.archive}")
    rows = []
    for run, trials in frame.groupby("run"):
        w8 = args.w8a8_latency_ms or float(
            trials.loc[trials["summary"].str.fullmatch(r"w8a8 x\d+"), "latency_ms"].iloc[0]
        )
        picked = trials[trials["source"] == args.source] if args.source else trials
        rel = picked["latency_ms"] / w8
        row: dict[str, object] = {"run": run}
        for lo, hi in zip(BANDS, BANDS[1:], strict=False):
            band = picked[(rel >= lo) & (rel < hi)]
            best = band["val_top1"].max() if len(band) else None
            row[f"[{lo}, {hi})"] = f"{len(band)} (best {best})"
        rows.append(row)
    table = pd.DataFrame(rows)
    print(table.to_string(index=False))
    save("evolution_bands", {"archive": str(args.archive), "driver": args.driver,
                             "source": args.source, "rows": rows})  # fmt: skip


if __name__ == "__main__":
    main()
