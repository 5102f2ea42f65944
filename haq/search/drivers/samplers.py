"""Optuna samplers as drivers: NSGA-II, TPE, GP, random.

The sampler works on an in-memory study that mirrors every finished trial (Optuna's RDB
storage costs ~50-100 ms per trial here; the loop writes the durable study itself). Uniform
baselines and the usual w8a8 deployment variants are enqueued first. A config the sampler has
already proposed is told back with its known result and never surfaces again, so the driver
proposes no duplicate. The pickled sampler is the driver's state: a resume restores it.
"""

from __future__ import annotations

import pickle
import threading
from collections.abc import Callable, Sequence
from typing import Any

from haq.search.drivers.base import DriverContext, Proposal, int_option
from haq.search.trials import COMPLETE, FAILED, TrialRecord

MAX_REDRAWS = 50  # sampler draws per proposal before the driver calls itself exhausted
_KEY = "sampler_trial"

SamplerFactory = Callable[[DriverContext, Any], Any]  # (ctx, constraints_func) -> sampler


def _constraints(trial: Any) -> list[float]:
    return list(trial.user_attrs.get("constraint", []))


class SamplerDriver:
    """An Optuna sampler behind the `Driver` protocol."""

    def __init__(self, name: str, make_sampler: SamplerFactory) -> None:
        self.name = name
        self._make_sampler = make_sampler

    def start(
        self, ctx: DriverContext, history: Sequence[TrialRecord], state: bytes | None
    ) -> None:
        import optuna
        from optuna.distributions import CategoricalDistribution

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        self.ctx = ctx
        constraints = _constraints if ctx.guard.budgets.has_accuracy else None
        sampler = _unpickle_sampler(state) if state else self._make_sampler(ctx, constraints)
        self.study = optuna.create_study(directions=ctx.directions, sampler=sampler)
        self.dists = {v: CategoricalDistribution(o) for v, o in ctx.space.sampled_variables()}
        self.known: dict[str, TrialRecord] = {}
        for rec in history:
            self.known[rec.config.hash] = rec
            if ctx.space.contains(rec.config):
                self.study.add_trial(self._frozen(rec))
        self.open: dict[int, Any] = {}  # in-memory trial number -> trial
        self.proposed: set[str] = set(self.known)
        self.seeds = {c.hash: label for label, c in ctx.space.seeds().items()}
        for cfg in ctx.space.seeds().values():
            if cfg.hash not in self.known:
                self.study.enqueue_trial(ctx.space.params(cfg), skip_if_exists=True)

    def _frozen(self, rec: TrialRecord) -> Any:
        import optuna

        state = {COMPLETE: optuna.trial.TrialState.COMPLETE, FAILED: optuna.trial.TrialState.FAIL}
        st = state.get(rec.state, optuna.trial.TrialState.PRUNED)
        return optuna.trial.create_trial(
            params=self.ctx.space.params(rec.config), distributions=self.dists, state=st,
            values=rec.values if st == optuna.trial.TrialState.COMPLETE else None,
            user_attrs={"constraint": rec.constraint}, system_attrs=dict(rec.driver_attrs),
        )  # fmt: skip

    def ask(self, n: int) -> list[Proposal]:
        import optuna

        out: list[Proposal] = []
        for _ in range(n):
            for _draw in range(MAX_REDRAWS):
                trial = self.study.ask(self.dists)
                config = self.ctx.space.config(trial.params)
                if config.hash not in self.proposed:
                    break
                known = self.known.get(config.hash)
                if known is not None and known.state == COMPLETE and known.values:
                    trial.set_user_attr("constraint", known.constraint)
                    self.study.tell(trial, known.values)
                else:
                    self.study.tell(trial, state=optuna.trial.TrialState.PRUNED)
            else:
                return out  # the sampler keeps drawing known configs: nothing new left
            self.proposed.add(config.hash)
            self.open[trial.number] = trial
            label = self.seeds.get(config.hash)
            out.append(Proposal(config, "baseline" if label else "sampler", label,
                                {_KEY: trial.number}))  # fmt: skip
        return out

    def tell(self, record: TrialRecord) -> None:
        import optuna

        trial = self.open.pop(int(record.driver_attrs.pop(_KEY)))
        self.known[record.config.hash] = record
        trial.set_user_attr("constraint", record.constraint)
        if record.state == COMPLETE and record.values:
            frozen = self.study.tell(trial, record.values)
        else:
            failed = record.state == FAILED
            st = optuna.trial.TrialState.FAIL if failed else optuna.trial.TrialState.PRUNED
            frozen = self.study.tell(trial, state=st)
        # the told trial itself: `study.trials` deep-copies every trial (grew with the count)
        record.driver_attrs.update(frozen.system_attrs)

    def state(self) -> bytes | None:
        return _pickle_sampler(self.study.sampler)


