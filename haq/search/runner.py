"""The search loop: an Optuna ask/tell study feeding an evaluator pool.

Per proposal: the driver (sampler) picks one precision per search variable; the cheap cost
model scores it; a config over a cost budget is repaired (bits lowered step by step, as HAQ
does) or rejected before any evaluation; feasible configs go to the evaluators (serial or Ray
actors) on the validation images; results are told back to the study and every trial is
written to the results directory as it finishes. At the end the front is re-evaluated on the
test images, which never steer the search.
"""

from __future__ import annotations

import json
import math
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from haq.config import BitConfig, Precision
from haq.cost.base import CostEstimate, CostModel
from haq.errors import HaqError
from haq.evaluate.evaluator import EvalResult
from haq.evaluate.metrics import Metrics
from haq.search.objectives import (
    COST_OBJECTIVES,
    DIRECTIONS,
    UNITS,
    Budgets,
    accuracy_value,
    cost_value,
    parse_objectives,
)
from haq.search.results import ResultsDir
from haq.search.space import SearchSpace


@dataclass
class SearchOptions:
    """Everything `haq search` takes (the Python API takes the same names)."""

    model: str = "digits_cnn"
    weights: str = "default"
    target: str | None = None
    data: str | None = None  # final test images
    calib_data: str | None = None  # calibration + search-time validation images
    space: str = "default"
    driver: str = "nsga2"
    objectives: str | None = None  # default: top1,latency with a target, else top1,size
    budget: int = 50
    time_limit: float | None = None  # seconds
    workers: int = 0
    ray_address: str | None = None
    val_limit: int = 1000
    calib_limit: int | None = (
        None  # default 256 (64 for the embedded digits, whose calib split is small)
    )
    test_limit: int | None = None
    seed: int = 0
    threads: int | None = None  # target threads for latency (cost model), None: profile default
    pins: list[str] = field(default_factory=list)
    ties: list[list[str]] = field(default_factory=list)
    budgets: Budgets = field(default_factory=Budgets)
    out: str | None = None
    resume: bool = False
    progress: bool = True
    command: str = ""


@dataclass
class Candidate:
    """One proposal on its way through cost check, evaluation and tell."""

    trial: Any
    config: BitConfig
    cost: CostEstimate
    repaired: bool
    cost_seconds: float


def _default_out(opts: SearchOptions) -> Path:
    stamp = time.strftime("%Y%m%d-%H%M%S")
    return (
        Path("runs")
        / f"{opts.model.replace(':', '_').replace('/', '_')}-{opts.target or 'none'}-{stamp}"
    )


def _calib_source(opts: SearchOptions, data: str) -> str:
    if opts.calib_data:
        return opts.calib_data
    if data == "digits":
        return "digits:calib"
    raise HaqError("pass --calib-data DIR (training images for calibration and validation) or 'distilled'; "
                   "test images (--data) never steer the search")  # fmt: skip


