"""Search quality of the default driver: does `haq search --budget 100` beat uniform quantization?

For each (model, target) pair it runs the product's default command (default driver, default
workers; validation on 1,000 train-folder images, calibration on 256 others, the front and the
uniform baselines re-scored on the full 10,000-image test split) and reports:

* npu-bitfusion-edge: the largest predicted speed-up over uniform w8a8 among mixed front
  points whose test top-1 is at most 0.5 points below w8a8's (and at 1 point);
* gpu-t4: whether a mixed point strictly between W4A4 and W8A8 in latency lies above the
  straight line between them (test top-1 against latency). W4A4 means every conv at w4a4 and
  the classifier at w4a8 (the space keeps Linear layers at 8-bit activations, as HAWQ-V3
  does); it is evaluated here when the search did not.

Runs are kept under experiments/runs/ and resumed when interrupted (`haq search --resume`).
Needs ../shared.

    python experiments/search_quality.py [--pairs cifar_resnet20:npu-bitfusion-edge,...]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from common import ROOT, require_shared, save

CHECKPOINTS = {"cifar_resnet20": "resnet20-12fca82f.th", "cifar_resnet56": "resnet56-4bfd9763.th"}
DEFAULT_PAIRS = ("cifar_resnet20:npu-bitfusion-edge,cifar_resnet56:npu-bitfusion-edge,"
                 "cifar_resnet20:gpu-t4")  # fmt: skip
RUNS = ROOT / "experiments" / "runs"


def _run(model: str, target: str, budget: int, shared: Path) -> tuple[Path, float]:
    out = RUNS / f"search_quality-{model}-{target}-{budget}"
    if (out / "pareto.json").is_file():
        return out, json.loads((out / "pareto.json").read_text()).get("wall_seconds", float("nan"))
    if (out / "run.json").is_file():
        cmd = ["haq", "search", "--resume", str(out)]
    else:
        cmd = ["haq", "search", "--model", model, "--weights", str(shared / "models" / CHECKPOINTS[model]),
               "--data", str(shared / "data/cifar10-jpeg/test"),
               "--calib-data", str(shared / "data/cifar10-jpeg/train"),
               "--target", target, "--budget", str(budget), "--out", str(out)]  # fmt: skip
    print("$", " ".join(cmd), file=sys.stderr, flush=True)
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True)
    return out, time.perf_counter() - t0


def _uniform_w4a4_test(model: str, target: str, shared: Path) -> tuple[float, float]:
    """(test top-1, predicted latency) of convs at w4a4 with the classifier at w4a8."""
    from haq import BitConfig
    from haq.cost import cost_model_for
    from haq.evaluate import build_setup

    setup = build_setup(model, str(shared / "models" / CHECKPOINTS[model]),
                        str(shared / "data/cifar10-jpeg/test"), str(shared / "data/cifar10-jpeg/train"),
                        calib_limit=256)  # fmt: skip
    layers = setup.quantizer.layers
    cfg = BitConfig({s.name: ("w4a8" if s.kind == "linear" else "w4a4") for s in layers})
    top1 = setup.evaluator.evaluate(cfg).metrics.top1
    latency = cost_model_for(target, layers).score(cfg).latency_ms
    assert top1 is not None and latency is not None
    return top1, latency


def _analyse(out: Path, model: str, target: str, shared: Path) -> dict[str, Any]:
    pareto = json.loads((out / "pareto.json").read_text())
    base = pareto["baselines"]
    w8 = base["w8a8"]
    w8_test, w8_lat = w8["test"]["top1"], w8["cost"]["latency_ms"]
    mixed = [p for p in pareto["points"] if p["baseline"] is None and p["test"]]
    rows = [{"name": p["name"], "summary": p["summary"], "source": p["source"],
             "val_top1": p["val"]["top1"], "test_top1": p["test"]["top1"],
             "test_drop_vs_w8a8": round(w8_test - p["test"]["top1"], 2),
             "latency_ms": p["cost"]["latency_ms"],
             "speedup_vs_w8a8": round(w8_lat / p["cost"]["latency_ms"], 3)} for p in mixed]  # fmt: skip

    def best(drop: float) -> dict[str, Any] | None:
        ok = [r for r in rows if r["test_drop_vs_w8a8"] <= drop]
        return max(ok, key=lambda r: r["speedup_vs_w8a8"]) if ok else None

    result: dict[str, Any] = {
        "model": model, "target": target, "run": str(out.relative_to(ROOT)),
        "trials": pareto["trials"], "evaluations": pareto["evaluations"],
        "evaluations_by_source": pareto["evaluations_by_source"], "sensitivity": pareto["sensitivity"],
        "wall_seconds": pareto["wall_seconds"], "w8a8": {"test_top1": w8_test, "latency_ms": w8_lat},
        "best_within_0.5": best(0.5), "best_within_1.0": best(1.0), "front": rows,
        "baselines": {label: {"summary": b["summary"], "test_top1": (b["test"] or {}).get("top1"),
                              "latency_ms": b["cost"]["latency_ms"]} for label, b in base.items()},
    }  # fmt: skip
    if target == "gpu-t4":
        w4_test, w4_lat = _uniform_w4a4_test(model, target, shared)
        between = []
        for r in rows:
            if w4_lat < r["latency_ms"] < w8_lat:
                line = w4_test + (w8_test - w4_test) * (r["latency_ms"] - w4_lat) / (
                    w8_lat - w4_lat
                )
                between.append(
                    {**r, "line_top1": round(line, 2), "above_line": r["test_top1"] > line}
                )
        result["w4a4"] = {"test_top1": w4_test, "latency_ms": w4_lat}
        result["between_w4a4_w8a8"] = between
        result["dominates_line"] = any(b["above_line"] for b in between)
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--pairs", default=DEFAULT_PAIRS, help="model:target,...")
    ap.add_argument("--budget", type=int, default=100)
    args = ap.parse_args()
    shared = require_shared()
    results = []
    for pair in args.pairs.split(","):
        model, target = pair.split(":")
        out, wall = _run(model, target, args.budget, shared)
        res = _analyse(out, model, target, shared)
        results.append(res)
        b5, b10 = res["best_within_0.5"], res["best_within_1.0"]
        print(f"{model} on {target}: w8a8 test {res['w8a8']['test_top1']:.2f} %; best mixed within 0.5 "
              f"points: {b5 and b5['speedup_vs_w8a8']}x ({b5 and b5['test_top1']} %), within 1 point: "
              f"{b10 and b10['speedup_vs_w8a8']}x; {res['evaluations']} evaluations, {wall:.0f} s",
              file=sys.stderr)  # fmt: skip
        if "dominates_line" in res:
            print(
                f"  gpu-t4: a mixed point above the W4A4-W8A8 line: {res['dominates_line']}",
                file=sys.stderr,
            )
    save("search_quality", {"budget": args.budget, "results": results})
    _plot(results)


def _plot(results: list[dict[str, Any]]) -> None:
    """Test top-1 against predicted latency (relative to w8a8) of each run's front."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(results), figsize=(4.6 * len(results), 3.6), squeeze=False)
    for ax, res in zip(axes[0], results, strict=True):
        w8 = res["w8a8"]
        front = sorted(res["front"], key=lambda r: r["latency_ms"])
        ax.plot([r["latency_ms"] / w8["latency_ms"] for r in front], [r["test_top1"] for r in front],
                "o-", ms=4, color="C3", label="haq front (mixed)")  # fmt: skip
        for label, b in res["baselines"].items():
            if b["test_top1"] is not None:
                color = {"w8a8": "k", "fp32": "C1"}.get(label, "C7" if "uniform" in label else "C2")
                ax.plot([b["latency_ms"] / w8["latency_ms"]], [b["test_top1"]], "s", ms=5,
                        color=color, label=label)  # fmt: skip
        if "w4a4" in res:
            w4 = res["w4a4"]
            ax.plot([w4["latency_ms"] / w8["latency_ms"]], [w4["test_top1"]], "^", color="C0",
                    label="uniform W4A4")  # fmt: skip
        ax.axhline(w8["test_top1"] - 0.5, color="grey", lw=0.8, ls="--", label="w8a8 - 0.5 points")
        ax.set_title(f"{res['model']} on {res['target']}", fontsize=10)
        ax.set_xlabel("predicted latency / uniform w8a8")
        ax.set_ylabel("test top-1 (%)")
        low = min(w8["test_top1"] - 6, res.get("w4a4", {}).get("test_top1", 100.0) - 1)
        ax.set_ylim(low, w8["test_top1"] + 1.5)
        ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    out = ROOT / "experiments" / "results" / "search_quality.png"
    fig.savefig(out, dpi=110)
    print(f"wrote {out.relative_to(ROOT)}", file=sys.stderr)


if __name__ == "__main__":
    main()
