#!/usr/bin/env python3
"""Convert HAWQ-V3's published T4 per-layer latencies into the ``gpu-t4`` latency table
(`haq.hardware.builders`' gpu-t4 builder, `haq.hardware.published_t4`), then check it.

Source: ``../shared/data/published/hawq_v3_t4_resnet18.csv`` (Yao, Dong et al., HAWQ-V3, ICML
2021; Zhen-Dong/HAWQ ``ILP.ipynb``; TVM int4/int8 kernels on an NVIDIA T4, batch 8). Each row
is matched to torchvision resnet18's layer of that name (its weight count must equal the
published parameter count), keyed by that layer's signature at batch 8 and written as kernel
classes ``int4`` and ``int8`` (milliseconds x 1000 = ``latency_us``). Layers of identical shape
(e.g. the four 64->64 3x3 convs of layer1) share one table key; HAWQ-V3 measured them apart
(0.305-0.362 ms at INT8), so their row holds the mean, which keeps every sum over the network
equal to the published per-layer sum; the individual values stay in ``layer_map.csv``. The first conv and the fc
have no published numbers and get no row. Writes ``hardware_profiles/gpu-t4/layers.csv`` (+
``layers.meta.json``) and ``layer_map.csv``, and prints the effective throughputs the profile's
``peaks`` quote (the analytic fallback for the layers without rows)::

    python experiments/build_gpu_t4_table.py
"""

# ruff: noqa: E402
from __future__ import annotations

import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from haq.hardware.builders import get_builder

from common import SHARED, save

OUT = ROOT / "hardware_profiles"


def main() -> None:
    from haq.hardware.published_t4 import BATCH, E2E_MS, SOURCE

    src = SHARED / "data" / "published" / "hawq_v3_t4_resnet18.csv"
    if not src.is_file():
        sys.exit(f"needs {src} (../shared/data/published); set HAQ_SHARED_DIR")
    built = get_builder("gpu-t4").build(OUT, source=src)
    frame, detail = built.layers, built.detail
    published, used, layers = detail.published, detail.used, detail.all_layers
    # Effective throughputs (ops = 2 x MACs) for the analytic fallback of the layers without rows.
    macs19 = sum(s.macs for s in used) * BATCH
    macs_all = sum(s.macs for s in layers.values()) * BATCH
    eff = {
        "int8_gops": 2 * macs19 / (published.latency_int8_ms.sum() * 1e-3) / 1e9,
        "int4_gops": 2 * macs19 / (published.latency_int4_ms.sum() * 1e-3) / 1e9,
        "fp32_gops": 2 * macs_all / (E2E_MS["resnet18"]["fp32"] * 1e-3) / 1e9,
    }
    sums = {k: float(published[f"latency_{k}_ms"].sum()) for k in ("int4", "int8")}
    print(
        f"wrote {len(frame)} rows ({int((frame.published_layers > 1).sum()) // 2} shapes shared by several layers) for {len(used)} layers to {built.files[0]}"
    )
    print(f"per-layer sums (19 layers, ms): {sums}; published end-to-end: {E2E_MS['resnet18']}")
    print(
        "effective throughput (GOPS, 2 ops per MAC):",
        json.dumps({k: round(v) for k, v in eff.items()}),
    )
    # How the resulting cost model compares with the published end-to-end figures.
    from haq.config import BitConfig
    from haq.cost import LookupCostModel
    from haq.hardware.profile import get_target
    from haq.models import discover_layers, load_model

    predicted: dict[str, dict[str, object]] = {}
    for name in E2E_MS:
        net = load_model(name, "none")
        cm = LookupCostModel(get_target("gpu-t4"), discover_layers(net.model, net.example_input()),
                             learned=None)  # fmt: skip
        for bits in ("fp32", "w8a8", "w4a4"):
            est = cm.score(BitConfig.uniform(bits))
            predicted.setdefault(name, {})[bits] = {"ms": round(est.latency_ms or 0.0, 3),
                                                    "model": est.model}  # fmt: skip
            print(f"{name} {bits}: predicted {est.latency_ms:.2f} ms ({est.model}); "
                  f"published end-to-end {E2E_MS[name][bits]} ms")  # fmt: skip
    save("gpu_t4_table", {"rows": len(frame), "layer_sums_ms": sums, "effective_gops": eff,
                          "e2e_ms": E2E_MS, "predicted": predicted, "source": SOURCE})  # fmt: skip


if __name__ == "__main__":
    main()