class Search:
    """One search run (new or resumed) over one results directory."""

    def __init__(self, opts: SearchOptions) -> None:
        from haq.models import discover_layers, load_model
        from haq.models.fingerprint import state_hash

        self.opts = opts
        if opts.budget < 1:
            raise HaqError(f"--budget must be at least 1 trial, not {opts.budget}")
        if opts.workers < 0:
            raise HaqError(f"--workers must be 0 (serial) or more, not {opts.workers}")
        self.results = ResultsDir(opts.out or _default_out(opts))
        if opts.resume and not self.results.exists():
            raise HaqError(
                f"nothing to resume in {self.results.path}; pass the results dir of an earlier search"
            )
        if not opts.resume and self.results.exists():
            raise HaqError(
                f"{self.results.path} already holds a search; pass --resume {self.results.path} or a new --out"
            )
        self.loaded = load_model(opts.model, opts.weights)
        self.layers = discover_layers(self.loaded.model, self.loaded.example_input())
        self.model_hash = state_hash(self.loaded.model)
        self.cost_model, can_run = self._cost_model()
        default = "top1,latency" if opts.target else "top1,size"
        self.objectives = parse_objectives(opts.objectives or default)
        self.space = SearchSpace.build(self.layers, opts.space, can_run, opts.pins, opts.ties)
        self.data = opts.data or self.loaded.entry.default_data
        if not self.data:
            raise HaqError(f"pass --data DIR (test images) for {opts.model}")
        self.calib = _calib_source(opts, self.data)
        self._check_data()
        if opts.calib_limit is None:
            opts.calib_limit = 64 if self.calib.startswith("digits") else 256
        self._check_objectives()
        self._check_budgets_possible()

    # Set-up checks ------------------------------------------------------------------------
    def _check_data(self) -> None:
        """Fail now, not after the search, when test or calibration data do not fit the model."""
        from haq.data import load_data

        for source in (self.calib, self.data):
            load_data(source, self.loaded.preprocess, limit=2, model=self.loaded.model,
                      num_classes=self.loaded.entry.num_classes)  # fmt: skip

    def _cost_model(self) -> tuple[CostModel, Any]:
        from haq.cost.size_bops import SizeBopsModel

        if self.opts.target is None:
            return SizeBopsModel(self.layers), None
        from haq.cost import cost_model_for
        from haq.hardware.profile import get_target

        profile = get_target(self.opts.target)
        model = cost_model_for(self.opts.target, self.layers, threads=self.opts.threads)
        return model, lambda kind, p: profile.can_run(kind, p)

    def _check_objectives(self) -> None:
        probe = self.cost_model.score(next(iter(self.space.baselines().values()), self.space.config(
            {v: opts[0] for v, opts in self.space.variables()})))  # fmt: skip
        for name in self.objectives:
            if name in COST_OBJECTIVES and cost_value(name, probe) is None:
                where = f"target {self.opts.target}" if self.opts.target else "no --target"
                raise HaqError(
                    f"{where} cannot score '{name}'; drop it from --objectives or pick a target that measures it"
                )
        if self.opts.budgets.max_latency_ms is not None and probe.latency_ms is None:
            raise HaqError("--max-latency-ms needs a --target with latency tables")

    def _cheapest(self) -> BitConfig:
        """Per variable, the choice with the fewest bits (a lower bound for cost budgets)."""
        return self.space.config({v: min(opts, key=lambda s: Precision.parse(s).bops_factor())
                                  for v, opts in self.space.variables()})  # fmt: skip

    def _check_budgets_possible(self) -> None:
        b = self.opts.budgets
        if (
            b.max_latency_ms is not None
            and b.max_latency_ms <= 0
            or b.max_size_mb is not None
            and b.max_size_mb <= 0
        ):
            raise HaqError("cost budgets must be positive")
        cheapest = self.cost_model.score(self._cheapest())
        if b.cost_violation(cheapest) > 0:
            got = (
                f"{cheapest.latency_ms:.3g} ms"
                if b.max_latency_ms is not None
                else f"{cheapest.size_bytes / 1e6:.3g} MB"
            )
            raise HaqError(
                f"impossible budget: even the cheapest config in the space costs {got}; raise the budget or widen --space"
            )

    # Repair -------------------------------------------------------------------------------
    def repair(
        self, config: BitConfig, cost: CostEstimate
    ) -> tuple[BitConfig, CostEstimate, bool] | None:
        """Lower bits step by step (largest layers first) until the cost budgets hold."""
        budgets = self.opts.budgets
        if budgets.cost_violation(cost) == 0:
            return config, cost, False
        layers = dict(config.items())
        order = sorted(self.space.variables(), key=lambda v: -self._group_macs(v[0]))
        for _ in range(sum(len(o) for _, o in order)):
            changed = False
            for var, opts in order:
                cur = str(layers[var])
                lower = sorted((o for o in opts if Precision.parse(o).bops_factor() < Precision.parse(cur).bops_factor()),
                               key=lambda s: -Precision.parse(s).bops_factor())  # fmt: skip
                if not lower:
                    continue
                for name in next(g for g in self.space.groups if g[0] == var):
                    layers[name] = Precision.parse(lower[0])
                changed = True
                candidate = BitConfig(layers)
                cost = self.cost_model.score(candidate)
                if budgets.cost_violation(cost) == 0:
                    return candidate, cost, True
            if not changed:
                return None
        return None

    def _group_macs(self, var: str) -> int:
        group = next(g for g in self.space.groups if g[0] == var)
        return sum(s.macs for s in self.layers if s.name in group)

    # Run ----------------------------------------------------------------------------------
    def run(self) -> SearchResultFiles:
        import warnings

        import optuna

        from haq.evaluate.pool import EvalSpec, make_executor
        from haq.search.drivers import get_driver

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
        opts = self.opts
        self.results.create()
        directions = [DIRECTIONS[n] for n in self.objectives]
        constraints = _constraints_from_attrs if self._has_accuracy_budgets() else None
        sampler = get_driver(opts.driver).make(opts.seed, self.space, constraints)
        resumed_sampler = self.results.load_sampler() if opts.resume else None
        # The sampler works on an in-memory study (Optuna's RDB storage costs ~50-100 ms per
        # trial here); every finished trial is copied at once into the SQLite study on disk,
        # which is what a resume reloads. A trial killed mid-evaluation was never finished, so
        # it is simply proposed again by the restored sampler.
        self.durable = optuna.create_study(storage=_sqlite_storage(self.results.study_db), study_name="haq",
                                           directions=directions, load_if_exists=opts.resume)  # fmt: skip
        self.durable.set_metric_names(self.objectives)
        study = optuna.create_study(directions=directions, sampler=resumed_sampler or sampler)
        study.add_trials(self.durable.get_trials(deepcopy=False))
        for cfg in self.space.seeds().values():
            study.enqueue_trial(self.space.params(cfg), skip_if_exists=True)
        spec = EvalSpec(opts.model, opts.weights, data=self.calib, calib_data=self.calib, limit=opts.val_limit,
                        calib_limit=opts.calib_limit, seed=opts.seed,
                        threads_per_worker=None)  # fmt: skip
        started = time.time()
        with make_executor(spec, opts.workers, opts.ray_address) as executor:
            float_val = self._float_reference(executor)
            self._write_run(float_val, resumed=opts.resume)
            self._loop(study, executor, float_val, started)
        front = self._front(study)
        test = self._test_front(front) if front else {}
        self._write_outputs(study, front, test, float_val)
        return SearchResultFiles(self.results.path, self.objectives)

    def _has_accuracy_budgets(self) -> bool:
        b = self.opts.budgets
        return b.min_top1 is not None or b.max_worst_class_drop is not None

    def _float_reference(self, executor: Any) -> dict[str, Any]:
        if self.opts.resume and "float_val" in self.results.read_run():
            return self.results.read_run()["float_val"]
        executor.submit(-1, BitConfig.uniform("fp32", self.space.names))
        _, res = executor.next_result()
        if not isinstance(res, EvalResult):
            raise HaqError(f"the float model could not be evaluated: {res.error}")
        return res.metrics.to_dict()

    def _write_run(self, float_val: dict[str, Any], resumed: bool) -> None:
        import optuna

        import haq

        info = {
            "haq": haq.__version__, "optuna": optuna.__version__, "python": sys.version.split()[0],
            "command": self.opts.command, "options": {k: v for k, v in asdict(self.opts).items() if k != "budgets"},
            "budgets": asdict(self.opts.budgets), "model": self.opts.model, "weights": self.opts.weights,
            "model_hash": self.model_hash, "target": self.opts.target, "cost_model": self.cost_model.name,
            "objectives": self.objectives, "space_size": self.space.size(), "n_layers": len(self.layers),
            "validation": {"source": self.calib, "limit": self.opts.val_limit}, "test": {"source": self.data},
            "float_val": float_val, "resumed": resumed,
        }  # fmt: skip
        if resumed:
            info["resumed_at"] = time.strftime("%Y-%m-%dT%H:%M:%S")
            info["first_started"] = self.results.read_run().get("first_started")
        else:
            info["first_started"] = time.strftime("%Y-%m-%dT%H:%M:%S")
        self.results.write_run(info)

    def _done(self, study: Any) -> int:
        import optuna

        states = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)
        return len(study.get_trials(deepcopy=False, states=states))

    def _loop(self, study: Any, executor: Any, float_val: dict[str, Any], started: float) -> None:
        from optuna.distributions import CategoricalDistribution

        opts = self.opts
        dists = {v: CategoricalDistribution(o) for v, o in self.space.variables()}
        inflight: dict[int, Candidate] = {}
        asked = self._done(study)
        progress = _Progress(opts.budget, asked, opts.progress, self)
        evaluated = self._evaluated_by_hash(study)
        while True:
            out_of_time = opts.time_limit is not None and time.time() - started > opts.time_limit
            while (
                not out_of_time and asked < opts.budget and executor.pending() < executor.capacity()
            ):
                t0 = time.perf_counter()
                trial = study.ask(dists)
                config = self.space.config(trial.params)
                cost = self.cost_model.score(config)
                fixed = self.repair(config, cost)
                asked += 1
                if fixed is None:
                    trial.set_user_attr("config", config.to_json())
                    trial.set_user_attr("cost", cost.to_dict())
                    trial.set_user_attr("status", "rejected: over budget, not repairable")
                    self._finish(study, trial, state=_pruned())
                    progress.update(study)
                    continue
                config, cost, repaired = fixed
                cand = Candidate(trial, config, cost, repaired, time.perf_counter() - t0)
                cached = evaluated.get(config.hash)
                if cached is not None:  # the same config again: reuse its metrics
                    self._tell(study, cand, cached, float_val, eval_seconds=0.0, cached=True)
                    progress.update(study)
                    continue
                inflight[trial.number] = cand
                executor.submit(trial.number, config)
            if not inflight:
                break
            number, outcome = executor.next_result()
            cand = inflight.pop(number)
            if isinstance(outcome, EvalResult):
                self._tell(study, cand, outcome.metrics, float_val, outcome.seconds, cached=False)
                evaluated[cand.config.hash] = outcome.metrics
            else:
                cand.trial.set_user_attr("config", cand.config.to_json())
                cand.trial.set_user_attr("status", f"failed: {outcome.error}")
                self._finish(study, cand.trial, state=_failed())
            progress.update(study)
        progress.close()

    def _evaluated_by_hash(self, study: Any) -> dict[str, Metrics]:
        out = {}
        for t in study.get_trials(deepcopy=False):
            if "metrics" in t.user_attrs and "config_hash" in t.user_attrs:
                out[t.user_attrs["config_hash"]] = Metrics(**t.user_attrs["metrics"])
        return out

    def _tell(self, study: Any, cand: Candidate, m: Metrics, float_val: dict[str, Any], eval_seconds: float,
              cached: bool) -> None:  # fmt: skip
        values = []
        for name in self.objectives:
            v = cost_value(name, cand.cost) if name in COST_OBJECTIVES else accuracy_value(name, m)
            values.append(float("nan") if v is None else float(v))
        t = cand.trial
        t.set_user_attr("config", cand.config.to_json())
        t.set_user_attr("config_hash", cand.config.hash)
        t.set_user_attr("summary", cand.config.summary())
        t.set_user_attr("metrics", m.to_dict())
        t.set_user_attr("cost", cand.cost.to_dict())
        t.set_user_attr("repaired", cand.repaired)
        t.set_user_attr("cached", cached)
        t.set_user_attr("eval_seconds", eval_seconds)
        t.set_user_attr("cost_seconds", cand.cost_seconds)
        constraint = self.opts.budgets.accuracy_constraints(m, float_val.get("worst_class_top1"))
        t.set_user_attr("constraint", constraint)
        feasible = all(c <= 0 for c in constraint)
        t.set_user_attr("status", "complete" if feasible else "infeasible: accuracy budget")
        if any(math.isnan(v) for v in values):
            self._finish(study, t, state=_failed())
        else:
            self._finish(study, t, values=values)

    def _finish(
        self, study: Any, trial: Any, values: list[float] | None = None, state: Any = None
    ) -> None:
        """Tell the study, then make the trial durable: SQLite, sampler state, trials.parquet."""
        trial.set_user_attr("trial", len(self.durable.get_trials(deepcopy=False)))
        if values is not None:
            study.tell(trial, values)
        else:
            study.tell(trial, state=state)
        self.durable.add_trial(study.trials[trial.number])
        self.results.save_sampler(study.sampler)
        self._write_trials(study)

    # Front and outputs --------------------------------------------------------------------
    def _frame(self, study: Any) -> pd.DataFrame:
        rows = []
        for t in study.get_trials(deepcopy=False):
            a = t.user_attrs
            m = a.get("metrics") or {}
            cost = a.get("cost") or {}
            row = {
                "trial": a.get("trial", t.number), "state": t.state.name.lower(), "status": a.get("status", t.state.name.lower()),
                "config": a.get("config"), "config_hash": a.get("config_hash"), "summary": a.get("summary"),
                "val_top1": m.get("top1"), "val_top5": m.get("top5"), "val_worst_class": m.get("worst_class"),
                "val_worst_class_top1": m.get("worst_class_top1"), "val_agreement": m.get("agreement"),
                "val_per_class": json.dumps(m.get("per_class")) if m.get("per_class") else None,
                "latency_ms": cost.get("latency_ms"), "energy_mj": cost.get("energy_mj"),
                "size_mb": cost["size_bytes"] / 1e6 if "size_bytes" in cost else None,
                "gbops": cost["bops"] / 1e9 if "bops" in cost else None, "cost_model": cost.get("model"),
                "repaired": a.get("repaired"), "cached": a.get("cached"), "eval_seconds": a.get("eval_seconds"),
                "cost_seconds": a.get("cost_seconds"),
                "started": t.datetime_start, "finished": t.datetime_complete,
            }  # fmt: skip
            for name, v in zip(
                self.objectives, t.values or [None] * len(self.objectives), strict=True
            ):
                row[f"obj_{name}"] = v
            rows.append(row)
        return pd.DataFrame(rows)

    def _write_trials(self, study: Any, test: dict[int, Metrics] | None = None) -> pd.DataFrame:
        frame = self._frame(study)
        if test and len(frame):
            frame["test_top1"] = frame["trial"].map(lambda n: test[n].top1 if n in test else None)
            frame["test_worst_class_top1"] = frame["trial"].map(
                lambda n: test[n].worst_class_top1 if n in test else None
            )
        self.results.write_trials(frame)
        return frame

    def _front(self, study: Any) -> list[Any]:
        import optuna

        from haq.pareto import non_dominated_mask

        trials = [t for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
                  if all(c <= 0 for c in t.user_attrs.get("constraint", []))]  # fmt: skip
        if not trials:
            return []
        values = np.array([t.values for t in trials], dtype=float)
        mask = non_dominated_mask(values, [DIRECTIONS[n] for n in self.objectives])
        front = [t for t, keep in zip(trials, mask, strict=True) if keep]
        # one point per distinct config (duplicates from cached re-proposals)
        seen: set[str] = set()
        unique = []
        for t in sorted(front, key=_tid):
            if t.user_attrs["config_hash"] not in seen:
                seen.add(t.user_attrs["config_hash"])
                unique.append(t)
        return unique

    def _test_front(self, front: list[Any]) -> dict[int, Metrics]:
        from haq.evaluate.pool import EvalSpec, make_executor

        spec = EvalSpec(self.opts.model, self.opts.weights, data=self.data, calib_data=self.calib,
                        limit=self.opts.test_limit, calib_limit=self.opts.calib_limit, seed=self.opts.seed)  # fmt: skip
        out: dict[int, Metrics] = {}
        if self.opts.progress:
            print(
                f"re-evaluating {len(front)} front points on the test images ({self.data})",
                file=sys.stderr,
            )
        with make_executor(spec, min(self.opts.workers, len(front)), self.opts.ray_address) as ex:
            for t in front:
                ex.submit(_tid(t), BitConfig.from_dict(json.loads(t.user_attrs["config"])))
            for _ in front:
                number, res = ex.next_result()
                if isinstance(res, EvalResult):
                    out[number] = res.metrics
        return out

    def _write_outputs(
        self, study: Any, front: list[Any], test: dict[int, Metrics], float_val: dict[str, Any]
    ) -> None:
        self._write_trials(study, test)
        points, configs = [], {}
        baselines = {c.hash: label for label, c in self.space.seeds().items()}
        for t in front:
            cfg = BitConfig.from_dict(json.loads(t.user_attrs["config"]))
            name = f"trial-{_tid(t):04d}"
            configs[name] = cfg.to_yaml()
            tm = test.get(_tid(t))
            points.append({
                "name": name, "trial": _tid(t), "summary": t.user_attrs["summary"],
                "baseline": baselines.get(cfg.hash),
                "objectives": dict(zip(self.objectives, t.values, strict=True)),
                "val": t.user_attrs["metrics"], "test": tm.to_dict() if tm else None,
                "cost": t.user_attrs["cost"], "config": cfg.to_dict(), "config_file": f"configs/{name}.yaml",
            })  # fmt: skip
        payload = {"objectives": {n: DIRECTIONS[n] for n in self.objectives}, "units": {n: UNITS[n] for n in self.objectives},
                   "model": self.opts.model, "target": self.opts.target, "float_val": float_val,
                   "hypervolume": self._hypervolume(front), "points": points}  # fmt: skip
        self.results.write_front(payload, configs)

    def _hypervolume(self, front: list[Any]) -> float | None:
        """Hypervolume of the front on normalised axes (accuracy / 100, cost / reference cost),
        with a fixed reference (accuracy 0, 1.1x the costliest baseline), so it only grows."""
        from haq.pareto import hypervolume

        if not front:
            return None
        if not hasattr(self, "_hv_scale"):
            costs = [self.cost_model.score(c) for c in self.space.baselines().values()] or [
                self.cost_model.score(self.space.config({v: o[0] for v, o in self.space.variables()}))]  # fmt: skip
            self._hv_scale = [100.0 if n not in COST_OBJECTIVES else
                              1.1 * max((cost_value(n, c) or 0.0) for c in costs) or 1.0 for n in self.objectives]  # fmt: skip
        values = np.array([t.values for t in front], dtype=float) / np.array(self._hv_scale)
        dirs = [DIRECTIONS[n] for n in self.objectives]
        ref = np.array([0.0 if d == "maximize" else 1.0 for d in dirs])
        return float(hypervolume(values, dirs, ref))


