"""One search run (new or resumed) over one results directory: set-up, loop, front, outputs.

The model is loaded once in this process: the serial evaluator, the sensitivity proxies and
the final test re-scoring share its one calibrated `Quantizer` (Ray actors load their own
copy, once per actor). The driver proposes through `SearchLoop`; every finished trial is a
`TrialRecord` written to the Optuna study and the results files at once. At the end the front
is re-evaluated on the test images, which never steer the search.
"""

from __future__ import annotations

import sys
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from haq.config import BitConfig
from haq.cost.base import CostModel
from haq.data import DataSplit
from haq.errors import HaqError
from haq.evaluate.evaluator import EvalResult, LocalEvaluator
from haq.evaluate.metrics import Metrics
from haq.progress import emit, task
from haq.search.budgets import BudgetGuard
from haq.search.data_roles import calib_source, data_free_defaults
from haq.search.drivers import DriverContext, get_driver
from haq.search.front import FrontScale, front_records
from haq.search.objectives import (
    COST_OBJECTIVES,
    DIRECTIONS,
    UNITS,
    cost_value,
    parse_objectives,
)
from haq.search.options import SearchOptions
from haq.search.results import ResultsDir, trials_frame
from haq.search.space import SearchSpace, space_for
from haq.search.trials import COMPLETE, TrialRecord


def _default_out(opts: SearchOptions) -> Path:
    stamp = time.strftime("%Y%m%d-%H%M%S")
    name = opts.model.replace(":", "_").replace("/", "_")
    return Path("runs") / f"{name}-{opts.target or 'none'}-{stamp}"


FLOAT_TRIAL = -1  # the float model's key among the test re-scorings
TRIALS_REWRITES = 100  # trials.parquet is rewritten once per 1 % of the trials so far


