"""Does the hybrid driver's first 50 evaluations gain from fewer proxy-ILP points?

The default thins its ILP sweep to min(20, budget // 3) points, so the 50-evaluation prefix
of compare_drivers' runs holds 20 of them. Here hybrid runs with ``--driver-opt
ilp_points=10`` (100 evaluations, seeds 0-2, the same data, validation images and
evaluation cache as compare_drivers) on resnet20 x gpu-t4 and x npu-bitfusion-edge, and its hypervolume ratios
at 30 / 50 / 100 evaluations (the issue's, and capped at the float model's accuracy) are set
beside the archived default runs, against the archived reference fronts. Runs are kept
under experiments/runs/ilp_points/ and skipped when finished.

    python experiments/hybrid_ilp_points.py     # ~15 minutes on 2 cores
"""

from __future__ import annotations

import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from compare_drivers import _archived, _capped, _hv, _points, _search, _w8_latency

from common import ROOT, require_shared, save

MODEL = "cifar_resnet20"
TARGETS = ("gpu-t4", "npu-bitfusion-edge")
SEEDS = (0, 1, 2)
POINTS, BUDGET, PREFIXES, TEST_LIMIT = 10, 100, (30, 50, 100), 1000
RUNS = ROOT / "experiments" / "runs" / "ilp_points"


def _run(target: str, seed: int, shared: Path) -> None:
    out = RUNS / f"{target}-s{seed}-p{POINTS}"
    if not (out / "pareto.json").is_file():
        _search(out, MODEL, target, "hybrid", seed, BUDGET, TEST_LIMIT, shared, 1,
                extra=["--driver-opt", f"ilp_points={POINTS}"])  # fmt: skip


def _ratios(points: np.ndarray, ref: float, ref_capped: float) -> dict[str, list[float]]:
    return {"issue": [round(_hv(points[:n]) / ref, 4) for n in PREFIXES],
            "capped": [round(_hv(_capped(points[:n])) / ref_capped, 4) for n in PREFIXES]}  # fmt: skip


def main() -> None:
    shared = require_shared()
    RUNS.mkdir(parents=True, exist_ok=True)
    with ThreadPoolExecutor(2) as pool:
        list(pool.map(lambda j: _run(*j, shared), [(t, s) for t in TARGETS for s in SEEDS]))
    result: dict[str, Any] = {"model": MODEL, "ilp_points": POINTS, "budget": BUDGET,
                              "prefixes": PREFIXES, "targets": {}}  # fmt: skip
    for target in TARGETS:
        archive = _archived(MODEL, target)
        w8 = _w8_latency(MODEL, target)
        every = _points(archive, w8)
        ref, ref_capped = _hv(every), _hv(_capped(every))
        float_val = float(archive["float_val_top1"].iloc[0])
        rows: dict[str, list[dict[str, list[float]]]] = {"default (20)": [], str(POINTS): []}
        for seed in SEEDS:
            run = archive[archive["run"] == f"{MODEL}-{target}-hybrid-s{seed}"]
            rows["default (20)"].append(_ratios(_points(run, w8), ref, ref_capped))
            t = pd.read_parquet(RUNS / f"{target}-s{seed}-p{POINTS}" / "trials.parquet")
            mine = _points(t.assign(float_val_top1=float_val), w8)
            rows[str(POINTS)].append(_ratios(mine, ref, ref_capped))
        result["targets"][target] = {
            label: {k: np.round(np.mean([r[k] for r in per_seed], axis=0), 3).tolist()
                    for k in ("issue", "capped")}
            for label, per_seed in rows.items()
        }  # fmt: skip
        print(target, result["targets"][target], file=sys.stderr)
    save("hybrid_ilp_points", result)


if __name__ == "__main__":
    main()
