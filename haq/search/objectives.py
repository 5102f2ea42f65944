"""Objectives: what the front trades off, their directions and units.

Cost objectives come from the cheap cost model before any evaluation; accuracy objectives from
the evaluation. Hard budgets live in `haq.search.budgets`.
"""

from __future__ import annotations

from haq.cost.base import CostEstimate
from haq.errors import HaqError
from haq.evaluate.metrics import Metrics

DIRECTIONS = {
    "top1": "maximize",
    "fidelity": "maximize",  # top-1 agreement with the float model, for data-free runs
    "worst_class": "maximize",
    "cosine": "maximize",  # text models: mean cosine similarity of embeddings to the float model's
    "retrieval": "maximize",  # text models: top-10 neighbours kept (%)
    "latency": "minimize",
    "energy": "minimize",
    "size": "minimize",
    "bops": "minimize",
}
COST_OBJECTIVES = ("latency", "energy", "size", "bops")


def parse_objectives(text: str) -> list[str]:
    names = [t.strip() for t in text.split(",") if t.strip()]
    unknown = [n for n in names if n not in DIRECTIONS]
    if unknown or not names:
        raise HaqError(
            f"unknown objective(s) {unknown or text!r}; choose from {', '.join(DIRECTIONS)}"
        )
    if not any(n not in COST_OBJECTIVES for n in names):
        raise HaqError(
            "objectives need an accuracy term (top1, fidelity, worst_class; text models: "
            "cosine, retrieval) besides costs"
        )
    if len(set(names)) != len(names):
        raise HaqError(f"objective listed twice in {text!r}")
    return names


def cost_value(name: str, cost: CostEstimate) -> float | None:
    return {
        "latency": cost.latency_ms,
        "energy": cost.energy_mj,
        "size": cost.size_bytes / 1e6,
        "bops": cost.bops / 1e9,
    }[name]


# accuracy objective -> the `Metrics` field (and metrics-dict key) it reads
METRIC_KEYS = {"top1": "top1", "fidelity": "agreement", "worst_class": "worst_class_top1",
               "cosine": "cosine", "retrieval": "retrieval"}  # fmt: skip


def accuracy_value(name: str, m: Metrics) -> float | None:
    return getattr(m, METRIC_KEYS[name])


TEXT_OBJECTIVES = ("cosine", "retrieval")  # what an embedding model's evaluation measures


UNITS = {
    "top1": "%",
    "fidelity": "%",
    "worst_class": "%",
    "cosine": "",
    "retrieval": "%",
    "latency": "ms",
    "energy": "mJ",
    "size": "MB",
    "bops": "GBOPs",
}


def objective_values(names: list[str], cost: CostEstimate, m: Metrics) -> list[float]:
    """The objective vector of one evaluated config (NaN where a value is unknown)."""
    out = []
    for name in names:
        v = cost_value(name, cost) if name in COST_OBJECTIVES else accuracy_value(name, m)
        out.append(float("nan") if v is None else float(v))
    return out
