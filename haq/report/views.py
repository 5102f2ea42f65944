"""What the report's figures show, computed from a `Run` (plain tables, no plotting).

Each function answers one question: which trials are what (front, baseline, dominated,
infeasible, failed), how the front grew, what each front point runs per layer, which classes
lose most, how predictions compare with measurements.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from haq.config import BitConfig
from haq.pareto import hypervolume, non_dominated_mask
from haq.report.data import Run

FRONT, BASELINE, DOMINATED, INFEASIBLE, FAILED = (
    "front",
    "baseline",
    "dominated",
    "infeasible",
    "failed",
)


def trial_roles(run: Run) -> pd.Series:
    """One role per trial (a front point that is also a baseline counts as front)."""
    t = run.trials
    front = t["trial"].isin(run.front_trials)
    role = np.select(
        [front, t["label"].notna() & (t["state"] == "complete"),
         (t["state"] == "complete") & (t["status"] == "complete"), t["state"] == "complete"],
        [FRONT, BASELINE, DOMINATED, INFEASIBLE], default=FAILED,
    )  # fmt: skip
    return pd.Series(role, index=t.index)


def bits_text(config_json: str, order: list[str]) -> str:
    """Per-layer precisions in execution order, compact: ``w 8 4 4 f | a 8 8 4 f``."""
    cfg = BitConfig.from_dict(json.loads(config_json))
    w, a = [], []
    for name in order:
        p = cfg[name] if (name in cfg or cfg.default is not None) else None
        w.append("?" if p is None else "f" if p.w_bits is None else str(p.w_bits))
        a.append("?" if p is None else "f" if p.a_bits is None else str(p.a_bits))
    return f"w {' '.join(w)} | a {' '.join(a)}"


@dataclass(frozen=True)
class History:
    """Front size and hypervolume after each evaluation, on the search's fixed axes."""

    evaluations: list[int]
    hypervolume: list[float]
    front_size: list[int]


def history(
    run: Run, scale: list[float] | None = None, reference: list[float] | None = None
) -> History:
    """Replays the search's front (feasible, non-dominated, one per config) trial by trial;
    the last value equals pareto.json's hypervolume when the run's own axes are used."""
    own_scale, own_ref = run.axes_scale()
    sc = np.asarray(scale or own_scale, dtype=float)
    ref = np.asarray(reference or own_ref, dtype=float)
    dirs = list(run.objectives.values())
    cols = [f"obj_{n}" for n in run.objectives]
    t = run.trials.sort_values("trial")
    evaluated = t["val_top1"].notna() | t["val_agreement"].notna()
    counted = (evaluated & ~t["cached"].fillna(False).astype(bool)).cumsum().to_numpy()
    ok = ((t["state"] == "complete") & (t["status"] == "complete")).to_numpy()
    values = t[cols].to_numpy(dtype=float)
    hashes = t["config_hash"].to_numpy()
    evals, hvs, sizes = [], [], []
    for k in range(len(t)):
        keep = ok[: k + 1] & ~np.isnan(values[: k + 1]).any(axis=1)
        if not keep.any():
            continue
        pts = values[: k + 1][keep]
        mask = non_dominated_mask(pts, dirs)
        evals.append(int(counted[k]))
        hvs.append(float(hypervolume(pts[mask] / sc, dirs, ref)))
        sizes.append(len(set(hashes[: k + 1][keep][mask])))
    return History(evals, hvs, sizes)


@dataclass(frozen=True)
class ClassView:
    """Per-class accuracy of chosen front points beside the float model's."""

    split: str  # "test" or "validation": where the numbers come from
    classes: list[str]
    reference: list[float]  # the float model's per-class accuracy
    points: dict[str, list[float]]  # point name -> per-class accuracy
    shown: list[str]  # the points drawn by default (spread over the front)
    worst: tuple[str, str, float]  # (point, class, drop in points): the largest loss shown


