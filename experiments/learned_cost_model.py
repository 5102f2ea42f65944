"""How well does the learned cost model predict a network it has never seen?

For each target with latency tables and a layer map (cpu-avx512, gpu-h100), fits
`haq.cost.LearnedCostModel` as `haq fit-cost-model` does and reads its leave-one-model-out
report: each named model's layer signatures held out of the tables (and of the probe networks'
rows where they are used) in turn, the held-out model's per-row MAPE, latency-weighted error, the work model's MAPE
alone (stage 1 without the trees) and the whole-network error of its uniform configs (what a
user of an unprofiled network feels). On cpu-avx512 also:

- the same fit with the probe networks' rows added (`haq fit-cost-model --probes`);
- the same fits on the layers' own kernel time (``kernel_us``: the layer's fused nodes, without
  the boundary nodes in front of it - quantize/dequantize, transposes, and model ops such as a
  squeeze-excite pool that belong to the graph around the layer, not to its signature);
- a floor for any predictor keyed on layer features: each held-out row whose exact signature,
  kernel class, thread count and activation another network (named or probe) also measured,
  predicted by that other measurement. The graph around a layer (what the boundary in front
  of it runs, cache state) changes its in-graph time, so even this "oracle" misses.

    python experiments/learned_cost_model.py [--targets cpu-avx512,gpu-h100] [--save]

``--save`` also writes the fitted models to cost_models/<target>/ (as `haq fit-cost-model`).
"""

from __future__ import annotations

import argparse
import statistics
import warnings
from pathlib import Path
from typing import Any

import pandas as pd

from haq.cost.learned_target import fit_target
from haq.hardware.ort.aggregation import spec_signature, uniform_class
from haq.hardware.ort.files import read_observations
from haq.hardware.ort.target import PROBES_DIR
from haq.hardware.profile import get_target

from common import ROOT, save

CPU_TABLES = ROOT / "hardware_profiles" / "cpu-avx512"


def _rows(directory: Path, kernel_only: bool) -> dict[tuple[Any, ...], dict[str, list[float]]]:
    """(signature, kernel, threads, act) -> model -> its rows' latency_us (kernel + same-class
    boundary in front + output boundary after the last layer; ``kernel_only``: kernel_us),
    from uniform configs."""
    per: dict[tuple[Any, ...], dict[str, list[float]]] = {}
    for ob in read_observations(directory):
        if uniform_class(ob["config"]) is None:
            continue
        s, n = ob["scale"], len(ob["layers"])
        bound = {b[0]: b[1] for b in ob["boundaries"]}
        for idx, _, k, med, *_ in ob["layers"]:
            row = (
                med
                if kernel_only
                else med + bound.get(idx, 0.0) + (bound.get(n, 0.0) if idx == n - 1 else 0.0)
            )
            sig = tuple(spec_signature(ob["specs"][idx], ob["batch"]).values())
            key = (sig, k, ob["threads"], ob["specs"][idx][-1])
            per.setdefault(key, {}).setdefault(ob["model"], []).append(row * s)
    return per


def oracle_floor(kernel_only: bool = False) -> dict[str, Any]:
    """Per named model: MAPE of predicting its rows by another network's measurement of the
    identical (signature, kernel class, threads, activation), where one exists."""
    per = _rows(CPU_TABLES, kernel_only)
    for key, models in _rows(CPU_TABLES / PROBES_DIR, kernel_only).items():
        per.setdefault(key, {}).update(models)
    errors: dict[str, list[float]] = {}
    for models in per.values():
        for name, own in models.items():
            if name.startswith("probe_"):
                continue
            family = "cifar" if name.startswith("cifar") else name  # 20 and 56 share layers
            others = [statistics.fmean(v) for m, v in models.items()
                      if not (m.startswith("cifar") and family == "cifar") and m != name]  # fmt: skip
            if others and statistics.fmean(own) > 0:
                truth = statistics.fmean(own)
                errors.setdefault(name, []).append(abs(statistics.fmean(others) - truth) / truth)
    return {
        name: {"rows": len(v), "mape": round(100 * statistics.fmean(v), 1),
               "median_ape": round(100 * statistics.median(v), 1)}
        for name, v in sorted(errors.items())
    }  # fmt: skip


def lomo(report: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in (report["leave_one_model_out"] or {})["per_model"].items() if v}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--targets", default="cpu-avx512,gpu-h100")
    ap.add_argument("--save", action="store_true")
    args = ap.parse_args()
    warnings.filterwarnings("ignore")
    out: dict[str, Any] = {}
    for target in args.targets.split(","):
        profile = get_target(target)
        model = fit_target(profile, save=args.save)
        r = model.report
        out[target] = {"rows": r["rows"],
                       "in_sample_mape": r["in_sample_mape"],
                       "leave_one_model_out": r["leave_one_model_out"]}  # fmt: skip
        print(f"{target}: {r['rows']} rows, in-sample {r['in_sample_mape']}%")
        variants: dict[str, dict[str, Any]] = {}
        if "probes" in profile.tables:
            variants["with probes"] = lomo(fit_target(profile, save=False, probes="all").report)
        if "kernel_us" in pd.read_csv(profile.tables["layers"], nrows=1):
            variants["kernel time"] = lomo(
                fit_target(profile, save=False, column="kernel_us").report
            )
            if "probes" in profile.tables:
                variants["kernel time with probes"] = lomo(
                    fit_target(profile, save=False, column="kernel_us", probes="all").report
                )
        for name, v in lomo(r).items():
            extra = "  ".join(f"{k}: {w[name]['mape']:5.1f}%" for k, w in variants.items())
            print(f"  held out {name:>20}: MAPE {v['mape']:5.1f}%  weighted {v['weighted_ape']:5.1f}%"
                  f"  work model alone {v['work_model_mape']:5.1f}%  whole network "
                  f"{v['network_ape'] if v['network_ape'] is not None else float('nan'):5.1f}%"
                  f"  ({v['rows']} rows)  {extra}")  # fmt: skip
        for k, w in variants.items():
            out[target][k] = {name: v["mape"] for name, v in w.items()}
    floor = {"row": oracle_floor(), "kernel time": oracle_floor(kernel_only=True)}
    print("another network's measurement of the identical row (signature, kernel, threads, act):")
    for name, v in floor["row"].items():
        k = floor["kernel time"].get(name, {})
        print(f"  {name:>20}: MAPE {v['mape']:5.1f}%  median {v['median_ape']:5.1f}%  "
              f"({v['rows']} rows); kernel time alone {k.get('mape', float('nan')):5.1f}%")  # fmt: skip
    out["oracle_floor_cpu_avx512"] = floor
    save("learned_cost_model", out)


if __name__ == "__main__":
    main()
