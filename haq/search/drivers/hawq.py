"""HAWQ-V2/V3 as a driver: Hessian-aware sensitivity, then one ILP per latency budget.

Faithful to the papers (Dong, Yao et al.): a layer's sensitivity is its mean Hessian trace of
the loss (Hutchinson estimator, here on the calibration images against the float model's own
predictions) times ``||W - Q(W)||^2``; activations take the weights' bit width (HAWQ-V3's
W4A4 / W8A8), so the candidates are the space's choices with equal bits, plus float; each
integer program minimises summed sensitivity under one budget of the first cost objective
(HAWQ-V3: latency <= INT4 + r (INT8 - INT4)), solved with scipy ``milp``. A sweep of r over the
remaining budget yields a front; the driver is exhausted after it. Tie groups (HAWQ ties a
residual downsample to its branch) come from the space's ``--tie``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from haq.errors import HaqError
from haq.search.drivers.base import DriverContext, Proposal, QueueDriver, int_option
from haq.search.drivers.ilp import MarginalCosts, bits, one_per_variable
from haq.search.objectives import COST_OBJECTIVES
from haq.search.sensitivity import reference_config
from haq.search.trials import TrialRecord


class IlpSweepDriver(QueueDriver):
    """Baselines, then one ILP per cost budget (cheapest first): minimise a per-choice
    penalty subject to ``cost <= low + r (reference - low)``. Subclasses say which choices
    and what penalty; the driver is exhausted after the sweep."""

    name = "ilp-sweep"

    def __init__(self, options: dict[str, str]) -> None:
        self.options = options
        int_option(options, "budgets", 1)  # validated now; default sized to the search budget

    def choices(self, var: str, opts: list[str]) -> list[str]:
        return self.costs.undominated(var, opts)

    def penalties(self, ctx: DriverContext, cols: list[tuple[str, str]]) -> np.ndarray:
        raise NotImplementedError

    def start(
        self, ctx: DriverContext, history: Sequence[TrialRecord], state: bytes | None
    ) -> None:
        if ctx.sensitivity is None:
            raise HaqError(f"driver {self.name} needs calibration images for its sensitivity proxy")
        space = ctx.space
        self.reference = reference_config(space)
        dims = [o for o in ctx.objectives if o in COST_OBJECTIVES]
        self.costs = MarginalCosts(space, ctx.cost_model, self.reference, dims)
        self.allowed = {
            v: self.choices(v, opts) or [str(self.reference[v])] for v, opts in space.variables()
        }
        cols = [(v, o) for v, opts in self.allowed.items() for o in opts]
        self.queue = [Proposal(c, "baseline", label) for label, c in space.seeds().items()]
        n = int_option(self.options, "budgets", max(1, ctx.budget - len(self.queue)))
        self.queue += self._sweep(ctx, cols, self.penalties(ctx, cols), n)
        self.seen = {r.config.hash for r in history}

    def _sweep(
        self, ctx: DriverContext, cols: list[tuple[str, str]], pen: np.ndarray, n: int
    ) -> list[Proposal]:
        """One ILP per budget r in (0, 1] between the cheapest and the reference's cost."""
        cost = np.array([self.costs.delta[c][0] for c in cols])
        low = sum(
            min(self.costs.delta[(v, o)][0] for o in opts) for v, opts in self.allowed.items()
        )
        scale = max(float(np.abs(cost).max()), 1e-12)
        objective = pen + 1e-9 * max(float(pen.max()), 1.0) * cost / scale  # ties: the cheaper
        hard = self.costs.hard_rows(ctx.guard.budgets, cols)
        out, seen = [], set()
        for r in np.linspace(1.0, 0.0, n, endpoint=False)[::-1]:
            limit = low + r * (0.0 - low)  # marginal: the reference itself costs 0
            params = one_per_variable(cols, objective, [(cost, float(limit) + 1e-12), *hard])
            if params is None:
                continue
            cfg = ctx.space.config(params)
            if cfg.hash not in seen:
                seen.add(cfg.hash)
                budget = float(self.costs.base[0] + limit)
                out.append(
                    Proposal(cfg, "ilp", driver_attrs={"r": float(r), "cost_budget": budget})
                )
        return out


class HawqIlpDriver(IlpSweepDriver):
    name = "hawq-ilp"

    def choices(self, var: str, opts: list[str]) -> list[str]:
        return [o for o in self.costs.undominated(var, opts) if _equal_bits(o)]

    def penalties(self, ctx: DriverContext, cols: list[tuple[str, str]]) -> np.ndarray:
        assert ctx.sensitivity is not None
        pairs = [c for c in cols if c[1] != str(self.reference[c[0]])]
        table = ctx.sensitivity.table(ctx.space, pairs, hessian=True)
        return np.array([max(table.score(v, o, "hessian"), 0.0) for v, o in cols])


def _equal_bits(choice: str) -> bool:
    w, a = bits(choice)
    return w == a
