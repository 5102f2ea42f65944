"""Measured ORT latency of cifar_resnet20 w8a8 and its first/ends-fp32 variants (the search's
seeds), 3 interleaved rounds of 100 runs at 1 thread, to check the cost model's ordering.

    python experiments/seed_latency_check.py
"""

from __future__ import annotations

import warnings

from haq import BitConfig
from haq.data import load_data
from haq.export.bench import benchmark
from haq.export.onnx_export import export_onnx
from haq.models import load_model
from haq.quant import Quantizer

from common import require_shared, save


def main() -> None:
    warnings.filterwarnings("ignore")
    shared = require_shared()
    lm = load_model("cifar_resnet20", str(shared / "models/resnet20-12fca82f.th"))
    calib = load_data(str(shared / "data/cifar10-jpeg/train"), lm.preprocess, limit=256)
    q = Quantizer(lm.model, lm.example_input(), calibration_images=calib.x)
    n = q.layer_names
    w8 = {k: "w8a8" for k in n}
    cfgs = {"w8a8": BitConfig(w8), "first-fp32": BitConfig({**w8, n[0]: "fp32"}),
            "ends-fp32": BitConfig({**w8, n[0]: "fp32", n[-1]: "fp32"})}  # fmt: skip
    data = {k: export_onnx(q, c)[0] for k, c in cfgs.items()}
    res: dict[str, list[float]] = {k: [] for k in cfgs}
    for _ in range(3):
        for k, d in data.items():
            res[k].append(
                round(
                    benchmark(
                        d, threads=1, runs=100, warmup=20, profile=False, busy_check_s=0.1
                    ).median_ms,
                    3,
                )
            )
    for k, v in res.items():
        print(f"{k:>10}: {v} ms")
    save("seed_latency_check", {"rounds_ms": res})


if __name__ == "__main__":
    main()
