"""Accuracy of uniform configs on the full CIFAR-10 JPEG test split (../shared), simulated in
torch, for cifar_resnet20 and cifar_resnet56; calibration on 256 train images.

    python experiments/accuracy_cifar.py [--bits fp32,w8a8,w6a8,w4a8,w3a8]
"""

from __future__ import annotations

import argparse

from haq.evaluate import build_setup

from common import require_shared, save

CHECKPOINTS = {"cifar_resnet20": "resnet20-12fca82f.th", "cifar_resnet56": "resnet56-4bfd9763.th"}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--bits", default="fp32,w8a8,w6a8,w4a8,w3a8")
    args = ap.parse_args()
    shared = require_shared()
    rows = []
    for model, ckpt in CHECKPOINTS.items():
        setup = build_setup(model, str(shared / "models" / ckpt), str(shared / "data/cifar10-jpeg/test"),
                            str(shared / "data/cifar10-jpeg/train"))  # fmt: skip
        for bits in args.bits.split(","):
            r = setup.evaluator.evaluate(bits)
            m = r.metrics
            rows.append({"model": model, "bits": bits, "top1": m.top1, "top5": m.top5, "worst_class": m.worst_class,
                         "worst_class_top1": m.worst_class_top1, "agreement": m.agreement, "n_images": m.n_images,
                         "seconds": round(r.seconds, 2)})  # fmt: skip
            print(f"{model:>15} {bits:>5}: top-1 {m.top1:6.2f}%  worst class {m.worst_class} {m.worst_class_top1:5.1f}%  "
                  f"agreement {m.agreement:6.2f}%  ({m.n_images} images, {r.seconds:.1f} s)")  # fmt: skip
    save("accuracy_cifar", {"rows": rows})


if __name__ == "__main__":
    main()
