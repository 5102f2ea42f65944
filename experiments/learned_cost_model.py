"""How well does the learned cost model predict a network it has never seen?

For each target with latency tables and a layer map (cpu-avx512, gpu-h100), fits
`haq.cost.LearnedCostModel` with each model's layer signatures held out in turn and reports
the held-out model's per-row MAPE, latency-weighted error and the work model's MAPE alone
(stage 1 without the trees). Also measures how far the *same* signature's measured row differs
between two models of the cpu-avx512 tables (kernel time in each model's uniform config): a
floor for any predictor keyed on layer shapes alone, because the graph around a layer (fused
activations, residual adds) changes its in-graph time. And what a user of an unprofiled
network feels: per held-out model, kernel class and thread count, the sum of the predicted
rows over all its layers (a uniform config) against the sum of its measured rows.

    python experiments/learned_cost_model.py [--targets cpu-avx512,gpu-h100] [--save]

``--save`` also writes the fitted models to cost_models/<target>/ (as `haq fit-cost-model`).
"""

from __future__ import annotations

import argparse
import itertools
import statistics
import warnings

import numpy as np
import pandas as pd

from haq.cost.learned import LearnedCostModel, fit_target, with_activations
from haq.hardware import ort_profile as op
from haq.hardware.profile import get_target
from haq.hardware.tables import SHAPE_COLUMNS, read_table

from common import ROOT, save


def same_signature_spread() -> dict[str, object]:
    """Relative difference of one signature's kernel time between two profiled models."""
    obs = op.read_observations(ROOT / "hardware_profiles" / "cpu-avx512")
    per: dict[tuple, dict[str, list[float]]] = {}
    for ob in obs:
        if op._uniform_class(ob["config"]) is None:
            continue
        for idx, _, k, med, *_ in ob["layers"]:
            sig = tuple(op._spec_signature(ob["specs"][idx], ob["batch"]).values())
            per.setdefault((sig, k, ob["threads"]), {}).setdefault(ob["model"], []).append(
                med * ob["scale"]
            )
    pairs: dict[str, list[float]] = {}
    for models in per.values():
        for a, b in itertools.combinations(sorted(models), 2):
            if a.startswith("cifar") and b.startswith("cifar"):
                continue  # the same architecture family at other depths
            x, y = statistics.fmean(models[a]), statistics.fmean(models[b])
            pairs.setdefault(f"{a}/{b}", []).append(abs(x - y) / min(x, y))
    every = [v for vs in pairs.values() for v in vs]
    return {
        "pairs": {
            k: {"rows": len(v), "median_pct": round(100 * statistics.median(v), 1)}
            for k, v in sorted(pairs.items())
        },  # fmt: skip
        "all": {
            "rows": len(every),
            "median_pct": round(100 * statistics.median(every), 1),
            "mean_pct": round(100 * statistics.fmean(every), 1),
        },  # fmt: skip
    }


def whole_network_errors(target: str) -> dict[str, object]:
    """Per held-out model: |sum of predicted rows - sum of measured rows| / measured, over its
    layers (with multiplicity), for each kernel class x threads the tables hold for it."""
    profile = get_target(target)
    lmap = pd.read_csv(profile.tables["layer_map"])
    table = with_activations(read_table(profile.tables["layers"]), lmap)  # as fit_target does
    model = LearnedCostModel(target)
    frame = model._prepare(table, profile.threads[0])
    model.kernels = sorted(frame["precision"].astype(str).unique())
    model.acts = "act" in frame
    sig = SHAPE_COLUMNS
    out: dict[str, object] = {}
    for name, mask in sorted((model._membership(frame, lmap) or {}).items()):
        train, test = frame[~mask], frame[mask & (frame["batch"] == profile.batch)]
        test = test.assign(pred=model._predict_with(model._fit_frame(train), test))
        counts = lmap[lmap["model"] == name].groupby(sig).size().rename("count").reset_index()
        test = test.merge(counts, on=sig)
        errors = []
        for _, g in test.groupby(["precision", "threads"]):
            if g["count"].sum() == len(lmap[lmap["model"] == name]):  # every layer has a row
                true, pred = (g["latency_us"] * g["count"]).sum(), (g["pred"] * g["count"]).sum()
                errors.append(abs(pred - true) / true)
        if errors:
            out[name] = {"configs": len(errors), "mape_pct": round(100 * float(np.mean(errors)), 1)}
    return out


def without_activations(target: str) -> dict[str, float]:
    """Leave-one-model-out MAPE per model when the table's act column is not used."""
    profile = get_target(target)
    table = read_table(profile.tables["layers"])
    lmap = pd.read_csv(profile.tables["layer_map"])
    report = LearnedCostModel(target).fit(table, lmap)["leave_one_model_out"]
    per = {k: v["mape"] for k, v in report["per_model"].items() if v}
    print(f"  without the act feature: {per}")
    return per


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--targets", default="cpu-avx512,gpu-h100")
    ap.add_argument("--save", action="store_true")
    args = ap.parse_args()
    warnings.filterwarnings("ignore")
    out: dict[str, object] = {}
    for target in args.targets.split(","):
        model = fit_target(get_target(target), save=args.save)
        lomo = model.report["leave_one_model_out"]
        if model.acts:  # the same fit without the activation feature, for comparison
            out[f"{target} without act"] = without_activations(target)
        out[target] = {"rows": model.report["rows"],
                       "in_sample_mape": model.report["in_sample_mape"],
                       "leave_one_model_out": lomo}  # fmt: skip
        whole = whole_network_errors(target)
        out[target]["whole_network_uniform_configs"] = whole  # type: ignore[index]
        print(f"{target}: {model.report['rows']} rows, in-sample {model.report['in_sample_mape']}%")
        for name, v in (lomo or {}).get("per_model", {}).items():
            if v:
                w = whole.get(name, {})
                print(f"  held out {name:>20}: MAPE {v['mape']:6.1f}%  weighted {v['weighted_ape']:5.1f}%"
                      f"  work model alone {v['work_model_mape']:6.1f}%  ({v['rows']} rows)"
                      f"  whole network {w.get('mape_pct', float('nan')):5.1f}%")  # fmt: skip
    spread = same_signature_spread()
    print(f"same signature, two models (cpu-avx512): median {spread['all']['median_pct']}% "
          f"over {spread['all']['rows']} rows")  # fmt: skip
    out["same_signature_spread_cpu_avx512"] = spread
    save("learned_cost_model", out)


if __name__ == "__main__":
    main()