def _tid(trial: Any) -> int:
    """A trial's id in the results (its number in the on-disk study)."""
    return int(trial.user_attrs.get("trial", trial.number))


def _sqlite_storage(path: Path) -> Any:
    """Optuna RDB storage on SQLite in WAL mode: durable across kill -9, fewer fsyncs."""
    import optuna
    from sqlalchemy import event

    storage = optuna.storages.RDBStorage(f"sqlite:///{path.resolve()}")

    def pragmas(conn: Any, _record: Any) -> None:
        cur = conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.close()

    event.listen(storage.engine, "connect", pragmas)
    storage.engine.dispose()
    return storage


def _constraints_from_attrs(trial: Any) -> list[float]:
    return list(trial.user_attrs.get("constraint", []))


def _pruned() -> Any:
    import optuna

    return optuna.trial.TrialState.PRUNED


def _failed() -> Any:
    import optuna

    return optuna.trial.TrialState.FAIL


@dataclass
class SearchResultFiles:
    path: Path
    objectives: list[str]


class _Progress:
    """One status line on stderr: trials done / budget, evaluations per minute, front size, ETA."""

    def __init__(self, budget: int, start_done: int, enabled: bool, search: Search) -> None:
        self.budget = budget
        self.start_done = start_done
        self.enabled = enabled
        self.search = search
        self.t0 = time.time()
        self.tty = sys.stderr.isatty()
        self.last_print = 0.0

    def update(self, study: Any) -> None:
        if not self.enabled:
            return
        done = self.search._done(study)
        now = time.time()
        if self.tty or now - self.last_print > 5 or done >= self.budget:
            rate = (done - self.start_done) / max(now - self.t0, 1e-9) * 60
            left = self.budget - done
            eta = left / rate * 60 if rate > 0 else float("nan")
            front = self.search._front(study)
            hv = self.search._hypervolume(front)
            line = (f"[{done:>4}/{self.budget}] {rate:5.1f} trials/min | front {len(front)} | "
                    f"HV {hv if hv is not None else float('nan'):.4g} | ETA {_fmt_secs(eta)}")  # fmt: skip
            print(
                ("\r" + line) if self.tty else line,
                end="" if self.tty else "\n",
                file=sys.stderr,
                flush=True,
            )
            self.last_print = now

    def close(self) -> None:
        if self.enabled and self.tty:
            print(file=sys.stderr)


def _fmt_secs(s: float) -> str:
    if not math.isfinite(s):
        return "--"
    s = int(s)
    return f"{s // 60}m{s % 60:02d}s" if s >= 60 else f"{s}s"