_LOCK_TYPES = (type(threading.Lock()), type(threading.RLock()))


def _pickle_sampler(sampler: Any) -> bytes:
    """Pickle a sampler without its thread locks (Optuna 5.1's NSGA-II holds one, which
    pickle refuses); `_unpickle_sampler` gives it fresh ones."""
    locks = {k: v for k, v in vars(sampler).items() if isinstance(v, _LOCK_TYPES)}
    for k in locks:
        setattr(sampler, k, None)
    try:
        return pickle.dumps(
            (sampler, {k: isinstance(v, type(threading.RLock())) for k, v in locks.items()})
        )
    finally:
        for k, v in locks.items():
            setattr(sampler, k, v)


def _unpickle_sampler(state: bytes) -> Any:
    loaded = pickle.loads(state)
    if not isinstance(loaded, tuple):  # saved before locks were set aside
        return loaded
    sampler, locks = loaded
    for k, reentrant in locks.items():
        setattr(sampler, k, threading.RLock() if reentrant else threading.Lock())
    return sampler


def _nsga2(options: dict[str, str]) -> SamplerFactory:
    """NSGA-II's population fits the budget: about ten generations, 8 to 50 members."""
    fixed = int_option(options, "population", 0, low=2) if "population" in options else None

    def make(ctx: DriverContext, constraints: Any) -> Any:
        import optuna

        pop = fixed or max(8, min(50, ctx.budget // 10))
        return optuna.samplers.NSGAIISampler(population_size=pop, seed=ctx.seed,
                                             constraints_func=constraints)  # fmt: skip

    return make


def _tpe(options: dict[str, str]) -> SamplerFactory:
    startup = int_option(options, "startup", 10)

    def make(ctx: DriverContext, constraints: Any) -> Any:
        import optuna

        return optuna.samplers.TPESampler(seed=ctx.seed, multivariate=True,
                                          n_startup_trials=startup, constraints_func=constraints)  # fmt: skip

    return make


def _gp(options: dict[str, str]) -> SamplerFactory:
    def make(ctx: DriverContext, constraints: Any) -> Any:
        import optuna

        return optuna.samplers.GPSampler(seed=ctx.seed, constraints_func=constraints)

    return make


def _random(options: dict[str, str]) -> SamplerFactory:
    def make(ctx: DriverContext, constraints: Any) -> Any:
        import optuna

        return optuna.samplers.RandomSampler(seed=ctx.seed)

    return make


def sampler_driver(name: str, factory: Callable[[dict[str, str]], SamplerFactory]
                   ) -> Callable[[dict[str, str]], SamplerDriver]:  # fmt: skip
    return lambda options: SamplerDriver(name, factory(options))


SAMPLERS = {
    "nsga2": (_nsga2, "Optuna NSGA-II: evolutionary multi-objective, population sized to the budget",
              {"population": "members per generation (default budget/10, 8 to 50)"}),
    "tpe": (_tpe, "Optuna multivariate TPE (multi-objective)",
            {"startup": "random trials before TPE models the results (default 10)"}),
    "gp": (_gp, "Optuna Gaussian-process Bayesian optimisation", {}),
    "random": (_random, "uniform random configs (baseline)", {}),
}  # fmt: skip