class Search:
    """One search run (new or resumed) over one results directory."""

    def __init__(self, opts: SearchOptions) -> None:
        from haq.models import discover_layers, load_model
        from haq.models.fingerprint import state_hash

        self.opts = opts
        self._trials_written = 0  # trials in the last trials.parquet write
        self._placement: dict[str, int] | None = None  # Ray node -> workers, once started
        self.worker_restarts = 0
        if opts.budget < 1:
            raise HaqError(f"--budget must be at least 1 trial, not {opts.budget}")
        if opts.workers < 0:
            raise HaqError(f"--workers must be 0 (serial) or more, not {opts.workers}")
        if opts.ray_address is not None:  # fail in seconds, before the model loads
            from haq.evaluate.ray_address import check_reachable

            check_reachable(opts.ray_address)
        self.split = (
            DataSplit(opts.val_split, opts.data_seed) if opts.val_split is not None else None
        )
        from haq.ptq import ptq_choices
        from haq.quant.settings import QuantSettings

        self.ptq = ptq_choices(opts.ptq)  # the first is every candidate's unless a driver picks
        self.settings = QuantSettings(ptq=self.ptq[0], adaround_iterations=opts.adaround_iterations,
                                      group_size=opts.group_size)  # fmt: skip
        self.driver_info = get_driver(opts.driver)
        self.driver = self.driver_info.make(opts.driver_options)
        self.results = ResultsDir(opts.out or _default_out(opts))
        if opts.resume and not self.results.exists():
            raise HaqError(
                f"nothing to resume in {self.results.path}; pass the results dir of an earlier search"
            )
        if not opts.resume and self.results.exists():
            raise HaqError(
                f"{self.results.path} already holds a search; pass --resume {self.results.path} or a new --out"
            )
        if not opts.resume and self.results.clear_unstarted() and opts.progress:
            emit("note", f"{self.results.path}: removed a search start that never reached its "
                 "first trial (stopped during set-up)")  # fmt: skip
        self.results.check_writable()  # before minutes of loading, sensitivity and profiling
        self.loaded = load_model(opts.model, opts.weights, opts.tokens)
        self.text = self.loaded.preprocess.is_text
        if self.text:
            self._text_defaults()
        self.settings = replace(self.settings, weight_only_mapping=opts.weight_only_mapping)
        self.layers = discover_layers(self.loaded.model, self.loaded.example_input())
        self.model_hash = state_hash(self.loaded.model)
        self.cost_model, can_run = self._cost_model()
        if self.text:
            self._warn_unprofiled_group_size()
        self.data = opts.data or self.loaded.entry.default_data
        if not self.data:  # no images given and none built in
            self.data = data_free_defaults(opts)
            self.split = DataSplit(opts.val_split, opts.data_seed)
        labels = not self.data.startswith("distilled")
        accuracy = "cosine" if self.text else ("top1" if labels else "fidelity")
        default = f"{accuracy},latency" if opts.target else f"{accuracy},size"
        self.objectives = parse_objectives(opts.objectives or default)
        self.space = SearchSpace.build(self.layers, opts.space, can_run, opts.pins, opts.ties,
                                       self.ptq)  # fmt: skip
        self.calib = calib_source(opts, self.data)
        self.val_source = self.data if self.split else self.calib
        self._check_data()
        from haq.search.profiling import note_other_machine, profile_missing

        if profile_missing(opts, self.cost_model, self.space, self.layers):
            self.cost_model, _ = self._cost_model()  # now with the measured rows
        note_other_machine(opts, self.cost_model)
        if opts.calib_limit is None:
            opts.calib_limit = 64 if self.calib.startswith("digits") else 256
        self._check_objectives()
        self.guard = BudgetGuard(self.space, self.cost_model, opts.budgets)
        self.guard.check_possible()
        self.scale = FrontScale(self.space, self.cost_model, self.objectives)
        self.eval_cache = self._eval_cache(test=False)  # a bad file fails before any results
        if opts.measure_front:  # a target whose runtime is not here fails now, not at the end
            from haq.search.measure import measurable_target

            measurable_target(opts.target)
        if opts.report:
            from haq.report.html import require_plotly

            require_plotly()  # a missing extra fails now, not after the search

    # Set-up checks ------------------------------------------------------------------------
    def _warn_unprofiled_group_size(self) -> None:
        """cpu-avx512's text rows time MatMulNBits at one block size; say when the search's
        group size is priced from another (its latency is not what the tables measured)."""
        from haq.hardware.ort.target import TARGET, TEXT_GROUP_SIZE

        size = self.settings.group_size
        if self.opts.target == TARGET and size != TEXT_GROUP_SIZE:
            emit("warning", f"{TARGET} timed text models' MatMulNBits at blocks of "
                 f"{TEXT_GROUP_SIZE}; --group-size {size} is priced from those rows (groups of 32 "
                 "measured 1.2x slower than 128: experiments/text_weight_grids.py)")  # fmt: skip

    def _text_defaults(self) -> None:
        """A text model runs ORT's CPU Linear kernels (`text_settings`); without calibration
        sentences of their own, half the text set validates (and calibrates) and half tests."""
        from haq.export.matmul_nbits import check_block_size
        from haq.quant.settings import text_settings

        self.settings = text_settings(self.settings)
        check_block_size(self.settings.group_size, "weight-only Linears")
        o = self.opts
        o.space = space_for(o.space, text=True)
        if o.val_split is None and o.calib_data is None and not o.resume:
            o.val_split = 0.5
            self.split = DataSplit(o.val_split, o.data_seed)

    def _check_data(self) -> None:
        """Fail now, not after the search, when test or calibration data do not fit the model."""
        from haq.data import load_data

        for source in dict.fromkeys((self.calib, self.data)):
            load_data(source, self.loaded.preprocess, limit=2, model=self.loaded.model,
                      num_classes=self.loaded.entry.num_classes)  # fmt: skip

    def _cost_model(self) -> tuple[CostModel, Any]:
        from haq.cost.size_bops import SizeBopsModel

        self.target_info: dict[str, Any] | None = None
        if self.opts.target is None:
            o = self.settings.cost_options
            return SizeBopsModel(self.layers, o["weight_only_group"],
                                 o["weight_only_zero_points"]), None  # fmt: skip
        from haq.cost import cost_model_for
        from haq.hardware.profile import get_target

        profile = get_target(self.opts.target)
        self.target_info = {"id": profile.id, "kind": profile.kind,
                            "provenance": profile.provenance, "source": profile.source}  # fmt: skip
        s = self.settings
        model = cost_model_for(self.opts.target, self.layers, threads=self.opts.threads,
                               calibration=self._calibration(), **s.cost_options)  # fmt: skip
        return model, lambda kind, p: model.profile.can_run(kind, p, *s.kernel_args(p))

    def _calibration(self) -> Any:
        """A new search scales by the network's measured configs ("auto"); a resumed one keeps
        the scale its first run scored its trials with (none for runs from before it)."""
        if not self.opts.resume:
            return "auto"
        return self.results.read_run().get("cost_calibration")

    def _check_objectives(self) -> None:
        from haq.search.objectives import TEXT_OBJECTIVES

        accuracy = [n for n in self.objectives if n not in COST_OBJECTIVES]
        wrong = [n for n in accuracy if (n in TEXT_OBJECTIVES) != self.text]
        if wrong:
            fits = "cosine, retrieval" if self.text else "top1, fidelity, worst_class"
            raise HaqError(f"objective {wrong[0]} does not fit {self.opts.model} "
                           f"({'a text' if self.text else 'an image'} model); use {fits}")  # fmt: skip
        labelled = [n for n in accuracy if n in ("top1", "worst_class")]
        if labelled and self.data.startswith("distilled"):
            raise HaqError(f"objective {labelled[0]} needs labelled images, and distilled ones "
                           "have none; use fidelity (agreement with the float model) or pass "
                           "--data DIR")  # fmt: skip
        probe = self.cost_model.score(next(iter(self.space.baselines().values()), self.space.config(
            {v: opts[0] for v, opts in self.space.variables()})))  # fmt: skip
        for name in self.objectives:
            if name in COST_OBJECTIVES and cost_value(name, probe) is None:
                where = f"target {self.opts.target}" if self.opts.target else "no --target"
                raise HaqError(
                    f"{where} cannot score '{name}'; drop it from --objectives or pick a target that measures it"
                )

    # Evaluation ---------------------------------------------------------------------------
    def _spec(self, test: bool) -> Any:
        from haq.evaluate.pool import EvalSpec

        o = self.opts
        split = self.split.of("test" if test else "val") if self.split else None
        return EvalSpec(o.model, o.weights, data=self.data if test else self.val_source,
                        calib_data=self.calib, limit=o.test_limit if test else o.val_limit,
                        calib_limit=o.calib_limit, seed=o.data_seed, split=split,
                        settings=self.settings, tokens=o.tokens)  # fmt: skip

    @property
    def _serial(self) -> bool:
        return self.opts.workers == 0 and self.opts.ray_address is None

    def _local(self) -> Any:
        """The in-process validation setup (model loaded once, calibrated once). With Ray
        actors validating, this process needs only its calibration images (sensitivity)."""
        if not hasattr(self, "_setup"):
            spec = self._spec(test=False)
            self._setup = (spec if self._serial else replace(spec, limit=1)).setup(self.loaded)
        return self._setup

    def _executor(self, test: bool, workers: int) -> Any:
        from haq.evaluate.pool import RayExecutor, SerialExecutor
        from haq.evaluate.setup import evaluator_on

        if workers == 0 and self.opts.ray_address is None:
            setup = self._local()
            if not test:
                return SerialExecutor(self._spec(False), setup.evaluator)
            spec = self._spec(True)
            return SerialExecutor(spec, evaluator_on(setup, spec.data, spec.calib_data, limit=spec.limit,
                                                     seed=spec.seed, split=spec.split))  # fmt: skip
        n = max(1, workers)
        if self.opts.progress:  # each actor builds the model and its images: tens of seconds
            emit("note", f"starting {n} Ray worker{'s' if n > 1 else ''} for the "
                 f"{'test' if test else 'validation'} images (each loads {self.opts.model} "
                 "and calibrates)", workers=n)  # fmt: skip
        return RayExecutor(self._spec(test), n, self.opts.ray_address)

    def deploy_quantizer(self) -> Any:
        """The calibrated `Quantizer` exports are made from (no validation images decoded when
        this process holds none yet)."""
        if hasattr(self, "_setup"):
            return self._setup.quantizer
        return replace(self._spec(test=False), limit=1).setup(self.loaded).quantizer

    def test_setup(self) -> Any:
        """The `EvalSetup` the final re-scoring uses (test images, calibrated quantizer)."""
        return self._spec(test=True).setup(self.loaded)

    def _learn_roundings(self) -> None:
        """Under a learned rounding, learn every (layer, weight bits) rounding of the space once, here,
        before any actor starts: actors and later searches load them from the disk cache."""
        if not self.settings.learned_rounding:
            return
        quantizer = self._local().quantizer
        assert quantizer.rounding is not None  # the validation setup always calibrates
        quantizer.rounding.prepare(quantizer.rounding_keys(
            (name, p) for name, choices in self.space.choices.items() for p in choices))  # fmt: skip

    def _sensitivity(self) -> Any:
        """Proxies on the calibration images; nothing is loaded until a driver asks."""
        from haq.search.sensitivity import SensitivitySource

        def evaluator() -> LocalEvaluator:
            setup = self._local()
            if setup.calib is None:
                raise HaqError("sensitivity needs calibration images; pass --calib-data DIR")
            return LocalEvaluator(setup.quantizer, setup.calib)

        o = self.opts
        return SensitivitySource(
            evaluator,
            self.model_hash,
            progress=o.progress,
            validation_key=self._images_key(test=False),
        )

    def _images_key(self, test: bool) -> str:
        """Identity of the validation (or test) images and the calibration images."""
        from haq.search.sensitivity import validation_key

        o = self.opts
        split = self.split.of("test" if test else "val") if self.split else None
        source, limit = (self.data, o.test_limit) if test else (self.val_source, o.val_limit)
        return validation_key(source, self.calib, limit, o.calib_limit, o.data_seed, split)

    def _eval_cache(self, test: bool) -> Any:
        """The shared evaluation cache of this model, settings and images (None: off)."""
        if self.opts.eval_cache is None:
            return None
        from haq.search.eval_cache import EvaluationCache, context_key

        context = context_key(self.model_hash, self.settings, self._images_key(test))
        return EvaluationCache(Path(self.opts.eval_cache), context)

    # Run ----------------------------------------------------------------------------------
    def driver_context(self) -> DriverContext:
        """What the driver is started with (its sensitivity proxies load only when asked)."""
        o = self.opts
        self.sensitivity = self._sensitivity()
        directions = [DIRECTIONS[n] for n in self.objectives]
        return DriverContext(self.space, self.objectives, directions, self.cost_model, self.guard,
                             o.budget, o.seed, self.sensitivity, max(1, o.workers))  # fmt: skip

    def run(self) -> SearchResultFiles:
        from haq.search.loop import SearchLoop
        from haq.search.storage import StudyStore

        opts = self.opts
        started = time.time()
        ctx = self.driver_context()
        directions = ctx.directions

        def store() -> StudyStore:
            return StudyStore(self.results.study_db, self.space, self.objectives, directions,
                              opts.resume, {"cost_provenance": self._cost_provenance()})  # fmt: skip

        self._learn_roundings()  # before the driver's sensitivity pass evaluates any config
        if opts.resume:
            durable = store()
            history = durable.history()
            self.driver.start(ctx, history, self.results.load_driver_state())
        else:  # a driver that refuses its options or space leaves no results dir behind
            history = []
            self.driver.start(ctx, history, None)
            self.results.create()
            durable = store()
        self.results.write_layers(self.layers)
        with self._executor(test=False, workers=opts.workers) as executor:
            self._placement = getattr(executor, "placement", None)
            if self._placement and opts.progress:
                emit("note", f"Ray: {sum(self._placement.values())} workers on "
                     f"{len(self._placement)} node{'s' if len(self._placement) > 1 else ''}",
                     placement=self._placement)  # fmt: skip
            float_val = self._float_reference(executor)
            self._write_run(float_val, resumed=opts.resume)
            loop = SearchLoop(ctx, self.driver, executor, durable, self.scale, float_val.get("worst_class_top1"),
                              on_record=self._write_trials, save_state=self.results.save_driver_state,
                              time_limit=opts.time_limit, progress=opts.progress,
                              eval_cache=self.eval_cache)  # fmt: skip
            records = loop.run(history)
            # evaluation workers replaced after they died (a killed process, a lost node)
            self.worker_restarts = getattr(executor, "restarts", 0)
        front = front_records(records, self.objectives)
        baselines = self._baseline_records(records)
        rescore = {r.number: r.config for r in [*front, *baselines.values()]}
        rescore[FLOAT_TRIAL] = BitConfig.uniform("fp32", self.space.names)
        test = self._test_front(rescore) if front else {}
        durable.annotate({n: {"test_top1": m.top1, "test_worst_class_top1": m.worst_class_top1}
                          for n, m in test.items()})  # fmt: skip
        self._write_outputs(records, front, baselines, test, float_val, time.time() - started,
                            loop.exhausted)  # fmt: skip
        if opts.measure_front and front:
            from haq.search.measure import MeasureOptions, measure_front

            measure_front(self.results.path, MeasureOptions(threads=opts.threads, progress=opts.progress),
                          search=self)  # fmt: skip
        if opts.report:
            from haq.report import write_report

            write_report([self.results.path], self.results.path / "report.html")
        return SearchResultFiles(self.results.path, self.objectives)

    def _cost_provenance(self) -> str:
        """One line: which cost model scores latency, and where the target's numbers come from."""
        t = self.target_info
        where = f"{t['id']} ({t['provenance']}: {t['source']})" if t else "no target"
        return f"{self.cost_model.name} on {where}"

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
            "cost_calibration": getattr(self.cost_model, "calibration", None),
            "target_provenance": self.target_info,
            "driver": self.opts.driver, "objectives": self.objectives, "space_size": self.space.size(),
            "n_layers": len(self.layers), "float_val": float_val, "resumed": resumed,
            "validation": {"source": self.val_source, "limit": self.opts.val_limit,
                           "split": asdict(self.split.of("val")) if self.split else None},
            "test": {"source": self.data, "split": asdict(self.split.of("test")) if self.split else None},
            "ray_workers_per_node": self._placement,
        }  # fmt: skip
        if resumed:
            info["resumed_at"] = time.strftime("%Y-%m-%dT%H:%M:%S")
            info["first_started"] = self.results.read_run().get("first_started")
        else:
            info["first_started"] = time.strftime("%Y-%m-%dT%H:%M:%S")
        self.results.write_run(info)

    # Front and outputs --------------------------------------------------------------------
    def _write_trials(
        self,
        records: list[TrialRecord],
        test: dict[int, Metrics] | None = None,
        final: bool = False,
    ) -> None:
        """trials.parquet: after every trial while the run is small, then every 1 % of the
        trials so far (a whole-file rewrite per trial grew with the trial count; the study
        holds every trial at once, so a kill loses nothing)."""
        if not final and len(records) - self._trials_written < max(
            1, len(records) // TRIALS_REWRITES
        ):
            return
        self.results.write_trials(trials_frame(records, self.objectives, test, self.settings.ptq))
        self._trials_written = len(records)

    def _baseline_records(self, records: list[TrialRecord]) -> dict[str, TrialRecord]:
        """The evaluated uniform baselines and deployment variants, by label."""
        seeds = {c.hash: label for label, c in self.space.seeds().items()}
        out: dict[str, TrialRecord] = {}
        for r in records:
            label = seeds.get(r.config.hash)
            if label and label not in out and r.state == COMPLETE and r.metrics is not None:
                out[label] = r
        return out

    def _test_front(self, configs: dict[int, BitConfig]) -> dict[int, Metrics]:
        """Test metrics by trial number (`FLOAT_TRIAL`: the float model, the per-class reference)."""
        cache = self._eval_cache(test=True)
        out: dict[int, Metrics] = {}
        todo = []
        for number, config in configs.items():
            hit = cache.get(config) if cache is not None else None
            if hit is not None:
                out[number] = hit
            else:
                todo.append(number)
        if not todo:
            return out
        step = f"re-scoring {len(todo)} front points and baselines on the test images ({self.data})"
        with (task(step, len(todo), "configs", enabled=self.opts.progress) as t,
              self._executor(test=True, workers=min(self.opts.workers, len(todo))) as ex):  # fmt: skip
            for number in todo:
                ex.submit(number, configs[number])
            for _ in range(len(todo)):
                number, res = ex.next_result()
                if isinstance(res, EvalResult):
                    out[number] = res.metrics
                    if cache is not None:
                        cache.put(configs[number], res.metrics)
                t.advance()
        return out

    def _write_outputs(self, records: list[TrialRecord], front: list[TrialRecord],
                       baselines: dict[str, TrialRecord], test: dict[int, Metrics], float_val: dict[str, Any], wall: float,
                       exhausted: bool) -> None:  # fmt: skip
        self._write_trials(records, test, final=True)
        points, configs = [], {}
        seed_labels = {c.hash: label for label, c in self.space.seeds().items()}
        for r in front:
            name = f"trial-{r.number:04d}"
            # the file names any refinement it was scored with: export needs no --ptq
            plain = r.config.ptq is not None or self.settings.ptq == "none"
            configs[name] = (r.config if plain else r.config.with_ptq(self.settings.ptq)).to_yaml()
            tm = test.get(r.number)
            assert r.values is not None and r.metrics is not None and r.cost is not None
            points.append({
                "name": name, "trial": r.number, "config_hash": r.config.hash, "summary": r.config.summary(),
                "baseline": seed_labels.get(r.config.hash), "source": r.source,
                "objectives": dict(zip(self.objectives, r.values, strict=True)),
                "val": r.metrics.to_dict(), "test": tm.to_dict() if tm else None,
                "cost": r.cost.to_dict(), "config": r.config.to_dict(), "config_file": f"configs/{name}.yaml",
            })  # fmt: skip
        evaluations = sum(1 for r in records if r.metrics is not None and not r.cached)
        by_source: dict[str, int] = {}
        for r in records:
            if r.metrics is not None and not r.cached:
                by_source[r.source] = by_source.get(r.source, 0) + 1
        sens = self.sensitivity.last
        payload = {
            "objectives": {n: DIRECTIONS[n] for n in self.objectives}, "units": {n: UNITS[n] for n in self.objectives},
            "model": self.opts.model, "target": self.opts.target, "driver": self.opts.driver,
            "float_val": float_val, "hypervolume": self.scale.hypervolume(front), "points": points,
            "baselines": {label: {"trial": r.number, "config_hash": r.config.hash, "summary": r.config.summary(),
                                  "objectives": dict(zip(self.objectives, r.values or [], strict=False)),
                                  "val": r.metrics.to_dict() if r.metrics else None,
                                  "test": test[r.number].to_dict() if r.number in test else None,
                                  "cost": r.cost.to_dict() if r.cost else None}
                          for label, r in baselines.items()},
            "trials": len(records), "evaluations": evaluations, "evaluations_by_source": by_source,
            "sensitivity": {  # proxies on calibration images cost no evaluation; measured drops do
                "proxy_images": sens.images if sens else None, "proxy_rows": len(sens.rows) if sens else 0,
                "proxy_seconds": round(sens.seconds, 2) if sens else 0.0,
                "evaluations": by_source.get("sensitivity", 0),
            },
            "driver_exhausted": exhausted, "wall_seconds": round(wall, 2),
            "worker_restarts": self.worker_restarts,
            "float_test": test[FLOAT_TRIAL].to_dict() if FLOAT_TRIAL in test else None,
            "hypervolume_axes": {"scale": self.scale.scale.tolist(), "reference": self.scale.ref.tolist()},
        }  # fmt: skip
        self.results.write_front(payload, configs)
        if sens is not None:
            self.results.write_sensitivity(sens.rows)


@dataclass
class SearchResultFiles:
    path: Path
    objectives: list[str]
