"""Six seeds of a hybrid driver variant against six seeds of the default, over one front.

At 50 evaluations one seed's hypervolume ratio spreads by 0.017-0.030 (README), as much as
the driver variants differ, so a variant is judged on six seeds per target. The default arm
is the archived compare_drivers runs of seeds 0-2 (200 evaluations, read as prefixes) and
``hybrid_variant.py --label seeds345_default --seeds 3,4,5 --budget 60``; the variant arm is
``hybrid_variant.py --label LABEL --driver-opt ... --seeds 0,1,2,3,4,5 --budget 60``. Per
target: each run's hypervolume ratio after 30 / 50 / 60 evaluations over the non-dominated
union of the archive and every run read here, and per arm the mean and standard deviation
over the seeds, and the median wall time of seeds 3-5 (1 thread, two searches at a time).

    python experiments/variant_seeds.py --variant signed_best --targets cpu-avx512
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

import numpy as np
import pandas as pd
from compare_drivers import _archived, _hv, _points, _w8_latency

from common import ROOT, save

MODEL, PREFIXES = "cifar_resnet20", (30, 50, 60)
RUNS = ROOT / "experiments" / "runs"
DEFAULT = [(None, 0), (None, 1), (None, 2), ("seeds345_default", 3), ("seeds345_default", 4),
           ("seeds345_default", 5)]  # fmt: skip


def _run_points(archive: pd.DataFrame, target: str, w8: float, float_val: float,
                label: str | None, seed: int) -> np.ndarray:  # fmt: skip
    """One run's (drop, relative latency) per evaluation; ``label`` None: the archived default."""
    if label is None:
        return _points(archive[archive["run"] == f"{MODEL}-{target}-hybrid-s{seed}"], w8)
    trials = pd.read_parquet(RUNS / label / f"{MODEL}-{target}-s{seed}" / "trials.parquet")
    return _points(trials.assign(float_val_top1=float_val), w8)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--variant", required=True, help="the hybrid_variant.py --label of seeds 0-5")
    ap.add_argument("--targets", default="npu-bitfusion-edge,gpu-t4,cpu-avx512")
    args = ap.parse_args()
    arms = {"default": DEFAULT, args.variant: [(args.variant, s) for s in range(6)]}
    result: dict[str, Any] = {"model": MODEL, "prefixes": PREFIXES, "targets": {}}
    for target in args.targets.split(","):
        archive = _archived(MODEL, target)
        w8 = _w8_latency(MODEL, target)
        float_val = float(archive["float_val_top1"].iloc[0])
        runs = {arm: [_run_points(archive, target, w8, float_val, label, seed)
                      for label, seed in plan] for arm, plan in arms.items()}  # fmt: skip
        ref = _hv(np.vstack([_points(archive, w8), *[p for ps in runs.values() for p in ps]]))
        out: dict[str, Any] = {}
        for arm, per_seed in runs.items():
            ratios = np.array([[_hv(p[:n]) / ref for n in PREFIXES] for p in per_seed])
            walls = [json.loads((RUNS / label / f"{MODEL}-{target}-s{seed}" / "pareto.json")
                                .read_text())["wall_seconds"]
                     for label, seed in arms[arm] if label and seed >= 3]  # fmt: skip
            out[arm] = {"per_seed": np.round(ratios, 4).tolist(),
                        "mean": np.round(ratios.mean(axis=0), 3).tolist(),
                        "std": np.round(ratios.std(axis=0, ddof=1), 3).tolist(),
                        "median_wall_seconds_seeds_3_5": round(float(np.median(walls)), 1)}  # fmt: skip
        result["targets"][target] = out
        print(target, {a: (v["mean"], v["std"]) for a, v in out.items()}, file=sys.stderr)
    save(f"variant_seeds_{args.variant}", result)


if __name__ == "__main__":
    main()
