"""Six seeds of the hybrid driver with and without ``screen=4``, over one reference front.

Reads the runs `hybrid_variant.py` left under experiments/runs/ (seeds 0-2 with screening:
``--label screen_map``; seeds 3-5: ``--label seeds345_default`` and ``--label
seeds345_screen --driver-opt screen=4``, all ``--budget 60``) and the archived default runs
of seeds 0-2 (`experiments/results/compare_drivers/`, the same driver code with screening
off). Per target: each run's hypervolume ratio after 30 / 50 / 60 evaluations over the
non-dominated union of the archive and every run read here, per seed, and the mean and
standard deviation over the six seeds of each arm; and the median wall time of seeds 3-5 per
arm (1 thread per search, two searches at a time on 2 cores).

    python experiments/screen_seeds.py     # seconds; run after the three hybrid_variant runs
"""

from __future__ import annotations

import json
import sys
from typing import Any

import numpy as np
import pandas as pd
from compare_drivers import _archived, _hv, _points, _w8_latency

from common import ROOT, save

MODEL, TARGETS, PREFIXES = (
    "cifar_resnet20",
    ("npu-bitfusion-edge", "gpu-t4", "cpu-avx512"),
    (30, 50, 60),
)
RUNS = ROOT / "experiments" / "runs"
ARMS = {"default (screen=0)": [(None, 0), (None, 1), (None, 2), ("seeds345_default", 3),
                               ("seeds345_default", 4), ("seeds345_default", 5)],
        "screen=4": [("screen_map", 0), ("screen_map", 1), ("screen_map", 2),
                     ("seeds345_screen", 3), ("seeds345_screen", 4), ("seeds345_screen", 5)]}  # fmt: skip


def _run_points(archive: pd.DataFrame, target: str, w8: float, float_val: float,
                label: str | None, seed: int) -> np.ndarray:  # fmt: skip
    """One run's (drop, relative latency) per evaluation; ``label`` None: the archived default."""
    if label is None:  # the archived default run (200 evaluations; its prefix is read)
        return _points(archive[archive["run"] == f"{MODEL}-{target}-hybrid-s{seed}"], w8)
    trials = pd.read_parquet(RUNS / label / f"{MODEL}-{target}-s{seed}" / "trials.parquet")
    return _points(trials.assign(float_val_top1=float_val), w8)


def main() -> None:
    result: dict[str, Any] = {"model": MODEL, "prefixes": PREFIXES, "targets": {}}
    for target in TARGETS:
        archive = _archived(MODEL, target)
        w8 = _w8_latency(MODEL, target)
        float_val = float(archive["float_val_top1"].iloc[0])

        runs = {arm: [_run_points(archive, target, w8, float_val, label, seed) for label, seed in plan]
                for arm, plan in ARMS.items()}  # fmt: skip
        ref = _hv(np.vstack([_points(archive, w8), *[p for ps in runs.values() for p in ps]]))
        out = {}
        for arm, per_seed in runs.items():
            ratios = np.array([[_hv(p[:n]) / ref for n in PREFIXES] for p in per_seed])
            out[arm] = {"per_seed": np.round(ratios, 4).tolist(),
                        "mean": np.round(ratios.mean(axis=0), 3).tolist(),
                        "std": np.round(ratios.std(axis=0, ddof=1), 3).tolist()}  # fmt: skip
        for arm, plan in ARMS.items():  # seeds 3-5 of both arms ran alike: two at a time
            walls = [json.loads((RUNS / label / f"{MODEL}-{target}-s{seed}" / "pareto.json")
                                .read_text())["wall_seconds"]
                     for label, seed in plan if label and label.startswith("seeds345")]  # fmt: skip
            out[arm]["median_wall_seconds_seeds_3_5"] = round(float(np.median(walls)), 1)
        result["targets"][target] = out
        print(target, {a: (v["mean"], v["std"]) for a, v in out.items()}, file=sys.stderr)
    save("screen_seeds", result)


if __name__ == "__main__":
    main()
