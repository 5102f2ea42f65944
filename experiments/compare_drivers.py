"""Every driver side by side: hypervolume against evaluations, on the same validation images.

Each (model, target, driver, seed) is one `haq search` (serial, 2 threads; 1,000 validation
images from the train folder, the same for every run since the subset is seeded; calibration
on 256 others) kept under experiments/runs/compare/ and resumed when interrupted, skipped
when finished. Hypervolume is measured in the plane (top-1 drop from the float model in
points, predicted latency as a fraction of uniform w8a8's) against the reference point
(10 points, 1.0), after each evaluation, and divided by the hypervolume of the reference
front (the non-dominated union of every run of that model and target). Budgets 50 and 100
are read as prefixes of the same run. The fronts' test top-1 (re-scored by each search on
--test-limit test images) is in each run's pareto.json.

    python experiments/compare_drivers.py [--pairs cifar_resnet20:npu-bitfusion-edge] \
        [--drivers hybrid,nsga2,...] [--seeds 0] [--budget 100] [--test-limit 1000]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from common import ROOT, require_shared, save

CHECKPOINTS = {"cifar_resnet20": "resnet20-12fca82f.th", "cifar_resnet56": "resnet56-4bfd9763.th"}
DRIVERS = "hybrid,nsga2,tpe,random,haq-ddpg,amp-greedy,hawq-ilp,zeroq-dp,ompq"
RUNS = ROOT / "experiments" / "runs" / "compare"
REF_POINT = (10.0, 1.0)


def _run(model: str, target: str, driver: str, seed: int, budget: int, test_limit: int,
         shared: Path) -> Path:  # fmt: skip
    out = RUNS / f"{model}-{target}-{driver}-s{seed}"
    if (out / "pareto.json").is_file():
        return out
    if (out / "run.json").is_file():
        cmd = ["haq", "search", "--resume", str(out), "--workers", "0"]
    else:
        cmd = ["haq", "search", "--model", model, "--weights", str(shared / "models" / CHECKPOINTS[model]),
               "--data", str(shared / "data/cifar10-jpeg/test"), "--calib-data", str(shared / "data/cifar10-jpeg/train"),
               "--target", target, "--driver", driver, "--seed", str(seed), "--budget", str(budget),
               "--workers", "0", "--test-limit", str(test_limit), "--out", str(out)]  # fmt: skip
    print("$", " ".join(cmd), file=sys.stderr, flush=True)
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    print(f"  {driver} seed {seed}: {time.perf_counter() - t0:.0f} s", file=sys.stderr, flush=True)
    return out


def _points(out: Path, w8_latency: float) -> tuple[np.ndarray, float]:
    """(per evaluated trial in order: drop, relative latency), and the float top-1."""
    run = json.loads((out / "run.json").read_text())
    float_top1 = run["float_val"]["top1"]
    t = pd.read_parquet(out / "trials.parquet").sort_values("trial")
    t = t[(t["state"] == "complete") & ~t["cached"].astype(bool)]
    pts = np.column_stack(
        [float_top1 - t["val_top1"].to_numpy(), t["latency_ms"].to_numpy() / w8_latency]
    )
    return pts, float_top1


def _hv(points: np.ndarray) -> float:
    from haq.pareto import hypervolume

    if not len(points):
        return 0.0
    return hypervolume(points, ["minimize", "minimize"], list(REF_POINT))


def _w8_latency(model: str, target: str) -> float:
    from haq import BitConfig
    from haq.cost import cost_model_for
    from haq.models import discover_layers, load_model

    lm = load_model(model, "none")
    layers = discover_layers(lm.model, lm.example_input())
    latency = (
        cost_model_for(target, layers)
        .score(BitConfig.uniform("w8a8", [s.name for s in layers]))
        .latency_ms
    )
    assert latency is not None
    return latency


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--pairs", default="cifar_resnet20:npu-bitfusion-edge")
    ap.add_argument("--drivers", default=DRIVERS)
    ap.add_argument("--seeds", default="0")
    ap.add_argument("--budget", type=int, default=100)
    ap.add_argument("--test-limit", type=int, default=1000)
    args = ap.parse_args()
    shared = require_shared()
    seeds = [int(s) for s in args.seeds.split(",")]
    drivers = args.drivers.split(",")
    results: dict[str, Any] = {}
    import warnings

    warnings.filterwarnings("ignore")
    for pair in args.pairs.split(","):
        model, target = pair.split(":")
        w8 = _w8_latency(model, target)
        runs = {(d, s): _run(model, target, d, s, args.budget, args.test_limit, shared)
                for d in drivers for s in seeds}  # fmt: skip
        pts = {key: _points(out, w8)[0] for key, out in runs.items()}
        union = np.vstack([p for p in pts.values() if len(p)])
        ref_hv = _hv(union)
        rows, curves = [], {}
        for d in drivers:
            per_seed = []
            for s in seeds:
                p = pts[(d, s)]
                curve = [_hv(p[: n + 1]) / ref_hv for n in range(len(p))]
                curves[f"{d}-s{s}"] = curve
                per_seed.append(curve)
            pareto = [json.loads((runs[(d, s)] / "pareto.json").read_text()) for s in seeds]

            def at(n: int, per_seed: list[list[float]] = per_seed) -> float | None:
                vals = [c[min(n, len(c)) - 1] for c in per_seed if c]
                return round(float(np.mean(vals)), 4) if vals else None

            rows.append({"driver": d, "hv_ratio_at_50": at(50), "hv_ratio_at_100": at(100),
                         "evaluations": int(np.mean([len(c) for c in per_seed])),
                         "wall_seconds": round(float(np.mean([p["wall_seconds"] for p in pareto])), 1)})  # fmt: skip
        results[pair] = {
            "reference_hv": ref_hv,
            "w8a8_latency_ms": w8,
            "rows": rows,
            "curves": curves,
        }
        print(
            f"\n{model} on {target} (seeds {args.seeds}, reference-front HV {ref_hv:.4f}):",
            file=sys.stderr,
        )
        for r in sorted(rows, key=lambda r: -(r["hv_ratio_at_100"] or 0)):
            print(f"  {r['driver']:>11}: HV/ref at 50 {r['hv_ratio_at_50']}, at 100 {r['hv_ratio_at_100']}, "
                  f"{r['evaluations']} evaluations, {r['wall_seconds']} s", file=sys.stderr)  # fmt: skip
    save("compare_drivers", {"budget": args.budget, "seeds": seeds, "ref_point": REF_POINT,
                             "test_limit": args.test_limit, "results": results})  # fmt: skip
    _plot(results)


def _plot(results: dict[str, Any]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(results), figsize=(5.5 * len(results), 3.8), squeeze=False)
    for ax, (pair, res) in zip(axes[0], results.items(), strict=True):
        for i, (name, curve) in enumerate(sorted(res["curves"].items())):
            ax.plot(range(1, len(curve) + 1), curve, label=name, color=f"C{i % 10}",
                    lw=2.2 if name.startswith("hybrid") else 1.0)  # fmt: skip
        ax.set_title(pair.replace(":", " on "), fontsize=10)
        ax.set_xlabel("evaluations")
        ax.set_ylabel("hypervolume / reference front's")
        ax.set_ylim(0.5, 1.01)
        ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    out = ROOT / "experiments" / "results" / "compare_drivers.png"
    fig.savefig(out, dpi=110)
    print(f"wrote {out.relative_to(ROOT)}", file=sys.stderr)


if __name__ == "__main__":
    main()
