"""Group size and zero points of all-MiniLM-L6-v2's weight-only Linears (issue 16's
"group size 32/64/128, symmetric or asymmetric").

For 16 and 128 tokens and every Linear at one weight-only precision (w2, w4, w8 with groups
of 32, 64 and 128; symmetric, or ``--weight-only-mapping asymmetric``: zero points), round
to nearest and, for 4 bits, GPTQ (`haq.quant.gptq`, 128 calibration sentences): fidelity to
the float model on 1,000 other sentences of the text set (mean and worst cosine, top-10
retrieval kept), size (`SizeBopsModel`: scales and zero points included), and the worst
per-sentence cosine of ONNX Runtime's embeddings (MatMulNBits, accuracy_level 4) against
the simulation on 50 sentences. Then every 4- and 8-bit grid (and fp32) is exported and timed
in one interleaved session (1 thread, 10 rounds of 10 runs, best round's median) beside
cpu-avx512's prediction, whose MatMulNBits rows were measured at blocks of 32, symmetric.

    python experiments/text_weight_grids.py     # ~15 minutes on 2 cores
"""

from __future__ import annotations

import time
from dataclasses import replace
from typing import Any

import torch

from common import ort_worst_cosine, save

TOKENS = (16, 128)
BITS = (2, 4, 8)
GROUPS = (32, 64, 128)
MAPPINGS = ("symmetric", "asymmetric")
GPTQ_BITS = (4,)
TIMED_BITS = (4, 8)
CALIB, SENTENCES, ORT_SENTENCES = 128, 1000, 50
TARGET = "cpu-avx512"


def rows(tokens: int) -> dict[str, Any]:
    from haq import BitConfig
    from haq.cost import cost_model_for
    from haq.data import load_data
    from haq.evaluate import predict
    from haq.evaluate.metrics import embedding_metrics
    from haq.export.onnx_export import export_onnx, reuse_float_graph
    from haq.models import load_model
    from haq.models.layers import discover_layers
    from haq.quant import Quantizer, QuantSettings
    from haq.quant.settings import text_settings
    from haq.runtime.ort import make_session, random_feeds
    from haq.runtime.timing import latency_stats, time_interleaved

    lm = load_model("minilm", tokens=tokens)
    data = load_data("text", lm.preprocess, limit=CALIB + SENTENCES, seed=11).x
    calib, test = data[:CALIB], data[CALIB:]
    layers = discover_layers(lm.model, lm.example_input())
    with torch.no_grad():
        ref = predict(lm.model.eval(), test, 64)
    out: dict[str, Any] = {}
    timed: dict[str, tuple[Any, bytes]] = {}
    with reuse_float_graph():
        for group in GROUPS:
            for mapping in MAPPINGS:
                for ptq in ("none", "gptq"):
                    settings = replace(text_settings(QuantSettings(group_size=group, ptq=ptq)),
                                       weight_only_mapping=mapping)  # fmt: skip
                    q = Quantizer(lm.model, lm.example_input(), settings,
                                  calibration_images=calib if ptq != "none" else None)  # fmt: skip
                    cost = cost_model_for(TARGET, layers, threads=1, **settings.cost_options)
                    for bits in BITS:
                        if ptq == "gptq" and bits not in GPTQ_BITS:
                            continue
                        config = BitConfig.uniform(f"w{bits}a32", q.layer_names)
                        t0 = time.time()
                        learned = q.learn_roundings(config)
                        seconds = time.time() - t0
                        with torch.no_grad():
                            emb = predict(q.apply(config), test, 64)
                        m = embedding_metrics(emb, ref)
                        onnx_bytes, _ = export_onnx(q, config)
                        score = cost.score(config)
                        label = f"w{bits} g{group} {mapping[:4]} {ptq}"
                        out[label] = {
                            "bits": bits, "group": group, "mapping": mapping, "ptq": ptq,
                            "cosine": round(m.cosine, 5), "worst_cosine": round(m.cosine_min, 5),
                            "retrieval_top10_pct": m.retrieval, "size_mb": round(score.size_bytes / 1e6, 4),
                            "predicted_ms": round(score.latency_ms, 4), "roundings_learned": learned,
                            "learn_seconds": round(seconds, 1),
                            "ort_vs_sim_worst": round(ort_worst_cosine(onnx_bytes, test[:ORT_SENTENCES],
                                                                 emb[:ORT_SENTENCES]), 5),
                        }  # fmt: skip
                        print(tokens, label, out[label], flush=True)
                        if ptq == "none" and bits in TIMED_BITS:
                            timed[label] = (q, onnx_bytes)
        q0 = Quantizer(lm.model, lm.example_input(), text_settings(QuantSettings()))
        fp32, _ = export_onnx(q0, BitConfig.uniform("fp32", q0.layer_names))
    fp32_ms = cost_model_for(TARGET, layers, threads=1).score(
        BitConfig.uniform("fp32", q0.layer_names)
    )
    labels = ["fp32", *timed]
    sessions = [make_session(fp32, threads=1)] + [
        make_session(b, threads=1) for _, b in timed.values()
    ]
    feeds = random_feeds(sessions[0], 1)
    for sess in sessions:
        for _ in range(3):
            sess.run(None, feeds)
    print(f"{tokens} tokens: timing {len(sessions)} sessions interleaved", flush=True)
    times = time_interleaved(sessions, feeds, 10, 10, seed=tokens)
    measured = {label: round(latency_stats(t).best_round_median_ms, 4)
                for label, t in zip(labels, times, strict=True)}  # fmt: skip
    for label, ms in measured.items():
        if label in out:
            out[label]["measured_ms"] = ms
            out[label]["error_pct"] = round((out[label]["predicted_ms"] - ms) / ms * 100, 2)
    out["fp32"] = {"measured_ms": measured["fp32"], "predicted_ms": round(fp32_ms.latency_ms, 4),
                   "size_mb": round(fp32_ms.size_bytes / 1e6, 4)}  # fmt: skip
    return out


def main() -> None:
    result: dict[str, Any] = {"calibration_sentences": CALIB, "test_sentences": SENTENCES,
                              "target": TARGET}  # fmt: skip
    for t in TOKENS:
        result[f"tokens{t}"] = rows(t)
        save("text_weight_grids", result)


if __name__ == "__main__":
    main()
