"""The hybrid driver as it is now (with optional --driver-opt settings) against its archived
compare_drivers runs, on the same images, evaluation cache and reference fronts.

Runs hybrid on --model (cifar_resnet20 by default; 100 evaluations, seeds 0-2, the same data,
validation images and evaluation cache as compare_drivers) for each target, and sets its
hypervolume ratios at 30 / 50 / 100 evaluations (the issue's, and capped at the float model's
accuracy) beside the archived default runs, against the archived reference fronts (plus the
new runs' points). Runs are kept under experiments/runs/<label>/ and skipped when finished;
the result is experiments/results/hybrid_<label>.json.

    python experiments/hybrid_variant.py --label ilp_points --driver-opt ilp_points=10 \\
        --targets gpu-t4,npu-bitfusion-edge          # ~15 minutes on 2 cores
    python experiments/hybrid_variant.py --label r56 --model cifar_resnet56 --seeds 0 --targets gpu-t4
"""

from __future__ import annotations

import argparse
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from compare_drivers import _archived, _capped, _hv, _points, _ratios, _search, _w8_latency

from common import ROOT, require_shared, save

PREFIXES, TEST_LIMIT = (30, 50, 100), 1000


def _rounded(ratios: dict[str, list[float]]) -> dict[str, list[float]]:
    return {k: [round(x, 4) for x in v] for k, v in ratios.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--label", required=True, help="names the runs' folder and the result")
    ap.add_argument("--driver-opt", action="append", default=[], help="KEY=VALUE for hybrid")
    ap.add_argument("--targets", default="gpu-t4,npu-bitfusion-edge,cpu-avx512")
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--budget", type=int, default=100)
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--model", default="cifar_resnet20")
    ap.add_argument("--note", default="", help="what the variant changed, kept in the result")
    args = ap.parse_args()
    shared = require_shared()
    targets, seeds = args.targets.split(","), [int(s) for s in args.seeds.split(",")]
    runs = ROOT / "experiments" / "runs" / args.label
    runs.mkdir(parents=True, exist_ok=True)
    extra = [a for opt in args.driver_opt for a in ("--driver-opt", opt)]

    def run(target: str, seed: int) -> Path:
        out = runs / f"{args.model}-{target}-s{seed}"
        if not (out / "pareto.json").is_file():
            _search(
                out, args.model, target, "hybrid", seed, args.budget, TEST_LIMIT, shared, 1, extra
            )
        return out

    with ThreadPoolExecutor(args.jobs) as pool:
        jobs = [(t, s) for t in targets for s in seeds]
        outs = dict(zip(jobs, pool.map(lambda j: run(*j), jobs), strict=True))
    result: dict[str, Any] = {"model": args.model, "driver_opts": args.driver_opt, "note": args.note, "budget": args.budget,
                              "seeds": seeds, "prefixes": PREFIXES, "targets": {}}  # fmt: skip
    for target in targets:
        archive = _archived(args.model, target)
        w8 = _w8_latency(args.model, target)
        float_val = float(archive["float_val_top1"].iloc[0])
        mine = {s: _points(pd.read_parquet(outs[(target, s)] / "trials.parquet")
                           .assign(float_val_top1=float_val), w8) for s in seeds}  # fmt: skip
        every = np.vstack([_points(archive, w8), *mine.values()])
        ref, ref_capped = _hv(every), _hv(_capped(every))
        rows: dict[str, list[dict[str, list[float]]]] = {"archived default": [], args.label: []}
        for seed in seeds:
            run_ = archive[archive["run"] == f"{args.model}-{target}-hybrid-s{seed}"]
            rows["archived default"].append(
                _rounded(_ratios(_points(run_, w8), ref, ref_capped, PREFIXES))
            )
            rows[args.label].append(_rounded(_ratios(mine[seed], ref, ref_capped, PREFIXES)))
        result["targets"][target] = {
            label: {**{k: np.round(np.mean([r[k] for r in per_seed], axis=0), 3).tolist()
                       for k in ("issue", "capped")},
                    "issue_per_seed": [r["issue"] for r in per_seed]}
            for label, per_seed in rows.items()
        }  # fmt: skip
        print(target, result["targets"][target], file=sys.stderr)
    save(f"hybrid_{args.label}", result)


if __name__ == "__main__":
    main()
