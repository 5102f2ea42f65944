"""Objectives (what the front trades off) and constraints (hard budgets).

Cost objectives come from the cheap cost model before any evaluation; accuracy objectives from
the evaluation. Budgets on cost are checked before evaluating (repair or reject); budgets on
accuracy after (the trial is recorded as infeasible and drivers steer away from it).
"""

from __future__ import annotations

from dataclasses import dataclass

from haq.cost.base import CostEstimate
from haq.errors import HaqError
from haq.evaluate.metrics import Metrics

DIRECTIONS = {
    "top1": "maximize",
    "fidelity": "maximize",  # top-1 agreement with the float model, for data-free runs
    "worst_class": "maximize",
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
            "objectives need an accuracy term (top1, fidelity or worst_class) besides costs"
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


def accuracy_value(name: str, m: Metrics) -> float | None:
    return {"top1": m.top1, "fidelity": m.agreement, "worst_class": m.worst_class_top1}[name]


UNITS = {
    "top1": "%",
    "fidelity": "%",
    "worst_class": "%",
    "latency": "ms",
    "energy": "mJ",
    "size": "MB",
    "bops": "GBOPs",
}


@dataclass(frozen=True)
class Budgets:
    max_latency_ms: float | None = None
    max_size_mb: float | None = None
    min_top1: float | None = None
    max_worst_class_drop: float | None = None

    def cost_violation(self, cost: CostEstimate) -> float:
        """How far over the cost budgets (0 = feasible), in relative units."""
        over = 0.0
        if self.max_latency_ms is not None and cost.latency_ms is not None:
            over += max(0.0, cost.latency_ms / self.max_latency_ms - 1.0)
        if self.max_size_mb is not None:
            over += max(0.0, cost.size_bytes / 1e6 / self.max_size_mb - 1.0)
        return over

    def accuracy_constraints(self, m: Metrics, float_worst: float | None) -> list[float]:
        """Optuna-style constraint values (<= 0 feasible) for the accuracy budgets."""
        out = []
        if self.min_top1 is not None:
            out.append(self.min_top1 - (m.top1 if m.top1 is not None else m.agreement or 0.0))
        if (
            self.max_worst_class_drop is not None
            and float_worst is not None
            and m.worst_class_top1 is not None
        ):
            out.append((float_worst - m.worst_class_top1) - self.max_worst_class_drop)
        return out
