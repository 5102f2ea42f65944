"""Which probe-network rows should join the learned model's fit? The rules against stored timings.

For the networks of a saved `cost_model_validation.py` run (their measured configs), the
lookup cost model with the learned model alone (no overlay), fitted on ``--tables`` under:

- ``none``: no probe rows;
- ``missing`` (`fit_target`'s default): probe rows of op kind x kernel class pairs no named
  network's row has (grouped convs beside dense tables);
- ``sparse``: probe rows of every op kind x kernel class x thread count with fewer than
  `SPARSE` named rows (the work model's minimum; Linear layers have about 5 per class).
  Tried 2026-12-08, not kept: it lives here only.

    python experiments/probe_rule_check.py --validation cost_model_validation_amx_s8 \\
        --tables experiments/runs/amx_probes/cpu-amx --out probe_rule_check_amx
    python experiments/probe_rule_check.py --validation cost_model_validation_profile_auto \\
        --out probe_rule_check_shipped      # the shipped tables and their 96 probes
"""

from __future__ import annotations

import argparse
import json
import tempfile
import warnings
from pathlib import Path
from typing import Any

import pandas as pd
from cost_model_validation import kendall_tau, mape, overlay_env, quantizer

import haq.cost.learned_target as learned_target
from haq.cost.learned_target import fit_target
from haq.cost.lookup import LookupCostModel
from haq.hardware.ort.files import profile_yaml_path
from haq.hardware.ort.target import class_config
from haq.hardware.profile import get_target, load_profile

from common import RESULTS, save

SPARSE = 8


def sparse_pairs(probes: pd.DataFrame, named: pd.DataFrame) -> pd.DataFrame | None:
    """Probe rows of kind x class x threads with fewer than `SPARSE` named rows."""
    key = ["kind", "precision", "threads"]
    counts = named.astype({"precision": str}).groupby(key).size()
    have = {k for k, n in counts.items() if n >= SPARSE}
    rows = probes.astype({"precision": str})[key].itertuples(index=False, name=None)
    keep = [k not in have for k in rows]
    return probes[keep].reset_index(drop=True) if any(keep) else None


def score(rows: list[dict[str, Any]], profile: Any, learned: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    preds: list[float] = []
    meases: list[float] = []
    for name in dict.fromkeys(r["model"] for r in rows):
        specs = quantizer(name).layers
        cm = LookupCostModel(profile, specs, threads=1, learned=learned, calibration=None)
        names = [s.name for s in specs]
        sel = [r for r in rows if r["model"] == name]
        pred = [cm.breakdown(class_config(names, r["kernels"]))["latency_ms"] for r in sel]
        meas = [r["best_round_median_ms"] for r in sel]
        preds += pred
        meases += meas
        out[name] = {"mape": round(mape(pred, meas), 1), "tau": round(kendall_tau(pred, meas), 2)}
    out["pooled_mape"] = round(mape(preds, meases), 1)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--validation", required=True, help="a saved cost_model_validation result")
    ap.add_argument(
        "--tables", default=None, help="tables of `haq profile --out` (default: shipped)"
    )
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    warnings.filterwarnings("ignore")
    rows = json.loads((RESULTS / f"{args.validation}.json").read_text())["rows"]
    profile = (
        load_profile(profile_yaml_path(Path(args.tables)))
        if args.tables
        else get_target("cpu-avx512")
    )
    result: dict[str, Any] = {"validation": args.validation, "tables": args.tables or "shipped",
                              "measured": "best round's median", "rules": {}}  # fmt: skip
    missing = learned_target._missing_pairs
    with tempfile.TemporaryDirectory() as empty, overlay_env(Path(empty)):
        for rule in ("none", "missing", "sparse"):
            learned_target._missing_pairs = sparse_pairs if rule == "sparse" else missing
            try:
                learned = fit_target(
                    profile, save=False, probes="none" if rule == "none" else "missing"
                )
            finally:
                learned_target._missing_pairs = missing
            result["rules"][rule] = {"probe_rows": learned.report["probe_rows"],
                                     **score(rows, profile, learned)}  # fmt: skip
            print(rule, result["rules"][rule])
    save(args.out, result)


if __name__ == "__main__":
    main()
