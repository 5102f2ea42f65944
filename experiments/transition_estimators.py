"""How well a boundary of a network the tables never saw is estimated from the other networks'
transition rows: the piecewise line through the mean per size (the estimator before
2026-12-07) against the robust line (`haq.cost.lookup.robust_line`, Theil-Sen).

Each table's networks are held out in turn (every row a held-out network contributed to,
shared rows included, leaves the training rows); its rows are then estimated from the rest of
its (from, to) pair at the same threads. ``--held-out DIR`` also scores a second table's rows
(a `--profile auto` overlay of networks the first table never profiled) against the first
one whole. Reported per network: sum |estimate - row| / sum row (``abs_pct``) and
sum (estimate - row) / sum row (``bias_pct``), over every row of every pair; what a
whole-network sum feels is the bias.

    python experiments/transition_estimators.py --tables hardware_profiles/cpu-avx512 \
        --out transition_estimators_shipped
    python experiments/transition_estimators.py --tables experiments/runs/amx/cpu-amx \
        --held-out experiments/runs/cost_model_validation_amx_rerun/overlay/cpu-amx \
        --out transition_estimators_amx
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from haq.cost.lookup import mean_line, robust_line

from common import machine, save

Estimator = Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray]


ESTIMATORS: dict[str, Estimator] = {"mean per size, piecewise": mean_line,  # the earlier one
                                    "robust line (Theil-Sen)": robust_line}  # fmt: skip
KEYS = ["from_kernel", "to_kernel", "threads", "batch"]


def read(path: Path) -> pd.DataFrame:
    t = pd.read_csv(path / "transitions.csv")
    reduced = t.get("reduced_elements", 0)
    return t.assign(size=(t["channels"] * t["h"] * t["w"] + reduced).astype(np.float64))


def score(train: pd.DataFrame, test: pd.DataFrame) -> dict[str, dict[str, float]]:
    sums = {k: np.zeros(3) for k in ESTIMATORS}
    for key, rows in test.groupby(KEYS):
        pool = train[(train[KEYS] == pd.Series(key, index=KEYS)).all(axis=1)]
        if pool.empty:
            continue
        xs, ys = pool["size"].to_numpy(), pool["latency_us"].to_numpy()
        true = rows["latency_us"].to_numpy()
        for name, estimate in ESTIMATORS.items():
            err = estimate(xs, ys, rows["size"].to_numpy()) - true
            sums[name] += [np.abs(err).sum(), err.sum(), true.sum()]
    return {name: {"abs_pct": round(100 * a / t, 1), "bias_pct": round(100 * b / t, 1)}
            for name, (a, b, t) in sums.items() if t > 0}  # fmt: skip


def networks_of(table: pd.DataFrame) -> pd.Series:
    return table["models"].astype(str).str.split(";")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--tables", required=True, help="a target's table folder (transitions.csv)")
    ap.add_argument("--held-out", default=None,
                    help="a second table folder of networks the first never profiled")  # fmt: skip
    ap.add_argument("--out", required=True, help="results name (experiments/results/NAME.json)")
    args = ap.parse_args()
    table = read(Path(args.tables))
    members = networks_of(table)
    per_network: dict[str, Any] = {}
    for net in sorted({m for ms in members for m in ms}):
        has = members.apply(lambda ms, n=net: n in ms)
        per_network[net] = score(table[~has], table[has])
    out: dict[str, Any] = {"machine": machine(), "tables": args.tables,
                           "leave_one_network_out": per_network}  # fmt: skip
    if args.held_out:
        other = read(Path(args.held_out))
        other_members = networks_of(other)
        out["held_out_tables"] = args.held_out
        out["held_out"] = {net: score(table, other[other_members.apply(lambda ms, n=net: ms == [n])])
                           for net in sorted({m for ms in other_members for m in ms})}  # fmt: skip
        out["held_out"]["all rows"] = score(table, other)
    for part in ("leave_one_network_out", "held_out"):
        for net, r in out.get(part, {}).items():
            cells = "  ".join(f"{k}: abs {v['abs_pct']:6.1f}% bias {v['bias_pct']:+6.1f}%"
                              for k, v in r.items())  # fmt: skip
            print(f"{part[:9]:9s} {net:22s} {cells}")
    wins = sum(r["robust line (Theil-Sen)"]["abs_pct"] < r["mean per size, piecewise"]["abs_pct"]
               for r in per_network.values() if len(r) == 2)  # fmt: skip
    out["robust_lower_abs_error"] = f"{wins} of {len(per_network)} networks held out"
    print(out["robust_lower_abs_error"])
    save(args.out, out)


if __name__ == "__main__":
    main()
