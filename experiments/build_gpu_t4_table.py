#!/usr/bin/env python3
"""Convert HAWQ-V3's published T4 per-layer latencies into the ``gpu-t4`` latency table.

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

import pandas as pd

from haq.hardware.tables import SIGNATURE_COLUMNS, signature, write_table
from haq.io import atomic_write_text
from haq.models import discover_layers, load_model

from common import SHARED, save

BATCH = 8
OUT = ROOT / "hardware_profiles" / "gpu-t4"
SOURCE = "HAWQ-V3 (Yao, Dong et al., ICML 2021), Zhen-Dong/HAWQ ILP.ipynb, T4 + TVM, batch 8"
# Whole-model figures from the HAWQ repository README (T4, batch 8), in ms.
E2E_MS = {"resnet18": {"fp32": 9.7, "w8a8": 3.3, "w4a4": 2.2},
          "resnet50": {"fp32": 26.2, "w8a8": 8.5, "w4a4": 5.8}}  # fmt: skip


def main() -> None:
    src = SHARED / "data" / "published" / "hawq_v3_t4_resnet18.csv"
    if not src.is_file():
        sys.exit(f"needs {src} (../shared/data/published); set HAQ_SHARED_DIR")
    published = pd.read_csv(src)
    loaded = load_model("resnet18", "none")
    layers = {s.name: s for s in discover_layers(loaded.model, loaded.example_input())}
    rows, used = [], []
    for rec in published.itertuples(index=False):
        spec = layers[rec.torchvision_layer]
        assert spec.params == rec.params, (
            rec.torchvision_layer,
            spec.params,
            rec.params,
        )  # no bias
        used.append(spec)
        for kernel, ms in (("int4", rec.latency_int4_ms), ("int8", rec.latency_int8_ms)):
            rows.append({**signature(spec, BATCH), "precision": kernel,
                         "kernel": f"TVM {kernel} HWNC conv (HAWQ-V3)", "latency_us": ms * 1000.0,
                         "threads": 1, "source": "HAWQ-V3 ILP.ipynb"})  # fmt: skip
    key = SIGNATURE_COLUMNS + ["precision"]
    per_layer = pd.DataFrame(rows)
    frame = per_layer.groupby(key, sort=False, as_index=False).agg(
        kernel=("kernel", "first"), latency_us=("latency_us", "mean"),
        threads=("threads", "first"), source=("source", "first"),
        published_layers=("latency_us", "size"),
    )  # fmt: skip
    frame["source"] = [s if n == 1 else f"{s} (mean of {n} layers of this shape)"
                       for s, n in zip(frame.source, frame.published_layers, strict=True)]  # fmt: skip
    meta = {
        "provenance": "published",
        "source": SOURCE,
        "file": str(src.relative_to(SHARED.parent)) if SHARED.parent in src.parents else src.name,
        "batch": BATCH,
        "units": "published in ms, stored as latency_us = ms x 1000",
        "layers": [s.name for s in used],
        "missing": [n for n in layers if n not in {s.name for s in used}],
        "missing_reason": "HAWQ-V3 publishes no per-layer latency for the first conv and the fc",
        "resnet50": "only end-to-end figures are published (26.2 / 8.5 / 5.8 ms FP32 / W8A8 / W4A4); "
        "no per-layer rows",
        "e2e_ms": E2E_MS,
        "script": "experiments/build_gpu_t4_table.py",
    }
    write_table(frame, OUT / "layers.csv", meta=meta)
    lmap = pd.DataFrame(
        [
            {
                "model": "resnet18",
                "name": s.name,
                "index": s.index,
                **{k: v for k, v in signature(s, BATCH).items() if k != "batch"},
                "macs": s.macs,
                "params": s.params,
                "published_int4_ms": r.latency_int4_ms,
                "published_int8_ms": r.latency_int8_ms,
            }
            for s, r in zip(used, published.itertuples(index=False), strict=True)
        ]  # fmt: skip
    )
    atomic_write_text(OUT / "layer_map.csv", lmap.to_csv(index=False))

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
        f"wrote {len(frame)} rows ({int((frame.published_layers > 1).sum()) // 2} shapes shared by several layers) for {len(used)} layers to {OUT / 'layers.csv'}"
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
