"""Evaluation throughput of quantized configs relative to the float model, and calibration time.

cifar_resnet20 on the full CIFAR-10 JPEG test split (../shared). Each timing is the median of
--repeats passes, all measured in this one run, so ratios are comparable on a noisy machine.

    python experiments/bench_eval.py [--repeats 3] [--calib-limit 256]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from haq import BitConfig
from haq.data import load_data
from haq.evaluate import predict
from haq.models import load_model
from haq.quant import Quantizer

from common import require_shared, save


def _median_time(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--calib-limit", type=int, default=256)
    args = ap.parse_args()
    shared = require_shared()
    loaded = load_model("cifar_resnet20", str(shared / "models" / "resnet20-12fca82f.th"))

    t0 = time.perf_counter()
    test = load_data(str(shared / "data/cifar10-jpeg/test"), loaded.preprocess)
    decode_s = time.perf_counter() - t0
    calib = load_data(
        str(shared / "data/cifar10-jpeg/train"), loaded.preprocess, limit=args.calib_limit
    )

    t0 = time.perf_counter()
    quantizer = Quantizer(loaded.model, loaded.example_input())
    prepare_s = time.perf_counter() - t0
    calib_s = _median_time(lambda: quantizer.calibrate(calib.x), args.repeats)

    names = quantizer.layer_names
    configs = {
        "w8a8": BitConfig.uniform("w8a8"),
        "w4a8": BitConfig.uniform("w4a8"),
        "mixed": BitConfig(
            {
                n: ("fp32" if i % 3 == 0 else "w4a8" if i % 3 == 1 else "w6a6")
                for i, n in enumerate(names)
            }
        ),
    }
    float_s = _median_time(lambda: predict(loaded.model, test.x), args.repeats)
    folded = quantizer.apply("fp32")
    folded_s = _median_time(lambda: predict(folded, test.x), args.repeats)
    rows = {"fp32 (user model)": {"seconds": float_s, "ratio": 1.0},
            "fp32 (BN folded)": {"seconds": folded_s, "ratio": folded_s / float_s}}  # fmt: skip
    for name, cfg in configs.items():
        apply_first = _median_time(lambda cfg=cfg: quantizer.apply(cfg), 1)
        model = quantizer.apply(cfg)
        secs = _median_time(lambda model=model: predict(model, test.x), args.repeats)
        apply_s = _median_time(lambda cfg=cfg: quantizer.apply(cfg), args.repeats)
        rows[name] = {
            "seconds": secs,
            "ratio": secs / float_s,
            "apply_first_s": apply_first,
            "apply_cached_s": apply_s,
        }

    print(f"cifar_resnet20, {len(test)} test images, {torch.get_num_threads()} threads")
    print(
        f"decode test split: {decode_s:.2f} s; quantizer setup (copy + BN fold + layers): {prepare_s:.3f} s"
    )
    print(f"calibration ({len(calib)} images, 2 passes): {calib_s:.2f} s")
    for name, r in rows.items():
        extra = (
            f"  apply {r['apply_first_s'] * 1e3:.1f} ms first, {r['apply_cached_s'] * 1e3:.1f} ms cached"
            if "apply_first_s" in r
            else ""
        )
        print(
            f"{name:>18}: {r['seconds']:.2f} s  ({len(test) / r['seconds']:.0f} img/s)  x{r['ratio']:.2f}{extra}"
        )
    save("bench_eval", {"images": len(test), "decode_s": decode_s, "prepare_s": prepare_s,
                        "calib_images": len(calib), "calib_s": calib_s, "rows": rows})  # fmt: skip


if __name__ == "__main__":
    main()
