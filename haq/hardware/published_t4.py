"""The ``gpu-t4`` latency table from HAWQ-V3's published T4 per-layer latencies.

Source: ``hawq_v3_t4_resnet18.csv`` (Yao, Dong et al., HAWQ-V3, ICML 2021; Zhen-Dong/HAWQ
``ILP.ipynb``; TVM int4/int8 kernels on an NVIDIA T4, batch 8; in ``../shared/data/published``
here). Each row is matched to torchvision resnet18's layer of that name (its weight count must
equal the published parameter count), keyed by that layer's signature at batch 8 and written as
kernel classes ``int4`` and ``int8`` (milliseconds x 1000 = ``latency_us``). Layers of
identical shape (e.g. the four 64->64 3x3 convs of layer1) share one table key; HAWQ-V3
measured them apart (0.305-0.362 ms at INT8), so their row holds the mean, which keeps every
sum over the network equal to the published per-layer sum; the individual values stay in
``layer_map.csv``. The first conv and the fc have no published numbers and get no row.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from haq.errors import HaqError
from haq.hardware.tables import SIGNATURE_COLUMNS, signature, write_table
from haq.io import atomic_write_text

BATCH = 8
SOURCE = "HAWQ-V3 (Yao, Dong et al., ICML 2021), Zhen-Dong/HAWQ ILP.ipynb, T4 + TVM, batch 8"
# Whole-model figures from the HAWQ repository README (T4, batch 8), in ms.
E2E_MS = {"resnet18": {"fp32": 9.7, "w8a8": 3.3, "w4a4": 2.2},
          "resnet50": {"fp32": 26.2, "w8a8": 8.5, "w4a4": 5.8}}  # fmt: skip


@dataclass
class T4Tables:
    """What `build_t4_tables` wrote, and what it read (for checks against the figures)."""

    layers: Any  # pd.DataFrame: the layer table
    published: Any  # pd.DataFrame: the source rows, in resnet18's layer order
    used: list[Any]  # LayerSpec of each published layer
    all_layers: dict[str, Any]  # every resnet18 layer by name
    files: list[Path]


def build_t4_tables(out: Path, source: Path) -> T4Tables:
    """``out/layers.csv`` (+ meta) and ``out/layer_map.csv`` from the published ``source``."""
    import pandas as pd

    from haq.models import discover_layers, load_model

    if not Path(source).is_file():
        raise HaqError(f"{source} not found: gpu-t4 is built from HAWQ-V3's published "
                       "hawq_v3_t4_resnet18.csv; pass its path")  # fmt: skip
    published = pd.read_csv(source)
    loaded = load_model("resnet18", "none")
    layers = {s.name: s for s in discover_layers(loaded.model, loaded.example_input())}
    rows, used = [], []
    for rec in published.itertuples(index=False):
        spec = layers[rec.torchvision_layer]
        if spec.params != rec.params:  # no bias
            raise HaqError(f"{source}: {rec.torchvision_layer} has {rec.params} parameters, "
                           f"torchvision's {spec.params}; the file does not describe resnet18")  # fmt: skip
        used.append(spec)
        for kernel, ms in (("int4", rec.latency_int4_ms), ("int8", rec.latency_int8_ms)):
            rows.append({**signature(spec, BATCH), "precision": kernel,
                         "kernel": f"TVM {kernel} HWNC conv (HAWQ-V3)", "latency_us": ms * 1000.0,
                         "threads": 1, "source": "HAWQ-V3 ILP.ipynb"})  # fmt: skip
    key = SIGNATURE_COLUMNS + ["precision"]
    frame = pd.DataFrame(rows).groupby(key, sort=False, as_index=False).agg(
        kernel=("kernel", "first"), latency_us=("latency_us", "mean"),
        threads=("threads", "first"), source=("source", "first"),
        published_layers=("latency_us", "size"),
    )  # fmt: skip
    frame["source"] = [s if n == 1 else f"{s} (mean of {n} layers of this shape)"
                       for s, n in zip(frame.source, frame.published_layers, strict=True)]  # fmt: skip
    meta = {
        "provenance": "published",
        "source": SOURCE,
        "file": Path(source).name,
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
    out = Path(out)
    write_table(frame, out / "layers.csv", meta=meta)
    lmap = pd.DataFrame([
        {"model": "resnet18", "name": s.name, "index": s.index,
         **{k: v for k, v in signature(s, BATCH).items() if k != "batch"},
         "macs": s.macs, "params": s.params,
         "published_int4_ms": r.latency_int4_ms, "published_int8_ms": r.latency_int8_ms}
        for s, r in zip(used, published.itertuples(index=False), strict=True)
    ])  # fmt: skip
    atomic_write_text(out / "layer_map.csv", lmap.to_csv(index=False))
    files = [out / "layers.csv", out / "layers.meta.json", out / "layer_map.csv"]
    return T4Tables(frame, published, used, layers, files)
