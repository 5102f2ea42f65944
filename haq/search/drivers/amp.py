"""AIMET's automatic mixed precision (AMP) as a driver: measured sensitivity, then a greedy path.

Phase 1 (as ``choose_mixed_precision``): for every search variable and candidate, quantize only
that variable to the candidate, every other at the reference (float where the target runs it,
else its widest choice), and evaluate: the accuracy drop is the variable's sensitivity to that
candidate. These are trials of the search (counted in its budget); drops measured on the same
validation images earlier come from the sensitivity cache for free. Phase 2: walk the
(variable, candidate) pairs in ascending order of drop and apply each one that lowers the cost
of the current config, cumulatively; every prefix of that path is evaluated as a point. Cost
is the search's first cost objective (AIMET uses BitOps; with a target it is its latency), so
the path is monotone in what the front trades off.
"""

from __future__ import annotations

from collections.abc import Sequence

from haq.config import BitConfig, Precision
from haq.errors import HaqError
from haq.search.drivers.base import DriverContext, Proposal
from haq.search.drivers.ilp import MarginalCosts
from haq.search.objectives import COST_OBJECTIVES
from haq.search.sensitivity import with_choice
from haq.search.trials import TrialRecord


def widest(space: object) -> BitConfig:
    """Per variable the most precise choice: float where allowed, else the most bits."""
    params = {v: max(opts, key=lambda o: Precision.parse(o).bops_factor())
              for v, opts in space.variables()}  # type: ignore[attr-defined]  # fmt: skip
    return space.config(params)  # type: ignore[attr-defined]


class AmpGreedyDriver:
    name = "amp-greedy"

    def __init__(self, options: dict[str, str]) -> None:
        self.options = options

    def start(
        self, ctx: DriverContext, history: Sequence[TrialRecord], state: bytes | None
    ) -> None:
        self.ctx = ctx
        space = ctx.space
        self.reference = widest(space)
        dims = [o for o in ctx.objectives if o in COST_OBJECTIVES]
        self.costs = MarginalCosts(space, ctx.cost_model, self.reference, dims)
        self.acc = next(i for i, o in enumerate(ctx.objectives) if o not in COST_OBJECTIVES)
        self.pairs = [(v, o) for v, opts in space.variables() for o in self.costs.undominated(v, opts)
                      if o != str(self.reference[v])]  # fmt: skip
        cached = ctx.sensitivity.measured_drops(self.reference) if ctx.sensitivity else {}
        self.drops = {p: cached[p] for p in self.pairs if p in cached}
        self.queue = [Proposal(self.reference, "baseline", "reference")]
        self.queue += [Proposal(with_choice(space, self.reference, v, o), "sensitivity")
                       for v, o in self.pairs if (v, o) not in self.drops]  # fmt: skip
        if len(self.queue) > ctx.budget:
            raise HaqError(
                f"driver amp-greedy needs {len(self.queue)} evaluations for its phase 1 but --budget "
                f"is {ctx.budget}; raise the budget, pin layers or shrink --space"
            )
        self.pair_of = {
            with_choice(space, self.reference, v, o).hash: (v, o) for v, o in self.pairs
        }
        self.by_hash: dict[str, TrialRecord] = {}
        self.proposed: set[str] = set()
        self.path_built = False
        for rec in history:
            self.tell(rec)

    def _drop(self, var: str, choice: str) -> float:
        if (var, choice) in self.drops:
            return self.drops[(var, choice)]
        ref = self.by_hash.get(self.reference.hash)
        rec = self.by_hash.get(with_choice(self.ctx.space, self.reference, var, choice).hash)
        if ref is None or rec is None or not ref.values or not rec.values:
            return float("inf")  # failed or rejected: never flipped
        return ref.values[self.acc] - rec.values[self.acc]

    def path(self) -> list[BitConfig]:
        """The cumulative greedy path from the reference, each step cheaper than the last."""
        order = sorted(self.pairs, key=lambda p: (self._drop(*p), self.costs.delta[p][0]))
        config, cost = self.reference, 0.0
        out = []
        for var, choice in order:
            if self._drop(var, choice) == float("inf"):
                continue
            step = self.costs.delta[(var, choice)][0] - self.costs.delta[(var, str(config[var]))][0]
            if step < 0:
                config = with_choice(self.ctx.space, config, var, choice)
                cost += step
                out.append(config)
        return out

    def ask(self, n: int) -> list[Proposal]:
        out: list[Proposal] = []
        while len(out) < n:
            if not self.queue and not self.path_built:
                if not self.proposed <= set(self.by_hash):
                    break  # phase 1 still running
                self.path_built = True
                self.queue = [Proposal(c, "path", driver_attrs={"step": i})
                              for i, c in enumerate(self.path())]  # fmt: skip
            if not self.queue:
                break
            p = self.queue.pop(0)
            if p.config.hash not in self.proposed:
                self.proposed.add(p.config.hash)
                out.append(p)
        return out

    def tell(self, record: TrialRecord) -> None:
        self.by_hash[record.config.hash] = record
        self.proposed.add(record.config.hash)
        if record.source == "sensitivity" and record.values and self.ctx.sensitivity is not None:
            ref = self.by_hash.get(self.reference.hash)
            pair = self.pair_of.get(record.config.hash)
            if pair and ref is not None and ref.values and self.ctx.objectives[self.acc] == "top1":
                drop = ref.values[self.acc] - record.values[self.acc]
                self.ctx.sensitivity.store_drops(self.reference, {pair: drop})

    def state(self) -> bytes | None:
        return None
