"""What the ILP-based drivers share: marginal per-layer costs and one integer program.

Costs are marginal to a reference config (each variable changed alone), so the program sees
the target's own per-layer kernel speeds; the loop still scores every proposal exactly.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from haq.config import BitConfig, Precision
from haq.cost.base import CostModel
from haq.search.budgets import Budgets
from haq.search.objectives import cost_value
from haq.search.sensitivity import with_choice
from haq.search.space import SearchSpace

Pair = tuple[str, str]


def bits(choice: str) -> tuple[int, int]:
    p = Precision.parse(choice)
    return (p.w_bits or 32, p.a_bits or 32)


class MarginalCosts:
    """Per (variable, choice): the change of each cost dimension from ``reference``."""

    def __init__(self, space: SearchSpace, cost_model: CostModel, reference: BitConfig,
                 dims: Sequence[str]) -> None:  # fmt: skip
        self.space = space
        self.cost_model = cost_model
        self.reference = reference
        self.dims = list(dims) or ["bops"]
        self.base = self.vector(reference)
        self.delta: dict[Pair, np.ndarray] = {}
        for var, opts in space.variables():
            for o in opts:
                self.delta[(var, o)] = (
                    self.vector(with_choice(space, reference, var, o)) - self.base
                )

    def vector(self, config: BitConfig) -> np.ndarray:
        est = self.cost_model.score(config)
        return np.array([cost_value(d, est) or 0.0 for d in self.dims], dtype=float)

    def undominated(self, var: str, opts: Sequence[str]) -> list[str]:
        """Drop a choice when another one has at least its bits and costs no more: no speed
        is credited for bits the target does not exploit (the reference choice stays)."""
        keep = []
        for o in opts:
            wo, ao = bits(o)
            beaten = any(
                q != o and bits(q)[0] >= wo and bits(q)[1] >= ao
                and bool(np.all(self.delta[(var, q)] <= self.delta[(var, o)] + 1e-12))
                for q in opts
            )  # fmt: skip
            if not beaten or o == str(self.reference[var]):
                keep.append(o)
        return keep

    def hard_rows(self, budgets: Budgets, cols: Sequence[Pair]) -> list[tuple[np.ndarray, float]]:
        """Hard cost budgets as (row, upper bound) in marginal costs."""
        rows = []
        for limit, dim in ((budgets.max_latency_ms, "latency"), (budgets.max_size_mb, "size")):
            if limit is None:
                continue
            ref = cost_value(dim, self.cost_model.score(self.reference)) or 0.0
            row = [(cost_value(dim, self.cost_model.score(with_choice(self.space, self.reference, v, o))) or 0.0) - ref
                   for v, o in cols]  # fmt: skip
            rows.append((np.array(row), limit - ref))
        return rows


def one_per_variable(cols: Sequence[Pair], objective: np.ndarray,
                     rows: Sequence[tuple[np.ndarray, float]]) -> dict[str, str] | None:  # fmt: skip
    """scipy ``milp``: one binary per (variable, choice) column, exactly one per variable,
    every ``row @ x <= bound``, minimising ``objective @ x``; None when infeasible."""
    from scipy.optimize import Bounds, LinearConstraint, milp

    variables = list(dict.fromkeys(v for v, _ in cols))
    eq = np.zeros((len(variables), len(cols)))
    for j, (v, _) in enumerate(cols):
        eq[variables.index(v), j] = 1
    cons = [LinearConstraint(eq, 1, 1)] + [
        LinearConstraint(r[None, :], -np.inf, ub) for r, ub in rows
    ]
    res = milp(objective, constraints=cons, integrality=np.ones(len(cols)), bounds=Bounds(0, 1))
    if res.x is None:
        return None
    return {cols[j][0]: cols[j][1] for j in np.flatnonzero(res.x > 0.5)}
