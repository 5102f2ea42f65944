"""GPTQ against round-to-nearest for all-MiniLM-L6-v2's weight-only Linears (issue 16's LLM method).

For 16 and 128 tokens and each weight-only config (4-bit groups of 128 and 32, 8-bit groups of
128; every Linear), ``--ptq none`` (round to nearest) and ``--ptq gptq`` (`haq.quant.gptq`,
Hessians from 128 calibration sentences): fidelity to the float model on 1,000 other sentences
of the text set (mean and worst cosine, top-10 retrieval kept), the seconds GPTQ took for all
36 Linears, and the worst per-sentence cosine of ONNX Runtime's embeddings (MatMulNBits,
accuracy_level 4) against the simulation on 50 sentences. GPTQ keeps round-to-nearest's scales
and changes only the integers, so the exported graph and its latency are the same.

    python experiments/text_gptq.py     # ~10 minutes on 2 cores
"""

from __future__ import annotations

import time
from typing import Any

import torch

from haq import BitConfig
from haq.data import load_data
from haq.evaluate import predict
from haq.evaluate.metrics import embedding_metrics
from haq.export.onnx_export import export_onnx
from haq.models import load_model
from haq.quant import Quantizer, QuantSettings
from haq.quant.settings import text_settings

from common import ort_worst_cosine, save

TOKENS = (16, 128)
CONFIGS = {"w4 g128": ("w4a32", 128), "w4 g32": ("w4a32", 32), "w8 g128": ("w8a32", 128)}
CALIB, SENTENCES, ORT_SENTENCES = 128, 1000, 50


def _ort_worst(q: Quantizer, config: BitConfig, x: torch.Tensor, sim: torch.Tensor) -> float:
    data, _ = export_onnx(q, config)
    return ort_worst_cosine(data, x, sim)


def rows(tokens: int) -> dict[str, Any]:
    lm = load_model("minilm", tokens=tokens)
    data = load_data("text", lm.preprocess, limit=CALIB + SENTENCES, seed=11).x
    calib, test = data[:CALIB], data[CALIB:]
    out: dict[str, Any] = {}
    ref = None
    for label, (precision, group) in CONFIGS.items():
        for ptq in ("none", "gptq"):
            settings = QuantSettings(group_size=group, ptq=ptq)
            q = Quantizer(lm.model, lm.example_input(), text_settings(settings),
                          calibration_images=calib if ptq != "none" else None)  # fmt: skip
            config = BitConfig.uniform(precision, q.layer_names)
            t0 = time.time()
            learned = q.learn_roundings(config)
            seconds = time.time() - t0
            with torch.no_grad():
                if ref is None:
                    ref = predict(q.float_model, test, 64)
                emb = predict(q.apply(config), test, 64)
            m = embedding_metrics(emb, ref)
            row = {"cosine": round(m.cosine, 5), "worst_cosine": round(m.cosine_min, 5),
                   "retrieval_top10_pct": m.retrieval, "roundings_learned": learned,
                   "learn_seconds": round(seconds, 1),
                   "ort_vs_sim_worst": round(_ort_worst(q, config, test[:ORT_SENTENCES],
                                                        emb[:ORT_SENTENCES]), 5)}  # fmt: skip
            out[f"{label} {ptq}"] = row
            print(tokens, label, ptq, row, flush=True)
    return out


def main() -> None:
    from haq.runtime.machine import machine_info

    result: dict[str, Any] = {"machine": machine_info(), "calibration_sentences": CALIB,
                              "test_sentences": SENTENCES}  # fmt: skip
    for t in TOKENS:
        result[f"tokens{t}"] = rows(t)
        save("text_gptq", result)


if __name__ == "__main__":
    main()
