"""haq's own driver: a sensitivity-guided ILP front in seconds, then surrogate-guided evolution.

Phases, each a function of (seed, space, cost model, sensitivity, trials told so far), so a
resumed search replays its history and continues where it stopped:

1. **Baselines**: the uniform configs and the usual w8a8 deployment variants.
2. **Sensitivity** (`haq.search.sensitivity`): per search variable and candidate precision,
   the proxy penalty of changing only that variable from the reference (w8a8), cached across
   searches, no evaluation: the output KL to the float model on the calibration images,
   never negative, which the ILP sweeps. With ``sensitivity=loss`` (default) the
   surrogate's prior (phase 4) adds the labelled part of the loss change beyond its noise
   (the table's ``label``), which may be negative: on JPEG CIFAR-10 some 4-6-bit layers
   raise accuracy, and the evolution should look there. The ILP keeps the KL: summed over
   many layers the signed per-layer loss changes let it lower every layer whose change is
   noise (on resnet56 its sweep collapsed to the fastest third of the range). Calibration
   images without labels (distilled, text) use ``sensitivity=kl``, the KL for both;
   ``sensitivity=accuracy`` measures each drop as a trial.
3. **ILP sweep** (scipy ``milp``): minimise the first cost objective in the target's own
   per-layer costs (marginal to the reference, so the target's real kernel speeds decide)
   subject to a summed penalty at most P, plus every hard cost budget, for a dense geometric
   scale of P (no evaluation); the solutions are thinned to ``ilp_points`` (default budget/3,
   at most 20) spread evenly over the cost range and evaluated coarse to fine (both ends, the
   middle, the quarters, ...), so every prefix of the phase covers the whole trade-off.
   Choices that cost no less than a higher-bit choice of the same layer are dropped first: no
   speed is credited for bits the target does not exploit.
4. **Evolution**: children of the evaluated front (one- and two-variable moves, crossover of
   neighbours) and the solutions of the ILP sweep re-solved on the surrogate's fitted drops
   (evenly spaced predicted drops, refreshed every few evaluations) are scored by the cost
   model (exact) and the accuracy surrogate (`haq.search.drivers.surrogate`: the fitted
   accuracy, plus an optimistic margin of its leave-one-out error growing with the variables
   changed from the nearest evaluated config); the candidates of largest predicted
   hypervolume gain are evaluated, several at once for parallel workers. The moves reach
   every choice, also one no faster than a higher-bit one (dropped from the ILP): lower bits
   can be more accurate (on JPEG CIFAR-10 a ResNet-20 with some 4-6-bit layers beats its
   float model by up to 2.4 points on validation and keeps about half of it on test), but
   such a move is tried only where no move among the undominated choices is predicted to
   gain.

**Refinement per candidate** (``--ptq none,adaround``): phases 1-4 work in the space's default
refinement (the first choice), which is what the sensitivity and the surrogate describe. From
the ILP sweep on, every config on the front of all trials so far that has no refined twin yet
is proposed once under each other refinement, before any new config: the refinement is paid
(AdaRound roundings learned, cached per layer and bits) only for configs that could ship, and
a refined twin that dominates moves the front itself.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from haq.config import BitConfig
from haq.cost.base import CostEstimate
from haq.errors import HaqError
from haq.pareto import non_dominated_mask
from haq.pareto.hypervolume import hypervolume_gains
from haq.search.drivers.base import DriverContext, Proposal, choice_option, int_option
from haq.search.drivers.ilp import MarginalCosts, one_per_variable
from haq.search.drivers.surrogate import DropFit, fit_drops, unlink
from haq.search.objectives import COST_OBJECTIVES, cost_value
from haq.search.sensitivity import SensitivityTable, reference_config, with_choice
from haq.search.trials import TrialRecord

WIDE_MARGIN = 10.0  # points below the reference's accuracy: the whole-trade-off box
NARROW_MARGIN = 1.0  # points below it: the box of configs that keep the reference's accuracy
OPTIMISM = 0.5  # residual scales per sqrt(changed variable) added to predicted accuracy
REFIT_NARROW, REFIT_WIDE = 5, 12  # levels of the re-fitted ILP sweep inside / beyond the narrow box
ILP_POINTS = 20  # at most this many proxy-ILP points; the evolution's re-fitted sweeps do better
ILP_DENSITY = 4  # ILP solves per evaluated point of the first sweep
REFIT_EVERY = 4  # evaluations between two re-fitted sweeps (each is ~17 ILP solves)


def _all_float(config: BitConfig) -> bool:
    return all(p.is_float for p in config.values())


def coarse_to_fine(n: int) -> list[int]:
    """0 .. n-1 in bisection order: both ends, the middle, the quarters, ..."""
    order = [0, n - 1][: max(n, 0)] if n != 1 else [0]
    intervals = [(0, n - 1)]
    while intervals:
        nxt = []
        for a, b in intervals:
            if b - a > 1:
                m = (a + b) // 2
                order.append(m)
                nxt += [(a, m), (m, b)]
        intervals = nxt
    return order


class HybridDriver:
    name = "hybrid"

    def __init__(self, options: dict[str, str]) -> None:
        self.mode = choice_option(options, "sensitivity", "loss", ("loss", "kl", "accuracy"))
        int_option(options, "ilp_points", 1)  # validated now, sized to the budget in `start`
        self.options = options

    # Setup --------------------------------------------------------------------------------
    def start(
        self, ctx: DriverContext, history: Sequence[TrialRecord], state: bytes | None
    ) -> None:
        self.ctx = ctx
        space = ctx.space
        self.vars = space.variables()
        self.reference = reference_config(space)
        self.cost_dims = [o for o in ctx.objectives if o in COST_OBJECTIVES]
        self.acc_dims = [o for o in ctx.objectives if o not in COST_OBJECTIVES]
        self.costs = MarginalCosts(space, ctx.cost_model, self.reference, self.cost_dims)
        self.choices = {v: self.costs.undominated(v, opts) for v, opts in self.vars}
        self.cols = [(v, o) for v, _ in self.vars for o in self.choices[v]]
        self.moves = dict(self.vars)  # the evolution's moves: every choice (see below)
        self.records: list[TrialRecord] = []
        self.by_hash: dict[str, TrialRecord] = {}
        self.proposed: set[str] = set()
        self.queue: list[Proposal] = [Proposal(c, "baseline", label)
                                      for label, c in space.seeds().items()]  # fmt: skip
        if self.reference not in space.seeds().values():
            self.queue.append(Proposal(self.reference, "baseline", "reference"))
        # the ILP sweeps the undominated choices; the evolution moves through all of them,
        # since a choice no faster than a higher-bit one can still be more accurate (the fit
        # learns where), so with the free proxy every choice gets a penalty
        pairs = [(v, o) for v, opts in (self.choices.items() if self.mode == "accuracy" else self.vars)
                 for o in opts if o != str(self.reference[v])]  # fmt: skip
        self.table: SensitivityTable | None = None
        self.drops: dict[tuple[str, str], float] = {}
        if self.mode == "accuracy":
            # drops measured on these validation images by an earlier search or
            # `haq sensitivity --accuracy` cost nothing; the rest are phase-1 trials
            cached = ctx.sensitivity.measured_drops(self.reference) if ctx.sensitivity else {}
            self.drops = {p: cached[p] for p in pairs if p in cached}
            todo = [p for p in pairs if p not in self.drops]
            if len(todo) + len(self.queue) > ctx.budget:
                raise HaqError(
                    f"driver hybrid with sensitivity=accuracy needs {len(todo) + len(self.queue)} "
                    f"evaluations for its phase 1 but --budget is {ctx.budget}; raise the budget "
                    "or use sensitivity=loss"
                )
            self.queue += [Proposal(with_choice(space, self.reference, v, o), "sensitivity")
                           for v, o in todo]  # fmt: skip
        else:
            if ctx.sensitivity is None:
                raise HaqError("driver hybrid needs calibration images for its sensitivity proxy")
            self.table = ctx.sensitivity.table(space, pairs)
            if self.mode == "loss" and not self.table.has("loss"):
                self.mode = "kl"  # calibration images without labels (distilled, text)
        self.var_names = [v for v, _ in self.vars]
        self.ref_params = self._params(self.reference)
        # every choice of the space gets a feature (baselines and repairs may use pruned ones)
        self.pairs = [(i, o) for i, (_, opts) in enumerate(self.vars) for o in opts
                      if o != self.ref_params[i]]  # fmt: skip
        self.pair_index = {p: k for k, p in enumerate(self.pairs)}
        self.pair_pen = self._pair_penalties()
        self.proposed_params: set[tuple[str, ...]] = set()
        self._costs: dict[tuple[str, ...], CostEstimate] = {}
        self.ilp_done = False
        self._swept: list[tuple[str, ...]] = []
        self._swept_at = 0
        for rec in history:
            self.tell(rec)

    # Sensitivity --------------------------------------------------------------------------
    def penalty(self, var: str, choice: str, signed: bool = False) -> float:
        if choice == str(self.reference[var]):
            return 0.0
        if self.table is not None:
            if signed and self.mode == "loss":  # may be negative: fits the labels better
                return self.table.score(var, choice) + self.table.score(var, choice, "label")
            return max(self.table.score(var, choice), 0.0)
        if (var, choice) in self.drops:
            return max(self.drops[(var, choice)], 0.0)
        ref = self.by_hash.get(self.reference.hash)
        rec = self.by_hash.get(with_choice(self.ctx.space, self.reference, var, choice).hash)
        if ref is None or rec is None or not ref.values or not rec.values:
            return 0.0
        i = self.ctx.objectives.index(self.acc_dims[0])
        return max(ref.values[i] - rec.values[i], 0.0)

    def _store_drops(self) -> None:
        """Phase-1 drops into the sensitivity cache, for later searches on these images."""
        ref = self.by_hash.get(self.reference.hash)
        if self.mode != "accuracy" or self.ctx.sensitivity is None or ref is None or not ref.values:
            return
        i = self.ctx.objectives.index(self.acc_dims[0])
        if self.acc_dims[0] != "top1":
            return  # the cache holds top-1 drops only
        new = {}
        for var, opts in self.vars:
            for o in opts:
                rec = self.by_hash.get(with_choice(self.ctx.space, self.reference, var, o).hash)
                if o != str(self.reference[var]) and rec is not None and rec.values:
                    new[(var, o)] = ref.values[i] - rec.values[i]
        self.ctx.sensitivity.store_drops(self.reference, new)

    def _pair_penalties(self) -> np.ndarray:
        return np.array([self.penalty(self.var_names[i], o, signed=True) for i, o in self.pairs])

    # ILP ----------------------------------------------------------------------------------
    def _ilp_proposals(self) -> list[Proposal]:
        """Cheapest configs whose summed penalty is at most P: a dense sweep of P on a
        geometric scale (no evaluation), thinned to ``ilp_points`` configs spread evenly over
        the first cost objective (where each evaluation adds most to the front's area)."""
        pen = np.array([self.penalty(v, o) for v, o in self.cols])
        top = float(sum(max(self.penalty(v, o) for o in self.choices[v]) for v, _ in self.vars))
        n_points = int_option(
            self.options, "ilp_points", max(4, min(ILP_POINTS, self.ctx.budget // 3))
        )
        positive = pen[pen > 0]
        low = float(positive.min()) if len(positive) else 0.0
        levels = (
            np.geomspace(max(low, top * 1e-4), max(top, 1e-12), ILP_DENSITY * n_points)
            if top > 0
            else [0.0]
        )
        swept = self._sweep(pen, levels)
        cost = np.array([self.costs.vector(cfg)[0] for cfg, _ in swept])
        picked: list[int] = []
        goals = np.linspace(cost.min(), cost.max(), n_points) if len(swept) else []
        for g in coarse_to_fine(len(goals)):  # every prefix of the phase covers the range
            free = [j for j in range(len(swept)) if j not in picked]
            if free:
                picked.append(min(free, key=lambda j: abs(cost[j] - goals[g])))
        return [Proposal(swept[j][0], "ilp", driver_attrs={"penalty_budget": swept[j][1]})
                for j in picked]  # fmt: skip

    def _sweep(self, pen: np.ndarray, levels: Sequence[float]) -> list[tuple[BitConfig, float]]:
        """Per level: the cheapest config (first cost objective, marginal costs) whose summed
        ``pen`` over the columns is at most the level and that meets every hard cost budget."""
        if not self.cols:
            return []
        cost = np.array([self.costs.delta[c][0] for c in self.cols])
        scale = max(float(np.abs(cost).max()), 1e-12)
        hard = self.costs.hard_rows(self.ctx.guard.budgets, self.cols)
        top = max(float(pen.sum()), 1e-12)
        # a tiny penalty tie-break keeps the most accurate of equally cheap solutions
        objective = cost / scale + 1e-6 * pen / top
        out, seen = [], set()
        for level in levels:
            params = one_per_variable(self.cols, objective, [(pen, float(level)), *hard])
            if params is None:
                continue
            cfg = self.ctx.space.config(params)
            if cfg.hash not in seen:
                seen.add(cfg.hash)
                out.append((cfg, float(level)))
        return out

    def _refit_sweep(self, fit: DropFit) -> list[tuple[str, ...]]:
        """The ILP sweep again on the fitted drops: for evenly spaced predicted drops from the
        reference (a few inside the narrow box, the rest across the wide one), the cheapest
        config the surrogate believes reaches it."""
        fitted = {(self.var_names[i], o): max(float(fit.effects[k]), 0.0)
                  for k, (i, o) in enumerate(self.pairs)}  # fmt: skip
        pen = np.array([fitted.get(c, 0.0) for c in self.cols])
        drops = np.concatenate([np.linspace(NARROW_MARGIN / REFIT_NARROW, NARROW_MARGIN, REFIT_NARROW),
                                np.linspace(NARROW_MARGIN, WIDE_MARGIN, REFIT_WIDE + 1)[1:]])  # fmt: skip
        return [self._params(cfg) for cfg, _ in self._sweep(pen, unlink(drops, fit.curvature))]

    # Protocol -----------------------------------------------------------------------------
    def ask(self, n: int) -> list[Proposal]:
        out: list[Proposal] = []
        while len(out) < n:
            if not self.queue and not self.ilp_done and self._phase1_finished():
                self.ilp_done = True
                self.pair_pen = self._pair_penalties()  # measured drops are in by now
                self._store_drops()
                self.queue = self._ilp_proposals()
            if self.queue:
                p = self.queue.pop(0)
                if p.config.hash not in self.proposed:
                    self._mark(p)
                    out.append(p)
                continue
            if not self.ilp_done:
                break  # phase 1 evaluations still running: wait for their results
            refined = self._refinements(n - len(out))
            if refined:
                for p in refined:
                    self._mark(p)
                out += refined
                continue
            batch = self._evolve(n - len(out), pending=out)
            if not batch:
                break
            for p in batch:
                self._mark(p)
            out += batch
        return out

    def _mark(self, p: Proposal) -> None:
        self.proposed.add(p.config.hash)
        if self.ctx.space.contains(p.config):
            self.proposed_params.add(self._params(p.config))

    def _phase1_finished(self) -> bool:
        return self.mode != "accuracy" or self.proposed <= set(self.by_hash)

    def tell(self, record: TrialRecord) -> None:
        self.records.append(record)
        self.by_hash[record.config.hash] = record
        self.proposed.add(record.config.hash)
        self.queue = [p for p in self.queue if p.config.hash not in self.by_hash]

    def state(self) -> bytes | None:
        return None

    # Evolution ----------------------------------------------------------------------------
    def _params(self, config: BitConfig) -> tuple[str, ...]:
        return tuple(str(config[v]) for v in self.var_names)

    def _config(self, params: tuple[str, ...]) -> BitConfig:
        return self.ctx.space.config(dict(zip(self.var_names, params, strict=True)))

    def _pair_ids(self, params: tuple[str, ...]) -> list[int]:
        """Indices of the (variable, choice) pairs where ``params`` leaves the reference."""
        return [self.pair_index[(i, o)] for i, o in enumerate(params) if o != self.ref_params[i]]

    def _evaluated(self) -> list[TrialRecord]:
        """Feasible trials of the space under its default refinement (what the fit describes)."""
        return [
            r for r in self.records
            if r.feasible and r.values and r.config.ptq is None and self.ctx.space.contains(r.config)
        ]  # fmt: skip

    def _refinements(self, n: int) -> list[Proposal]:
        """Refined twins of the default-refinement configs on the front of every trial so far."""
        others = self.ctx.space.ptq[1:]
        if not others:
            return []
        recs = [r for r in self.records if r.feasible and r.values]
        if not recs:
            return []
        mask = non_dominated_mask(np.array([r.values for r in recs]), self.ctx.directions)
        out = []
        for r, on_front in zip(recs, mask, strict=True):
            if not on_front or r.config.ptq is not None or _all_float(r.config):
                continue
            for ptq in others:
                twin = r.config.with_ptq(ptq)
                if twin.hash not in self.proposed and len(out) < n:
                    out.append(Proposal(twin, "refine", driver_attrs={"refines": r.number}))
        return out

    def _fit(self, recs: list[TrialRecord], values: np.ndarray) -> dict[int, DropFit]:
        """Per accuracy objective: the surrogate (`haq.search.drivers.surrogate`) fitted on
        the evaluated configs' drops from the reference."""
        ref = self.by_hash.get(self.reference.hash)
        x = np.zeros((len(recs), len(self.pairs)))
        for row, r in enumerate(recs):
            x[row, self._pair_ids(self._params(r.config))] = 1.0
        out = {}
        for name in self.acc_dims:
            i = self.ctx.objectives.index(name)
            anchor = ref.values[i] if ref is not None and ref.values else float(values[:, i].max())
            out[i] = fit_drops(x, anchor - values[:, i], self.pair_pen, anchor, WIDE_MARGIN)
        return out

    def _normaliser(self, values: np.ndarray, margin: float, anchors: dict[int, float],
                    cost_ref: np.ndarray) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
        """(scale, reference) mapping objective vectors into a minimisation box whose
        accuracy side lies ``margin`` points below the reference config's accuracy."""
        scale, ref = [], []
        for i, name in enumerate(self.ctx.objectives):
            if name in COST_OBJECTIVES:
                top = float(cost_ref[i]) or 1.0
                scale.append(1.0 / top)
                ref.append(1.0)
            else:
                scale.append(-1.0 / margin)
                ref.append(-(anchors[i] - margin) / margin)
        return np.array(scale), np.array(ref)

    def _evolve(self, n: int, pending: list[Proposal]) -> list[Proposal]:
        recs = self._evaluated()
        if not recs:
            return []
        values = np.array([r.values for r in recs], dtype=float)
        step = len(self.records) + len(pending)
        rng = np.random.default_rng([self.ctx.seed, step])
        fits = self._fit(recs, values)
        mask = non_dominated_mask(values, self.ctx.directions)
        parents = [r for r, m in zip(recs, mask, strict=True) if m]
        i = self.ctx.objectives.index(self.acc_dims[0]) if self.acc_dims else None
        # re-swept every REFIT_EVERY evaluations on the fit to those first ones, so the
        # proposals stay a function of the history (a resumed search continues identically)
        k = len(recs) // REFIT_EVERY * REFIT_EVERY
        if i is not None and k and k != self._swept_at:
            self._swept, self._swept_at = (
                self._refit_sweep(self._fit(recs[:k], values[:k])[i]),
                k,
            )
        cands = self._children(parents, rng, self._swept)
        if not cands:
            return []
        preds = np.array([self._predict(c, p, fits) for c, p in cands])
        anchors = {i: f.anchor for i, f in fits.items()}
        # alternate a wide box (the whole trade-off) and a narrow one near the reference's
        # accuracy, where the configs users ship live
        wide = step % 2 == 0
        cost_cols = np.vstack([values, preds])
        cost_ref = np.nanmax(cost_cols, axis=0) * 1.1 if wide else self._ref_cost() * 1.05
        scale, ref = self._normaliser(cost_cols, WIDE_MARGIN if wide else NARROW_MARGIN, anchors,
                                      cost_ref)  # fmt: skip
        front = (values * scale)[mask]
        dirs = ["minimize"] * len(scale)
        pts = preds * scale
        # a choice no faster than a higher-bit one is tried only where nothing else is
        # predicted to gain: where the undominated moves still pay, it spends evaluations
        # on equally fast configs that are on average less accurate
        plain = np.array([self._undominated(c) for c, _ in cands])
        used = np.zeros(len(pts), dtype=bool)
        chosen: list[Proposal] = []
        for _ in range(n):
            gains = hypervolume_gains(front, pts, dirs, ref)
            gains[used | ~np.isfinite(gains)] = -np.inf
            if plain.any() and gains[plain].max() > 0:
                gains[~plain] = -np.inf
            best = int(np.argmax(gains))
            if not math.isfinite(gains[best]) or (gains[best] <= 0 and chosen):
                break
            chosen.append(Proposal(self._config(cands[best][0]), "evolution",
                                   driver_attrs={"predicted": preds[best].tolist()}))  # fmt: skip
            front = np.vstack([front, pts[best]])  # believe the prediction for the next pick
            used[best] = True
        return chosen

    def _undominated(self, params: tuple[str, ...]) -> bool:
        return all(o in self.choices[v] for v, o in zip(self.var_names, params, strict=True))

    def _cost(self, params: tuple[str, ...]) -> CostEstimate:
        est = self._costs.get(params)
        if est is None:
            est = self._costs[params] = self.ctx.cost_model.score(self._config(params))
        return est

    def _ref_cost(self) -> np.ndarray:
        est = self.ctx.cost_model.score(self.reference)
        return np.array([cost_value(n, est) or 0.0 if n in COST_OBJECTIVES else 0.0
                         for n in self.ctx.objectives])  # fmt: skip

    def _predict(self, params: tuple[str, ...], parent: TrialRecord,
                 fits: dict[int, DropFit]) -> np.ndarray:  # fmt: skip
        """Objectives of ``params``: costs exact, accuracy optimistic (the surrogate's plus a
        margin growing with the variables changed from ``parent``, its nearest evaluated)."""
        est = self._cost(params)
        pp = self._params(parent.config)
        changed = sum(a != b for a, b in zip(params, pp, strict=True))
        out = np.zeros(len(self.ctx.objectives))
        for i, name in enumerate(self.ctx.objectives):
            if name in COST_OBJECTIVES:
                out[i] = cost_value(name, est) or 0.0
            else:
                fit = fits[i]
                out[i] = fit.accuracy(self._pair_ids(params))
                out[i] += OPTIMISM * fit.sigma * math.sqrt(changed)
        return out

    def _children(self, parents: list[TrialRecord], rng: np.random.Generator,
                  swept: Sequence[tuple[str, ...]] = ()) -> list[tuple[tuple[str, ...], TrialRecord]]:  # fmt: skip
        """One- and two-variable moves of every front point, crossovers of neighbours and the
        re-fitted sweep's configs (each anchored at its nearest front point)."""
        seen = {self._params(r.config) for r in self.records} | self.proposed_params
        out: list[tuple[tuple[str, ...], TrialRecord]] = []
        budgets = self.ctx.guard.budgets

        def add(params: tuple[str, ...], parent: TrialRecord) -> None:
            if params in seen:
                return
            seen.add(params)
            if budgets.has_cost and budgets.cost_violation(self._cost(params)) > 0:
                return
            out.append((params, parent))

        nv = len(self.var_names)
        for parent in parents:
            pp = self._params(parent.config)
            for i, var in enumerate(self.var_names):
                for o in self.moves[var]:
                    if o != pp[i]:
                        add(pp[:i] + (o,) + pp[i + 1 :], parent)
            for _ in range(2 * nv):
                child = list(pp)
                for i in rng.choice(nv, size=min(2, nv), replace=False):
                    child[i] = str(rng.choice(self.moves[self.var_names[i]]))
                add(tuple(child), parent)
        if self.cost_dims:
            k = self.ctx.objectives.index(self.cost_dims[0])
            parents = sorted(parents, key=lambda r: r.values[k] if r.values else 0.0)
        for a, b in zip(parents, parents[1:], strict=False):
            pa, pb = self._params(a.config), self._params(b.config)
            for _ in range(nv):
                take = rng.random(nv) < 0.5
                add(tuple(x if t else y for x, y, t in zip(pa, pb, take, strict=True)), a)
        for params in swept:
            near = min(parents, key=lambda r: sum(
                a != b for a, b in zip(params, self._params(r.config), strict=True)))  # fmt: skip
            add(params, near)
        return out
