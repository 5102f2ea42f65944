"""Accuracy of the exported ONNX model run by ONNX Runtime against haq's simulated accuracy,
cifar_resnet20 on the full CIFAR-10 JPEG test split (../shared), calibration on 256 train images.

    python experiments/export_accuracy.py [--bits w8a8] [--threads 2]
"""

from __future__ import annotations

import argparse
import time

from haq.evaluate import build_setup, classification_metrics, predict
from haq.export.onnx_export import export_onnx
from haq.runtime.ort import ort_logits as ort_logits_of

from common import require_shared, save

BATCH = 250


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--bits", default="fp32,w8a8")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    shared = require_shared()
    setup = build_setup("cifar_resnet20", str(shared / "models/resnet20-12fca82f.th"),
                        str(shared / "data/cifar10-jpeg/test"), str(shared / "data/cifar10-jpeg/train"))  # fmt: skip
    x, y = setup.data.x, setup.data.y
    rows = []
    for bits in args.bits.split(","):
        sim = setup.evaluator.evaluate(bits)
        data, report = export_onnx(setup.quantizer, bits, batch=BATCH)
        start = time.perf_counter()
        ort_logits = ort_logits_of(data, x, BATCH, args.threads)
        ort_s = time.perf_counter() - start
        m = classification_metrics(ort_logits, y, setup.data.classes)
        sim_pred = setup.quantizer.apply(bits)
        sim_logits = predict(sim_pred, x)
        agreement = float((ort_logits.argmax(1) == sim_logits.argmax(1)).float().mean()) * 100
        row = {"bits": bits, "sim_top1": sim.metrics.top1, "ort_top1": m.top1, "delta": round(m.top1 - sim.metrics.top1, 3),
               "top1_agreement_ort_vs_sim": round(agreement, 3), "max_abs_logit_diff": float((ort_logits - sim_logits).abs().max()),
               "layers": report.counts(), "n_images": len(x), "ort_seconds": round(ort_s, 2)}  # fmt: skip
        rows.append(row)
        print(f"{bits}: simulated {row['sim_top1']:.2f}%  ORT {row['ort_top1']:.2f}%  (delta {row['delta']:+.2f})  "
              f"top-1 agreement {agreement:.2f}%  max |logit diff| {row['max_abs_logit_diff']:.3f}  {report.counts()}")  # fmt: skip
    save("export_accuracy", {"rows": rows})


if __name__ == "__main__":
    main()
