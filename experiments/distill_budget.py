"""What distillation steps buy a data-free search (ZeroQ images, `haq.data.distilled`).

A data-free search calibrates on distilled images and ranks configs by fidelity (top-1
agreement with the float model) on other distilled images. Its default steps shrink for large
networks (`default_steps`: resnet50 gets 6 of 100) so that the first trial starts in minutes;
this measures what fewer steps cost, on real weights and real test images (../shared):

- per steps value: distillation time, BatchNorm statistic gap, and for a fixed set of
  configs (uniform and seeded mixed) the real CIFAR-10 test top-1 when calibrated on 16
  distilled images (calibration quality), and Kendall's tau between the fidelity on 48 other
  distilled images and that real top-1 (ranking quality: what the search steers by);
- the same with 16 real train images for calibration and fidelity on 48 real test images
  (the upper bound a user with images gets).

    python experiments/distill_budget.py [--steps 0,2,6,15,40,100] [--test-limit 2000]
"""

from __future__ import annotations

import argparse
import time
from typing import Any

import numpy as np
from scipy.stats import kendalltau

from haq import BitConfig
from haq.data import load_data
from haq.data.distilled import bn_stat_gap, default_steps, macs_per_image
from haq.evaluate import build_setup
from haq.evaluate.setup import evaluator_on

from common import require_shared, save

CHECKPOINTS = {"cifar_resnet20": "resnet20-12fca82f.th", "cifar_resnet56": "resnet56-4bfd9763.th"}
UNIFORM = ("w8a8", "w6a6", "w5a5", "w4a8", "w8a4", "w4a4", "w3a8")
MIXED_FROM = ("w8a8", "w6a6", "w5a5", "w4a8", "w8a4", "w4a4")
N_MIXED = 7
N_IMAGES, N_CALIB = 64, 16


def configs(names: list[str], seed: int = 0) -> dict[str, BitConfig]:
    rng = np.random.default_rng(seed)
    out = {p: BitConfig.uniform(p, names) for p in UNIFORM}
    for k in range(N_MIXED):
        out[f"mixed {k}"] = BitConfig({n: MIXED_FROM[rng.integers(len(MIXED_FROM))] for n in names})
    return out


def one_setting(model: str, weights: str, test: str, calib: str, fidelity_data: str,
                test_limit: int) -> dict[str, Any]:  # fmt: skip
    """Calibrate on ``calib`` (N_CALIB images), score every config's real top-1 on ``test``
    and its fidelity on ``fidelity_data`` (the calibration images held out)."""
    setup = build_setup(model, weights, test, calib, limit=test_limit, calib_limit=N_CALIB)
    fid = evaluator_on(setup, fidelity_data, calib, limit=N_IMAGES - N_CALIB)
    top1, agree = {}, {}
    for label, cfg in configs(setup.quantizer.layer_names).items():
        top1[label] = setup.evaluator.evaluate(cfg).metrics.top1
        agree[label] = fid.evaluate(cfg).metrics.agreement
    labels = list(top1)
    tau = kendalltau([agree[k] for k in labels], [top1[k] for k in labels]).statistic
    return {"test_top1": top1, "fidelity": agree, "kendall_tau": round(float(tau), 3),
            "mean_test_top1": round(float(np.mean(list(top1.values()))), 2),
            "fidelity_images": len(fid.data)}  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--steps", default="0,2,6,15,40,100")
    ap.add_argument("--test-limit", type=int, default=2000)
    args = ap.parse_args()
    shared = require_shared()
    test, train = str(shared / "data/cifar10-jpeg/test"), str(shared / "data/cifar10-jpeg/train")
    result: dict[str, Any] = {
        "n_images": N_IMAGES,
        "n_calib": N_CALIB,
        "test_limit": args.test_limit,
    }
    for model, ckpt in CHECKPOINTS.items():
        weights = str(shared / "models" / ckpt)
        loaded = build_setup(model, weights, test, limit=1, needs_calibration=False).loaded
        size = loaded.preprocess.input_size
        rows: dict[str, Any] = {
            "gmacs": round(macs_per_image(loaded.model, size) / 1e9, 4),
            "default_steps_at_64": default_steps(loaded.model, N_IMAGES, size),
            "real": one_setting(model, weights, test, train, test, args.test_limit),
        }
        real_x = load_data(train, loaded.preprocess, limit=N_IMAGES).x
        rows["real"]["bn_gap"] = round(bn_stat_gap(loaded.model, real_x), 2)
        for steps in [int(s) for s in args.steps.split(",")]:
            src = f"distilled:{N_IMAGES}:{steps}"  # 0 steps: the Gaussian noise they start from
            t0 = time.time()
            x = load_data(src, loaded.preprocess, model=loaded.model).x  # distils (cached)
            seconds = time.time() - t0
            r = one_setting(model, weights, test, src, src, args.test_limit)
            r.update(
                bn_gap=round(bn_stat_gap(loaded.model, x), 2), distil_seconds=round(seconds, 1)
            )
            rows[f"steps {steps}"] = r
            print(
                f"{model} steps {steps:>3}: BN gap {r['bn_gap']:8.2f}  distil {seconds:5.1f}s  "
                f"mean top-1 {r['mean_test_top1']:6.2f}  tau {r['kendall_tau']:+.3f}",
                flush=True,
            )
        print(
            f"{model} real images: BN gap {rows['real']['bn_gap']:8.2f}  mean top-1 "
            f"{rows['real']['mean_test_top1']:6.2f}  tau {rows['real']['kendall_tau']:+.3f}"
        )
        result[model] = rows
        save("distill_budget", result)


if __name__ == "__main__":
    main()