def class_view(run: Run, shown_max: int = 4) -> ClassView | None:
    """Test per-class accuracy against the float model's on the same test images when the run
    has it (searches re-score the float model with the front), else validation."""
    p = run.pareto
    float_test = (p.get("float_test") or {}).get("per_class")
    tests = [(pt.get("test") or {}).get("per_class") for pt in p["points"]]
    if float_test and all(tests):
        split, ref, per = "test", float_test, tests
    else:
        split, ref = "validation", (p.get("float_val") or {}).get("per_class")
        per = [pt["val"].get("per_class") for pt in p["points"]]
    if not ref or not all(per):
        return None
    classes = list(ref)
    points = {
        pt["name"]: [float(d.get(c, np.nan)) for c in classes]
        for pt, d in zip(p["points"], per, strict=True)
    }
    order = sorted(
        p["points"],
        key=lambda pt: pt["objectives"][run.cost_objectives[0]] if run.cost_objectives else 0,
    )
    idx = sorted(
        set(np.linspace(0, len(order) - 1, min(shown_max, len(order))).round().astype(int))
    )
    shown = [order[i]["name"] for i in idx]
    reference = [float(ref[c]) for c in classes]
    worst = max(((n, c, reference[i] - points[n][i]) for n in shown for i, c in enumerate(classes)),
                key=lambda w: w[2])  # fmt: skip
    return ClassView(split, classes, reference, points, shown, worst)


@dataclass(frozen=True)
class Measured:
    """Front points whose latency was measured on the target's runtime, beside the prediction."""

    names: list[str]
    predicted_ms: list[float]
    measured_ms: list[float]
    summaries: list[str]
    dominated: list[bool]  # another measured config dominates it once latency is measured
    info: dict[str, Any]  # pareto.json's "measured": target, threads, statistic, mape_pct, ...


def measured_latency(run: Run) -> Measured | None:
    """Measurements a run holds: ``measured_latency_ms`` beside the prediction on its front
    points (`haq measure`), else a ``measured_latency_ms`` column of trials.parquet."""
    rows: dict[str, tuple[float, float, str, bool]] = {}
    for pt in run.pareto["points"]:
        m = pt.get("measured_latency_ms", pt["cost"].get("measured_latency_ms"))
        if m is not None and pt["cost"].get("latency_ms") is not None:
            rows[pt["name"]] = (float(pt["cost"]["latency_ms"]), float(m), pt["summary"],
                                bool(pt.get("dominated_when_measured")))  # fmt: skip
    t = run.trials
    if not rows and "measured_latency_ms" in t:
        for r in t[t["measured_latency_ms"].notna() & t["latency_ms"].notna()].itertuples():
            rows.setdefault(f"trial-{r.trial:04d}", (float(r.latency_ms),
                            float(r.measured_latency_ms), str(r.summary), False))  # fmt: skip
    if not rows:
        return None
    cols = list(zip(*rows.values(), strict=True))
    return Measured(list(rows), list(cols[0]), list(cols[1]), list(cols[2]), list(cols[3]),
                    dict(run.pareto.get("measured") or {}))  # fmt: skip


def heat_matrix(run: Run) -> tuple[list[str], list[str], list[list[Any]], list[list[Any]]]:
    """(point names by the first cost, layer labels, weight bits, activation bits); None = float."""
    pts = sorted(
        run.pareto["points"], key=lambda pt: [pt["objectives"][c] for c in run.cost_objectives]
    )
    order = run.layer_order
    w = [[None] * len(pts) for _ in order]
    a = [[None] * len(pts) for _ in order]
    for j, pt in enumerate(pts):
        cfg = BitConfig.from_dict(pt["config"])
        for i, name in enumerate(order):
            p = cfg[name]
            w[i][j], a[i][j] = p.w_bits, p.a_bits
    return [pt["name"] for pt in pts], layer_labels(run), w, a


def layer_labels(run: Run) -> list[str]:
    """``3 layer1.0.conv1 · conv · 4.7M MACs``; kind and MACs where the run has its layer table."""
    if run.layers is None:
        return [f"{i} {n}" for i, n in enumerate(run.layer_order)]
    rows = run.layers.sort_values("index")
    return [f"{r.index} {r.name} · {r.kind} · {_si(r.macs)} MACs" for r in rows.itertuples()]


def _si(n: float) -> str:
    for div, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if n >= div:
            return f"{n / div:.3g}{suffix}"
    return f"{n:.0f}"
