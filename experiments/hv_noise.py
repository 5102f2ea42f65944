"""How much of a short run's hypervolume gap to the reference front is validation luck.

compare_drivers' reference front is the non-dominated union of every run of a pair, each
trial scored on the same 1,000 validation images. Configs close to the front differ in
accuracy on those images by about a point from config to config, partly for real and partly
by which images they happen to get right, and a front of the best of many evaluations keeps
the lucky ones. The union of all runs holds the best of ~2,000 evaluations; a 50-evaluation
prefix can only hold the best of 50.

This script separates the two: for each archived run (cifar_resnet20, every driver, seeds
0-2) and each prefix (50 / 100 / 200 evaluations), the validation front of the prefix is
re-scored on 1,000 test images, and its test hypervolume is divided by that of the reference
front *chosen on validation* and re-scored on test the same way. Nothing is selected on test,
so the ratio says how much of the reference front's real quality the prefix holds; the gap
between this ratio and the validation one is what the longer runs gained by selecting on
validation noise. Test scores of configs not re-scored by their run are evaluated here
(serial, cached in experiments/runs/hv_noise/test_scores.json, so a rerun resumes).

    python experiments/hv_noise.py [--targets npu-bitfusion-edge,gpu-t4,cpu-avx512] [--drivers hybrid,zeroq-dp]
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

import numpy as np
import pandas as pd
from compare_drivers import (
    CHECKPOINTS,
    REF_POINT,
    _archived,
    _float_test,
    _hv,
    _trials,
    _w8_latency,
)

from haq.pareto import non_dominated_mask

from common import ROOT, machine, require_shared, save

MODEL, SEEDS, PREFIXES, TEST_LIMIT = "cifar_resnet20", (0, 1, 2), (50, 100, 200), 1000
CACHE = ROOT / "experiments" / "runs" / "hv_noise" / "test_scores.json"


def _val_front(t: pd.DataFrame) -> pd.DataFrame:
    """The trials on the validation front, inside the reference box."""
    drop = (t["float_val_top1"] - t["val_top1"]).to_numpy()
    mask = non_dominated_mask(np.column_stack([drop, t["latency_ms"].to_numpy()]), ["minimize"] * 2)
    return t[mask & (drop < REF_POINT[0])].drop_duplicates("config_hash")


class TestScores:
    """Test top-1 per config hash: the runs' own re-scoring, else evaluated here (cached)."""

    def __init__(self, shared: Any, frames: list[pd.DataFrame]) -> None:
        self.shared = shared
        self.known: dict[str, float] = json.loads(CACHE.read_text()) if CACHE.is_file() else {}
        for f in frames:
            for h, v in f.dropna(subset=["test_top1"])[["config_hash", "test_top1"]].itertuples(
                index=False
            ):
                self.known.setdefault(h, float(v))
        self.setup: Any = None

    def get(self, rows: pd.DataFrame) -> np.ndarray:
        todo = rows[~rows["config_hash"].isin(self.known)]
        if len(todo):
            self._evaluate(todo)
        return np.array([self.known[h] for h in rows["config_hash"]])

    def _evaluate(self, rows: pd.DataFrame) -> None:
        from haq import BitConfig
        from haq.evaluate.setup import build_setup
        from haq.io import atomic_write_text

        if self.setup is None:
            self.setup = build_setup(MODEL, str(self.shared / "models" / CHECKPOINTS[MODEL]),
                                     str(self.shared / "data/cifar10-jpeg/test"),
                                     str(self.shared / "data/cifar10-jpeg/train"), limit=TEST_LIMIT)  # fmt: skip
        for k, (h, cfg) in enumerate(rows[["config_hash", "config"]].itertuples(index=False)):
            top1 = self.setup.evaluator.evaluate(BitConfig.from_dict(json.loads(cfg))).metrics.top1
            self.known[h] = float(top1)
            print(f"  test-scored {k + 1}/{len(rows)}", file=sys.stderr, flush=True)
        CACHE.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(CACHE, json.dumps(self.known, indent=0, sort_keys=True))


def _plane(front: pd.DataFrame, top1: np.ndarray, float_top1: float, w8: float) -> np.ndarray:
    return np.column_stack([float_top1 - top1, front["latency_ms"].to_numpy() / w8])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--targets", default="npu-bitfusion-edge,gpu-t4,cpu-avx512")
    ap.add_argument("--drivers", default="hybrid,zeroq-dp,nsga2,tpe")
    args = ap.parse_args()
    shared = require_shared()
    result: dict[str, Any] = {
        "machine": machine(),
        "model": MODEL,
        "prefixes": PREFIXES,
        "targets": {},
    }
    for target in args.targets.split(","):
        archive = _archived(MODEL, target)
        w8 = _w8_latency(MODEL, target)
        scores = TestScores(shared, [archive])
        every = _trials(archive)
        float_val = float(every["float_val_top1"].iloc[0])
        float_test = _float_test(MODEL, TEST_LIMIT, shared)
        ref = _val_front(every)
        ref_val = _hv(_plane(ref, ref["val_top1"].to_numpy(), float_val, w8))
        ref_test = _hv(_plane(ref, scores.get(ref), float_test, w8))
        rows = {}
        for driver in args.drivers.split(","):
            per_seed = []
            for seed in SEEDS:
                t = _trials(archive[archive["run"] == f"{MODEL}-{target}-{driver}-s{seed}"])
                if not len(t):
                    continue
                val, test = [], []
                for n in PREFIXES:
                    f = _val_front(t.iloc[:n])
                    val.append(_hv(_plane(f, f["val_top1"].to_numpy(), float_val, w8)) / ref_val)
                    test.append(_hv(_plane(f, scores.get(f), float_test, w8)) / ref_test)
                per_seed.append((val, test))
            if per_seed:
                rows[driver] = {
                    "val_ratio": np.round(np.mean([v for v, _ in per_seed], axis=0), 3).tolist(),
                    "test_ratio_of_val_choice": np.round(np.mean([t for _, t in per_seed], axis=0), 3).tolist(),
                    "seeds": len(per_seed),
                }  # fmt: skip
        result["targets"][target] = {
            "reference_points": len(ref), "float_val_top1": float_val, "float_test_top1": float_test,
            "reference_val_hv": round(ref_val, 4), "reference_test_hv": round(ref_test, 4), "drivers": rows,
        }  # fmt: skip
        print(target, json.dumps(rows), file=sys.stderr, flush=True)
    save("hv_noise", result)


if __name__ == "__main__":
    main()
