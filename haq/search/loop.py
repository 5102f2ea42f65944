"""The ask/tell loop: a driver's proposals through cost check, evaluation and record.

Per proposal: the cost model scores it; a config over a cost budget is repaired or rejected
before any evaluation; a config evaluated before reuses its metrics (from this search, or
from the shared evaluation cache when one is given); the rest go to the executor (serial or
Ray actors). Each finished trial becomes one `TrialRecord`, told to the
driver, added to the durable study and handed to ``on_record`` (the results files), in that
order, so a kill at any point loses at most the trials still in flight.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from haq.config import BitConfig
from haq.cost.base import CostEstimate
from haq.evaluate.evaluator import EvalResult
from haq.evaluate.metrics import Metrics
from haq.evaluate.pool import Executor
from haq.search.drivers.base import Driver, DriverContext, Proposal
from haq.search.eval_cache import EvaluationCache
from haq.search.front import FrontScale, LiveFront
from haq.search.objectives import objective_values
from haq.search.progress import Progress
from haq.search.storage import StudyStore
from haq.search.trials import COMPLETE, FAILED, PRUNED, TrialRecord


@dataclass
class _InFlight:
    proposal: Proposal
    config: BitConfig
    cost: CostEstimate
    repaired: bool
    cost_seconds: float


class SearchLoop:
    def __init__(
        self, ctx: DriverContext, driver: Driver, executor: Executor, store: StudyStore,
        scale: FrontScale, float_worst: float | None, *,
        on_record: Callable[[list[TrialRecord]], None] = lambda _r: None,
        save_state: Callable[[bytes | None], None] = lambda _s: None,
        time_limit: float | None = None, progress: bool = True,
        eval_cache: EvaluationCache | None = None,
    ) -> None:  # fmt: skip
        self.ctx = ctx
        self.driver = driver
        self.executor = executor
        self.store = store
        self.scale = scale
        self.float_worst = float_worst
        self.on_record = on_record
        self.save_state = save_state
        self.time_limit = time_limit
        self.progress_enabled = progress
        self.eval_cache = eval_cache
        self.exhausted = False

    def run(self, history: list[TrialRecord]) -> list[TrialRecord]:
        """Run until the budget is spent, time is up or the driver has nothing left."""
        ctx = self.ctx
        self.records = list(history)
        self.front = LiveFront(ctx.objectives, history)
        self.evaluated = {r.config.hash: r.metrics for r in history
                          if r.state == COMPLETE and r.metrics is not None}  # fmt: skip
        self.progress = Progress(ctx.budget, len(history), self.progress_enabled)
        self.phase = "start"
        inflight: dict[int, _InFlight] = {}
        asked = len(history)
        ticket = 0
        started = time.time()
        while True:
            out_of_time = self.time_limit is not None and time.time() - started > self.time_limit
            while (
                not out_of_time
                and asked < ctx.budget
                and self.executor.pending() < self.executor.capacity()
            ):
                want = min(self.executor.capacity() - self.executor.pending(), ctx.budget - asked)
                proposals = self.driver.ask(want)
                if not proposals:
                    self.exhausted = not inflight
                    break
                for p in proposals:
                    asked += 1
                    self.phase = p.source
                    job = self._check(p)
                    if job is None:
                        continue
                    cached = self.evaluated.get(job.config.hash)
                    if cached is not None:  # the same config after repair: reuse its metrics
                        self._complete(job, cached, 0.0, cached=True)
                        continue
                    shared = self.eval_cache.get(job.config) if self.eval_cache else None
                    if shared is not None:  # evaluated by an earlier search on these images
                        self.evaluated[job.config.hash] = shared
                        self._complete(job, shared, 0.0, cached=False, reused=True)
                        continue
                    ticket += 1
                    inflight[ticket] = job
                    self.executor.submit(ticket, job.config)
            if not inflight:
                break
            number, outcome = self.executor.next_result()
            job = inflight.pop(number)
            if isinstance(outcome, EvalResult):
                self.evaluated[job.config.hash] = outcome.metrics
                if self.eval_cache is not None:
                    self.eval_cache.put(job.config, outcome.metrics)
                self._complete(job, outcome.metrics, outcome.seconds, cached=False)
            else:
                self._finish(TrialRecord(0, job.config, job.cost, FAILED, f"failed: {outcome.error}",
                                         job.proposal.source, job.proposal.label, repaired=job.repaired,
                                         driver_attrs=job.proposal.driver_attrs))  # fmt: skip
        self.progress.close()
        return self.records

    def _check(self, p: Proposal) -> _InFlight | None:
        """Cost and repair; a config no repair fixes is recorded as rejected (None)."""
        t0 = time.perf_counter()
        cost = self.ctx.cost_model.score(p.config)
        fixed = self.ctx.guard.repair(p.config, cost)
        if fixed is None:
            self._finish(TrialRecord(0, p.config, cost, PRUNED, "rejected: over budget, not repairable",
                                     p.source, p.label, driver_attrs=p.driver_attrs,
                                     cost_seconds=time.perf_counter() - t0))  # fmt: skip
            return None
        config, cost, repaired = fixed
        return _InFlight(p, config, cost, repaired, time.perf_counter() - t0)

    def _complete(
        self, job: _InFlight, m: Metrics, seconds: float, cached: bool, reused: bool = False
    ) -> None:
        values = objective_values(self.ctx.objectives, job.cost, m)
        constraint = self.ctx.guard.budgets.accuracy_constraints(m, self.float_worst)
        ok = all(c <= 0 for c in constraint)
        known = all(v == v for v in values)  # NaN: an objective this config cannot be scored on
        rec = TrialRecord(
            0, job.config, job.cost, COMPLETE if known else FAILED,
            ("complete" if ok else "infeasible: accuracy budget") if known else "failed: objective unknown",
            job.proposal.source, job.proposal.label, m, values if known else None, constraint,
            job.repaired, cached, seconds, job.cost_seconds, job.proposal.driver_attrs, reused,
        )  # fmt: skip
        self._finish(rec)

    def _finish(self, rec: TrialRecord) -> None:
        rec.number = len(self.records)
        self.driver.tell(rec)
        self.store.add(rec)
        self.save_state(self.driver.state())
        self.records.append(rec)
        self.on_record(self.records)
        self.front.add(rec)
        self.progress.update(
            len(self.records), self.phase, len(self.front.points),
            self.scale.hypervolume(self.front.points),
        )  # fmt: skip
