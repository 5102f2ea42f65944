"""ZeroQ's mixed precision as a driver: per-layer KL sensitivity and a Pareto-frontier DP.

Faithful to Cai et al. (CVPR 2020): a layer's sensitivity to a candidate is the KL divergence
between the float model's outputs and those of the model with only that layer quantized (every
other layer float, a simulation the target need not run), on the calibration images - pass
``--calib-data distilled`` for ZeroQ's data-free images distilled from BatchNorm statistics.
A dynamic program over cost bins (ZeroQ: model size; here the search's first cost objective,
marginal per layer) finds, for every bin, the config of least summed KL; its Pareto frontier
is proposed cheapest first, thinned evenly to the budget. No evaluation steers it.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from haq.config import BitConfig
from haq.errors import HaqError
from haq.search.drivers.base import DriverContext, Proposal, QueueDriver, int_option
from haq.search.drivers.ilp import MarginalCosts
from haq.search.objectives import COST_OBJECTIVES
from haq.search.sensitivity import reference_config
from haq.search.trials import TrialRecord


def pareto_dp(costs: Sequence[Sequence[int]], penalties: Sequence[Sequence[float]]
              ) -> list[tuple[int, float, tuple[int, ...]]]:  # fmt: skip
    """Exact Pareto frontier of (summed integer cost, summed penalty) over one choice per
    variable: a knapsack DP keeping, per reachable total cost, the least penalty. Returns
    (cost, penalty, choice indices) cheapest first, each strictly less penalised than the last."""
    best: dict[int, tuple[float, tuple[int, ...]]] = {0: (0.0, ())}
    for cs, ps in zip(costs, penalties, strict=True):
        nxt: dict[int, tuple[float, tuple[int, ...]]] = {}
        for total, (pen, picks) in best.items():
            for k, (c, p) in enumerate(zip(cs, ps, strict=True)):
                key, val = total + int(c), pen + float(p)
                if key not in nxt or val < nxt[key][0]:
                    nxt[key] = (val, (*picks, k))
        best = nxt
    out: list[tuple[int, float, tuple[int, ...]]] = []
    for total in sorted(best):
        pen, picks = best[total]
        if not out or pen < out[-1][1]:
            out.append((total, pen, picks))
    return out


class ZeroqDpDriver(QueueDriver):
    name = "zeroq-dp"

    def __init__(self, options: dict[str, str]) -> None:
        self.bins = int_option(options, "bins", 200, low=2)

    def start(
        self, ctx: DriverContext, history: Sequence[TrialRecord], state: bytes | None
    ) -> None:
        if ctx.sensitivity is None:
            raise HaqError("driver zeroq-dp needs calibration images (or 'distilled') for its KL")
        space = ctx.space
        dims = [o for o in ctx.objectives if o in COST_OBJECTIVES]
        costs = MarginalCosts(space, ctx.cost_model, reference_config(space), dims)
        float_ref = BitConfig.uniform("fp32", space.names)
        variables = space.variables()
        choices = [costs.undominated(v, opts) for v, opts in variables]
        table = ctx.sensitivity.table(space, [(v, o) for (v, _), cs in zip(variables, choices, strict=True)
                                              for o in cs if o != "fp32"], reference=float_ref)  # fmt: skip
        lo = sum(
            min(costs.delta[(v, o)][0] for o in cs)
            for (v, _), cs in zip(variables, choices, strict=True)
        )
        hi = sum(
            max(costs.delta[(v, o)][0] for o in cs)
            for (v, _), cs in zip(variables, choices, strict=True)
        )
        step = max((hi - lo) / self.bins, 1e-12)
        int_costs = [
            [round(costs.delta[(v, o)][0] / step) for o in cs]
            for (v, _), cs in zip(variables, choices, strict=True)
        ]
        pens = [
            [max(table.score(v, o), 0.0) for o in cs]
            for (v, _), cs in zip(variables, choices, strict=True)
        ]
        frontier = pareto_dp(int_costs, pens)
        self.queue = [Proposal(c, "baseline", label) for label, c in space.seeds().items()]
        room = max(1, ctx.budget - len(self.queue))
        keep = np.unique(
            np.linspace(0, len(frontier) - 1, min(room, len(frontier))).round().astype(int)
        )
        for i in keep:
            total, pen, picks = frontier[i]
            cfg = space.config(
                {v: cs[k] for (v, _), cs, k in zip(variables, choices, picks, strict=True)}
            )
            self.queue.append(Proposal(cfg, "dp", driver_attrs={"cost_bin": total, "kl": pen}))
        self.seen = {r.config.hash for r in history}
