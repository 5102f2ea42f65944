"""Where along the latency axis a driver's front loses hypervolume to the reference front.

For the archived compare_drivers runs of one model (cifar_resnet20 by default), each target's
reference front (every run's trials, validation top-1) and each run of ``--driver`` cut to
its first ``--budgets`` evaluations are turned into attainment curves: the smallest top-1
drop from the float model (capped at the 10-point reference) reached at or below each
latency, as a fraction of uniform w8a8's. The area between the run's curve and the
reference's, per latency band, over the reference front's hypervolume, is the share of the
hypervolume ratio each band loses (mean over the seeds); the bands sum to 1 - HV ratio.

    python experiments/hv_bands.py [--driver hybrid] [--budgets 50,100]
"""

from __future__ import annotations

import argparse
from typing import Any

import numpy as np
from compare_drivers import _archived, _points, _w8_latency

from common import save

BANDS = (0.0, 0.35, 0.45, 0.55, 0.65, 0.75, 0.85, 1.0001)
DROP_CAP = 10.0  # the hypervolume's reference point: 10 points of top-1 drop, latency 1.0


def attainment(points: np.ndarray, grid: np.ndarray) -> np.ndarray:
    """Smallest drop (capped) reached at or below each latency of ``grid``; ``points`` are
    (drop, relative latency) rows (`compare_drivers._points`)."""
    out = np.full(len(grid), DROP_CAP)
    for y, x in points:
        reach = grid >= x
        out[reach] = np.minimum(out[reach], min(y, DROP_CAP))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--model", default="cifar_resnet20")
    ap.add_argument("--driver", default="hybrid")
    ap.add_argument("--budgets", default="50,100")
    ap.add_argument("--targets", default="npu-bitfusion-edge,gpu-t4,cpu-avx512")
    ap.add_argument("--out", default="hv_bands")
    args = ap.parse_args()
    budgets = [int(b) for b in args.budgets.split(",")]
    grid = np.linspace(0.0, 1.0, 4001)
    labels = [f"{a:.2f}-{min(b, 1.0):.2f}" for a, b in zip(BANDS, BANDS[1:], strict=False)]
    result: dict[str, Any] = {"model": args.model, "driver": args.driver, "bands": labels,
                              "targets": {}}  # fmt: skip
    for target in args.targets.split(","):
        archive = _archived(args.model, target)
        w8 = _w8_latency(args.model, target)
        ref = attainment(_points(archive, w8), grid)
        ref_area = float((DROP_CAP - ref).sum())
        runs = [
            _points(run, w8) for _, run in archive[archive["driver"] == args.driver].groupby("seed")
        ]
        per_budget: dict[str, Any] = {}
        for budget in budgets:
            gaps = []
            for points in runs:
                gap = attainment(points[:budget], grid) - ref
                gaps.append([float(gap[(grid >= a) & (grid < b)].sum()) / ref_area
                             for a, b in zip(BANDS, BANDS[1:], strict=False)])  # fmt: skip
            mean = np.mean(gaps, axis=0)
            per_budget[str(budget)] = {"gap_by_band": dict(zip(labels, np.round(mean, 4).tolist(),
                                                               strict=True)),
                                       "gap_total": round(float(mean.sum()), 4),
                                       "seeds": len(gaps)}  # fmt: skip
        mids = [0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0]
        result["targets"][target] = {
            "per_budget": per_budget,
            "reference_drop_at": {
                str(m): round(float(ref[np.searchsorted(grid, m)]), 2) for m in mids
            },  # fmt: skip
        }
        print(target, {b: v["gap_total"] for b, v in per_budget.items()},
              per_budget[str(budgets[0])]["gap_by_band"])  # fmt: skip
    save(args.out, result)


if __name__ == "__main__":
    main()
