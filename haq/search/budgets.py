"""Hard budgets: cost budgets checked before evaluation (repair or reject), accuracy budgets
after (the trial is kept but infeasible, and drivers steer away from it).

Repair lowers bits step by step, largest layers first, until the cost budgets hold, as HAQ's
resource wall does; a config no lowering can fix is rejected without an evaluation.
"""

from __future__ import annotations

from dataclasses import dataclass

from haq.config import BitConfig, Precision
from haq.cost.base import CostEstimate, CostModel
from haq.errors import HaqError
from haq.evaluate.metrics import Metrics
from haq.search.space import SearchSpace


@dataclass(frozen=True)
class Budgets:
    max_latency_ms: float | None = None
    max_size_mb: float | None = None
    min_top1: float | None = None
    max_worst_class_drop: float | None = None

    @property
    def has_cost(self) -> bool:
        return self.max_latency_ms is not None or self.max_size_mb is not None

    @property
    def has_accuracy(self) -> bool:
        return self.min_top1 is not None or self.max_worst_class_drop is not None

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


def _bops(p: str | Precision) -> int:
    return Precision.parse(p).bops_factor()


class BudgetGuard:
    """Checks and repairs configs of one space against the cost budgets of one cost model."""

    def __init__(self, space: SearchSpace, cost_model: CostModel, budgets: Budgets) -> None:
        self.space = space
        self.cost_model = cost_model
        self.budgets = budgets
        macs = {s.name: s.macs for s in space.layers}
        self._order = sorted(
            space.variables(), key=lambda v: -sum(macs[n] for n in self._group(v[0]))
        )

    def _group(self, var: str) -> list[str]:
        return next(g for g in self.space.groups if g[0] == var)

    def cheapest(self) -> BitConfig:
        """Per variable, the choice with the fewest bits (a lower bound for cost budgets)."""
        return self.space.config({v: min(opts, key=_bops) for v, opts in self.space.variables()})

    def check_possible(self) -> None:
        """Fail before any search when even the cheapest config breaks a cost budget."""
        b = self.budgets
        if (b.max_latency_ms is not None and b.max_latency_ms <= 0) or (
            b.max_size_mb is not None and b.max_size_mb <= 0
        ):
            raise HaqError("cost budgets must be positive")
        cheapest = self.cost_model.score(self.cheapest())
        if b.max_latency_ms is not None and cheapest.latency_ms is None:
            raise HaqError("--max-latency-ms needs a --target with latency tables")
        if b.cost_violation(cheapest) > 0:
            got = (
                f"{cheapest.latency_ms:.3g} ms"
                if b.max_latency_ms is not None
                else f"{cheapest.size_bytes / 1e6:.3g} MB"
            )
            raise HaqError(
                f"impossible budget: even the cheapest config in the space costs {got}; raise the budget or widen --space"
            )

    def repair(self, config: BitConfig, cost: CostEstimate | None = None
               ) -> tuple[BitConfig, CostEstimate, bool] | None:  # fmt: skip
        """(config, cost, repaired) within the cost budgets, or None when no lowering helps."""
        cost = cost or self.cost_model.score(config)
        if self.budgets.cost_violation(cost) == 0:
            return config, cost, False
        layers = dict(config.items())
        for _ in range(sum(len(o) for _, o in self._order)):
            changed = False
            for var, opts in self._order:
                cur = _bops(layers[var])
                lower = sorted((o for o in opts if _bops(o) < cur), key=lambda s: -_bops(s))
                if not lower:
                    continue
                for name in self._group(var):
                    layers[name] = Precision.parse(lower[0])
                changed = True
                candidate = BitConfig(layers, ptq=config.ptq)
                cost = self.cost_model.score(candidate)
                if self.budgets.cost_violation(cost) == 0:
                    return candidate, cost, True
            if not changed:
                return None
        return None
