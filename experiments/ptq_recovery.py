"""How much accuracy each PTQ method recovers at uniform bit widths, and what it costs.

For each model x method x uniform config: top-1 on the full test split, the time the method
took (CLE at construction, AdaRound per weight bit width, learned on 256 calibration images
held out of the train folder), and the ONNX Runtime top-1 of the refined export. Then the
cache check: a second quantizer with the same model and images learns nothing.

    python experiments/ptq_recovery.py [--models cifar_resnet20,cifar_resnet56,digits_cnn]
    python experiments/ptq_recovery.py --search     # the three 100-trial searches + QAT

``--search``: cifar_resnet20 on npu-bitfusion-edge, default driver, 100 trials, with
``--ptq none``, with ``--ptq none,adaround`` (the driver refines the candidates it picks: the
hybrid its front configs; roundings counted from a cold cache of that run's own) and with
``--ptq adaround`` (every candidate); hypervolume (top-1 drop in points x latency / w8a8's,
reference (10, 1)) of each run's validation trials and of its front re-scored on the test
images, wall time and AdaRound roundings learned. Then
`haq finetune` (2 epochs of the train folder) of the fastest front point of the run without
PTQ; then a second 3-trial `--ptq adaround` search of the same model and images (the rounding
cache check: it should learn nothing).

Resumable: rows already in experiments/results/ptq_recovery.json are kept. The AdaRound cache
lives in experiments/runs/ptq_recovery/cache (emptied on a fresh start, so times are cold).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import time
from pathlib import Path
from typing import Any

from common import RESULTS, ROOT, SHARED, save

CONFIGS = ["w8a8", "w6a8", "w4a8", "w3a8", "w4a4"]
METHODS = ["none", "bias-correction", "cle", "adaround", "cle+adaround", "adaround+bias-correction"]
CACHE = ROOT / "experiments" / "runs" / "ptq_recovery" / "cache"
ORT_BATCH = 50


def _sources(model: str) -> tuple[str, str, str]:
    """(weights, test data, calibration data) of a model."""
    if model == "digits_cnn":
        return "default", "digits", "digits:calib"
    ckpt = {"cifar_resnet20": "resnet20-12fca82f.th", "cifar_resnet56": "resnet56-4bfd9763.th"}[
        model
    ]
    return (
        str(SHARED / "models" / ckpt),
        str(SHARED / "data/cifar10-jpeg/test"),
        str(SHARED / "data/cifar10-jpeg/train"),
    )


def _run_model(
    model: str, rows: list[dict[str, Any]], ort_check: set[str], methods: list[str]
) -> None:
    import torch

    from haq.evaluate import build_setup
    from haq.evaluate.evaluator import LocalEvaluator
    from haq.export.onnx_export import export_onnx
    from haq.quant import Quantizer, QuantSettings
    from haq.runtime.ort import ort_logits

    weights, data, calib = _sources(model)
    done = {(r["model"], r["method"], r["config"]) for r in rows if "method" in r}
    setup = build_setup(model, weights, data, calib)  # full test split, 256 calibration images
    loaded, images = setup.loaded, setup.calib
    assert images is not None and setup.data.y is not None
    fp32 = setup.evaluator.evaluate("fp32").metrics.top1
    print(f"{model}: fp32 {fp32:.2f}% on {len(setup.data)} test images", flush=True)
    for method in methods:
        if all((model, method, c) in done for c in CONFIGS):
            continue
        start = time.perf_counter()
        q = Quantizer(
            loaded.model,
            loaded.example_input(),
            QuantSettings(ptq=method),
            calibration_images=images.x,
        )
        setup_s = time.perf_counter() - start
        evaluator = LocalEvaluator(q, setup.data, reuse_prefixes=False)
        for config in CONFIGS:
            if (model, method, config) in done:
                continue
            start = time.perf_counter()
            learned = q.learn_roundings(config)
            learn_s = time.perf_counter() - start
            top1 = evaluator.evaluate(config).metrics.top1
            row = {"model": model, "method": method, "config": config, "fp32_top1": fp32, "top1": top1,
                   "drop": round(fp32 - top1, 2), "setup_seconds": round(setup_s, 2),
                   "roundings_learned": learned, "rounding_seconds": round(learn_s, 2),
                   "test_images": len(setup.data)}  # fmt: skip
            if f"{method}:{config}" in ort_check:
                onnx = export_onnx(q, config, batch=ORT_BATCH)[0]
                logits = ort_logits(onnx, setup.data.x, ORT_BATCH, threads=torch.get_num_threads())
                row["ort_top1"] = float((logits.argmax(1) == setup.data.y).float().mean()) * 100
            rows.append(row)
            print(f"  {method:<26} {config}: {top1:.2f}% (drop {row['drop']:.2f})"
                  + (f", ORT {row['ort_top1']:.2f}%" if "ort_top1" in row else "")
                  + (f", {learned} roundings in {learn_s:.1f} s" if learned else ""), flush=True)  # fmt: skip
            save("ptq_recovery", {"rows": rows, "configs": CONFIGS, "methods": METHODS})
    if any(r["model"] == model and r.get("second_quantizer") for r in rows):
        return
    start = time.perf_counter()
    again = Quantizer(
        loaded.model,
        loaded.example_input(),
        QuantSettings(ptq="adaround"),
        calibration_images=images.x,
    )
    relearned = sum(again.learn_roundings(c) for c in CONFIGS)
    rows.append({"model": model, "second_quantizer": True, "roundings_learned": relearned,
                 "seconds": round(time.perf_counter() - start, 2)})  # fmt: skip
    print(f"  second quantizer, same model and images: {relearned} roundings learned", flush=True)
    save("ptq_recovery", {"rows": rows, "configs": CONFIGS, "methods": METHODS})


def _front_figures(pareto: dict[str, Any], w8_latency: float) -> dict[str, Any]:
    """On the test split: the fastest front point within 0.5 / 1 point of uniform w8a8's top-1
    (speed-up over w8a8, its top-1) and the fastest front point of all."""
    w8_test = pareto["baselines"]["w8a8"]["test"]["top1"]
    pts = [(p["cost"]["latency_ms"], p["test"]["top1"]) for p in pareto["points"] if p["test"]]
    out: dict[str, Any] = {"w8a8_test_top1": w8_test}
    for d in (0.5, 1.0):
        ok = [(lat, top1) for lat, top1 in pts if top1 >= w8_test - d]
        lat, top1 = min(ok) if ok else (None, None)
        out[f"within_{d}"] = {"speedup": w8_latency / lat if lat else None, "test_top1": top1}
    lat, top1 = min(pts)
    out["fastest"] = {"latency_vs_w8a8": lat / w8_latency, "test_top1": top1}
    return out


def _search_stage(budget: int, test_limit: int, epochs: float) -> None:
    import subprocess
    import sys

    import pandas as pd
    from compare_drivers import _float_test, _hv, _points, _test_points, _w8_latency

    model, target = "cifar_resnet20", "npu-bitfusion-edge"
    weights, data, calib = _sources(model)
    runs = ROOT / "experiments" / "runs" / "ptq_recovery"
    w8 = _w8_latency(model, target)
    float_test = _float_test(model, test_limit, SHARED)
    out: dict[str, Any] = {
        "model": model,
        "target": target,
        "budget": budget,
        "test_limit": test_limit,
    }
    for ptq in ("none", "none,adaround", "adaround"):
        run = runs / f"search-{ptq.replace(',', '-')}"
        env = dict(os.environ)
        if "," in ptq:  # its own cache, cold: the roundings it learned are counted
            env["HAQ_CACHE_DIR"] = str(runs / "cache-per-candidate")
        if not (run / "pareto.json").is_file():
            resume = ["--resume", str(run)] if (run / "run.json").is_file() else [
                "--model", model, "--weights", weights, "--data", data, "--calib-data", calib, "--target", target,
                "--budget", str(budget), "--ptq", ptq, "--out", str(run),
                *(["--test-limit", str(test_limit)] if test_limit else [])]  # fmt: skip
            start = time.perf_counter()
            subprocess.run(["haq", "search", *resume, "--workers", "0", "-q"], check=True,
                           stdout=subprocess.DEVNULL, env=env)  # fmt: skip
            print(
                f"search --ptq {ptq}: {time.perf_counter() - start:.0f} s",
                file=sys.stderr,
                flush=True,
            )
        pareto = json.loads((run / "pareto.json").read_text())
        float_val = json.loads((run / "run.json").read_text())["float_val"]["top1"]
        frame = pd.read_parquet(run / "trials.parquet").assign(float_val_top1=float_val)
        out[ptq] = {"hv_val": _hv(_points(frame, w8)), "hv_test": _hv(_test_points(frame, w8, float_test)),
                    "front": len(pareto["points"]), "wall_seconds": pareto.get("wall_seconds"),
                    "refined_trials": int((frame["source"] == "refine").sum()),
                    "refined_front_points": sum(1 for p in pareto["points"] if p["config"].get("ptq"))}  # fmt: skip
        out[ptq].update(_front_figures(pareto, w8))
        if "," in ptq:
            out[ptq]["roundings_learned"] = len(
                list(Path(env["HAQ_CACHE_DIR"]).glob("adaround/*/*.pt"))
            )
        print(
            f"  --ptq {ptq}: HV val {out[ptq]['hv_val']:.3f}, test {out[ptq]['hv_test']:.3f}, "
            f"{out[ptq]['wall_seconds']} s, {out[ptq].get('roundings_learned', '-')} roundings learned",
            flush=True,
        )
    run = runs / "search-none"
    points = sorted(
        json.loads((run / "pareto.json").read_text())["points"],
        key=lambda p: p["cost"]["latency_ms"],
    )
    fastest = points[0]["name"]
    entries = (
        json.loads((run / "finetuned.json").read_text())
        if (run / "finetuned.json").is_file()
        else {}
    )
    if fastest not in entries:
        subprocess.run(["haq", "finetune", str(run), "--points", fastest, "--epochs", str(epochs),
                        "--threads", "2"], check=True, env=os.environ)  # fmt: skip
        entries = json.loads((run / "finetuned.json").read_text())
    e = entries[fastest]
    out["qat"] = {**e, "float_test_top1": float_test,
                  "recovered": (e["after_top1"] - e["before_top1"]) / max(float_test - e["before_top1"], 1e-9)}  # fmt: skip
    print(f"  QAT {fastest} ({e['summary']}): {e['before_top1']:.2f} -> {e['after_top1']:.2f}% (float "
          f"{float_test:.2f}), ORT {e['ort_top1']:.2f}%, {e['seconds']:.0f} s", flush=True)  # fmt: skip
    again = runs / "search-adaround-again"  # the cache check: a second search pays no rounding
    if again.exists():
        shutil.rmtree(again)
    start = time.perf_counter()
    proc = subprocess.run(["haq", "search", "--model", model, "--weights", weights, "--data", data,
                           "--calib-data", calib, "--target", target, "--budget", "3", "--ptq", "adaround",
                           "--workers", "0", "--test-limit", "500", "--out", str(again)],
                          check=True, capture_output=True, text=True, env=os.environ)  # fmt: skip
    lines = [ln for ln in proc.stderr.splitlines() if ln.startswith("adaround:")]
    out["second_search"] = {"budget": 3, "seconds": round(time.perf_counter() - start, 1),
                            "adaround_lines": lines,
                            "learned_any": any("learning" in ln for ln in lines)}  # fmt: skip
    print(
        f"  second --ptq adaround search: {lines} in {out['second_search']['seconds']} s",
        flush=True,
    )
    save("ptq_search", out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--models", default="cifar_resnet20,cifar_resnet56,digits_cnn")
    ap.add_argument(
        "--methods", default=",".join(METHODS), help="PTQ methods to run (default: all)"
    )
    ap.add_argument("--ort", default="adaround:w4a8,cle+adaround:w4a8,adaround:w3a8,adaround+bias-correction:w4a8",
                    help="method:config pairs also exported and scored in ONNX Runtime")  # fmt: skip
    ap.add_argument("--search", action="store_true", help="run the search + QAT stage instead")
    ap.add_argument("--budget", type=int, default=100)
    ap.add_argument(
        "--test-limit", type=int, default=None, help="front re-scoring images (default: all)"
    )
    ap.add_argument("--epochs", type=float, default=2.0)
    args = ap.parse_args()
    if args.search:
        os.environ["HAQ_CACHE_DIR"] = str(CACHE)
        _search_stage(args.budget, args.test_limit, args.epochs)
        return
    path = RESULTS / "ptq_recovery.json"
    rows = json.loads(path.read_text())["rows"] if path.is_file() else []
    if not rows and CACHE.exists():
        shutil.rmtree(CACHE)
    os.environ["HAQ_CACHE_DIR"] = str(CACHE)
    for model in args.models.split(","):
        _run_model(model, rows, set(args.ort.split(",")), args.methods.split(","))


if __name__ == "__main__":
    main()
