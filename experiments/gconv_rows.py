"""Grouped convolutions with no grouped row to learn from: how far is each estimate off?

A target whose tables hold no grouped conv (the shipped cpu-avx512 ones) scores one on the
roofline, which runs far too fast for them (regnet_y_400mf 20-30 % low end to end). This
fits the learned model on the table networks only (``--train``: every model in the table but
the grouped ones) and predicts the measured grouped rows of the grouped networks in the same
tables (``--grouped``, profiled into a copy with `haq profile ... --out`) four ways:

- ``roofline``: what the cost model does today (`haq.cost.analytic`, peaks fitted to the rows);
- ``learned``: the learned model asked about the row as it is (it never saw ``gconv``, but its
  conv trees saw dense rows, groups 1, and depthwise ones, one channel per group);
- ``per_group``: ``groups`` x the learned model's dense conv of one group (in/groups ->
  out/groups channels), what a runtime that loops over groups runs;
- ``dense_equal``: the dense conv with the grouped one's MACs and shape but one group
  (in/groups input channels: the same MACs, output and weights);
- ``learned_probes``: the learned model fitted with the grouped rows of probe networks too
  (``--probes``: a tables folder whose probes/ `haq profile --probes` measured; the rows
  `fit_target`'s default ``probes="missing"`` lets in), as `haq fit-cost-model` fits it.

    python experiments/gconv_rows.py --tables experiments/runs/amx_gt/cpu-amx \
        --grouped resnext50_32x4d,regnet_y_400mf --probes experiments/runs/amx_probes/cpu-amx
"""

from __future__ import annotations

import argparse
import tempfile
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from cost_model_validation import overlay_env

from haq.cost.analytic import _row_work, fitted_peaks
from haq.cost.learned import LearnedCostModel, mape
from haq.cost.learned_target import _missing_pairs, _with_context
from haq.hardware.ort.files import profile_yaml_path
from haq.hardware.overlay import load_tables
from haq.hardware.profile import load_profile

from common import ROOT, save


def roofline(profile: Any, rows: pd.DataFrame, peaks: dict[str, float]) -> np.ndarray:
    ops, nbytes = _row_work(profile, rows)
    out = []
    for o, b, k in zip(ops, nbytes, rows["precision"].astype(str), strict=True):
        gops, over = peaks[f"{k}_gops"], peaks.get(f"{k}_overhead_us", 0.0)
        out.append(over + max(o / (gops * 1e3), b / (peaks["bandwidth_gbs"] * 1e3)))
    return np.array(out)


def one_group(rows: pd.DataFrame) -> pd.DataFrame:
    g = rows["groups"]
    return rows.assign(kind="conv", in_channels=rows["in_channels"] // g,
                       out_channels=rows["out_channels"] // g, groups=1)  # fmt: skip


def summary(pred: np.ndarray, true: np.ndarray) -> dict[str, float]:
    return {
        "mape": round(mape(pred, true), 1),
        "sum_ratio": round(float(pred.sum() / true.sum()), 3),
        "median_ratio": round(float(np.median(pred / true)), 3),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--tables", default=str(ROOT / "experiments/runs/amx_gt/cpu-amx"))
    ap.add_argument("--grouped", default="resnext50_32x4d,regnet_y_400mf")
    ap.add_argument("--probes", default=str(ROOT / "experiments/runs/amx_probes/cpu-amx"))
    ap.add_argument("--out", default="gconv_rows")
    args = ap.parse_args()
    warnings.filterwarnings("ignore")
    grouped = args.grouped.split(",")
    profile = load_profile(profile_yaml_path(Path(args.tables)))
    with tempfile.TemporaryDirectory() as empty, overlay_env(Path(empty)):
        tables = load_tables(profile)
    table = _with_context(tables.layers, tables.layer_map)
    train = table[~table["model"].isin(grouped)].reset_index(drop=True)
    test = table[table["model"].isin(grouped) & (table["kind"] == "gconv")].reset_index(drop=True)
    model = LearnedCostModel(profile.id)
    model.fit(train, threads=profile.threads[0])
    probe_dir = Path(args.probes) / "probes"
    probes = _missing_pairs(_with_context(pd.read_csv(probe_dir / "layers.csv"),
                                          pd.read_csv(probe_dir / "layer_map.csv")), train)  # fmt: skip
    with_probes = LearnedCostModel(profile.id)
    with_probes.fit(train, threads=profile.threads[0], extra=probes)
    peaks = {**fitted_peaks(profile, train, profile.threads[0]), **profile.peaks}
    # keep MACs: one group of in/g channels over out channels has the grouped conv's MACs
    dense_eq = test.assign(kind="conv", groups=1, in_channels=test["in_channels"] // test["groups"])
    preds = {
        "roofline": roofline(profile, test, peaks),
        "learned": model.predict_us(test),
        "per_group": model.predict_us(one_group(test)) * test["groups"].to_numpy(),
        "dense_equal": model.predict_us(dense_eq),
        "learned_probes": with_probes.predict_us(test),
    }
    true = test["latency_us"].to_numpy(np.float64)
    out: dict[str, Any] = {"tables": args.tables, "train_models": sorted(set(train["model"])),
                           "probes": args.probes, "probe_rows": 0 if probes is None else len(probes),
                           "probe_models": [] if probes is None else sorted(set(probes["model"])),
                           "rows": len(test), "by": {}}  # fmt: skip
    for (m, k), idx in test.groupby(["model", "precision"]).groups.items():
        i = np.asarray(list(idx))
        out["by"][f"{m}/{k}"] = {
            "rows": len(i), "measured_us": round(float(true[i].sum()), 1),
            **{name: summary(p[i], true[i]) for name, p in preds.items()},
        }  # fmt: skip
    out["all"] = {name: summary(p, true) for name, p in preds.items()}
    out["per_row"] = [
        {**{c: int(test.at[j, c]) for c in ["in_channels", "out_channels", "groups", "in_h",
                                            "stride_h"]},
         "model": test.at[j, "model"], "precision": test.at[j, "precision"],
         "measured_us": round(float(true[j]), 1),
         **{name: round(float(p[j]), 1) for name, p in preds.items()}}
        for j in range(len(test))
    ]  # fmt: skip
    save(args.out, out)
    for key, v in {**out["by"], "all": out["all"]}.items():
        print(key, {n: (v[n]["mape"], v[n]["sum_ratio"]) for n in preds})


if __name__ == "__main__":
    main()
