"""all-MiniLM-L6-v2 at uniform precisions: fidelity, ONNX size and ONNX Runtime latency.

The first rows of issue 16's table (fp32 against uniform weight-only MatMulNBits configs; the
searched front and dynamic int8 are not built yet). For 16 and 128 tokens and each config:
fidelity to the float model on 1,000 stdlib-docstring sentences (`--data text`; mean and worst
cosine, top-10 retrieval kept), the exported file's size, the worst per-sentence cosine of
ONNX Runtime's embeddings against the simulation (50 sentences), and the latency of one
sentence (batch 1, 1 thread; 5 interleaved rounds of 20 runs, fastest round's median), for
MatMulNBits' ``accuracy_level`` 4 (int8 compute, haq's default) and 0 (float compute).

    python experiments/text_uniform.py     # ~5 minutes on 2 cores
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import torch

from haq import BitConfig
from haq.data import load_data
from haq.evaluate import predict
from haq.evaluate.metrics import embedding_metrics
from haq.export.onnx_export import export_onnx
from haq.models import load_model
from haq.quant import Quantizer, QuantSettings
from haq.runtime.ort import make_session
from haq.runtime.timing import latency_stats, time_interleaved

from common import save

TOKENS = (16, 128)
CONFIGS = {  # label -> (precision, group size or None for float)
    "fp32": ("fp32", None),
    "w8 g32": ("w8a32", 32),
    "w4 g128": ("w4a32", 128),
    "w4 g32": ("w4a32", 32),
}
SENTENCES, ORT_SENTENCES = 1000, 50


def _ort(onnx_bytes: bytes, x: torch.Tensor, sim: torch.Tensor) -> tuple[float, Any]:
    sess = make_session(onnx_bytes, threads=1)
    ort = torch.from_numpy(np.concatenate([sess.run(None, {"input": x[i : i + 1].numpy()})[0]
                                           for i in range(len(x))]))  # fmt: skip
    return float(torch.nn.functional.cosine_similarity(ort, sim, dim=1).min()), sess


def _rows(
    tokens: int, label: str, precision: str, group: int | None
) -> list[tuple[dict[str, Any], Any]]:
    lm = load_model("minilm", tokens=tokens)
    data = load_data("text", lm.preprocess, limit=SENTENCES)
    settings = QuantSettings(granularity="group", group_size=group) if group else QuantSettings()
    q = Quantizer(lm.model, lm.example_input(), settings)
    config = BitConfig.uniform(precision, q.layer_names)
    with torch.no_grad():
        ref = predict(q.float_model, data.x, 64)
        sim = predict(q.apply(config), data.x, 64)
    m = embedding_metrics(sim, ref)
    out = []
    for level in (4, 0) if group else (4,):
        onnx_bytes, _ = export_onnx(q, config, accuracy_level=level)
        ort_cos, sess = _ort(onnx_bytes, data.x[:ORT_SENTENCES], sim[:ORT_SENTENCES])
        row = {"tokens": tokens, "config": label, "accuracy_level": level if group else None,
               "cosine": m.cosine, "cosine_min": m.cosine_min, "retrieval": m.retrieval,
               "onnx_mb": round(len(onnx_bytes) / 1e6, 2), "ort_vs_sim_cosine_min": round(ort_cos, 6)}  # fmt: skip
        out.append((row, sess))
    return out


def main() -> None:
    start = time.perf_counter()
    rows = []
    for tokens in TOKENS:
        built = [r for label, (p, g) in CONFIGS.items() for r in _rows(tokens, label, p, g)]
        feeds = {"input": np.ones((1, tokens), dtype=np.float32) * 2023}
        timed = time_interleaved([s for _, s in built], feeds, rounds=5, per_round=20)
        fp32_ms = None
        for (row, _), runs in zip(built, timed, strict=True):
            row["latency_ms"] = round(latency_stats(runs).best_round_median_ms, 3)
            fp32_ms = fp32_ms or row["latency_ms"]
            row["speedup_vs_fp32"] = round(fp32_ms / row["latency_ms"], 3)
            rows.append(row)
            print(row, flush=True)
    save(
        "text_uniform",
        {"rows": rows, "sentences": SENTENCES, "seconds": round(time.perf_counter() - start)},
    )


if __name__ == "__main__":
    main()
