"""Parallel evaluation: executors that score many configs at once, results as they finish.

`EvalSpec` says how to rebuild an evaluator anywhere (model, weights, data, settings), so a
worker process loads the model, decodes the data and calibrates ONCE, then scores any number
of configs. Two executors share one interface (`submit` / `next_result` / `pending` /
`capacity` / `close`), so a search loop (Optuna ask/tell) does not care which it drives:

- `SerialExecutor` (``--workers 0``): in this process, one config at a time.
- `RayExecutor`: a pool of Ray actors, each holding its own evaluator; ``address=None``
  starts (or reuses) a local Ray, ``"auto"`` / ``"ray://host:port"`` joins a cluster.

A failed evaluation (the worker process died, or the task raised) is retried once, on a fresh
actor when the old one died; after that the trial comes back as an `EvalFailure` and the pool
keeps working. A `HaqError` (a config the model cannot take) is deterministic and not retried.
Ray is imported only inside `RayExecutor`, so ``import haq`` stays light.
"""

from __future__ import annotations

import os
import sys
import time
from collections import Counter, deque
from dataclasses import dataclass, field
from types import TracebackType
from typing import TYPE_CHECKING, Any

from haq.config import BitConfig
from haq.data import DataSplit
from haq.errors import HaqError
from haq.evaluate.evaluator import EvalResult, LocalEvaluator
from haq.evaluate.setup import DEFAULT_CALIB_LIMIT, EvalSetup
from haq.quant.settings import QuantSettings

if TYPE_CHECKING:
    from collections.abc import Iterable

    from haq.models import LoadedModel

MAX_ATTEMPTS = 2  # first try + one retry


@dataclass(frozen=True)
class EvalSpec:
    """Everything a worker needs to rebuild the evaluator (all picklable, no tensors).

    ``model`` is a registry name or ``package.module:factory``; ``data`` / ``calib_data`` are
    source names or directories as `build_setup` takes them. ``threads_per_worker`` is the
    torch intra-op thread count of each worker (None: the executor picks, see `RayExecutor`).
    ``crash_on_trial`` is a test hook: ``(trial_id, n)`` pairs make the first ``n`` attempts
    of that trial kill the worker process (raise, in `SerialExecutor`).
    """

    model: str
    weights: str = "default"
    data: str | None = None
    calib_data: str | None = None
    limit: int | None = None
    calib_limit: int | None = DEFAULT_CALIB_LIMIT
    seed: int = 0
    settings: QuantSettings | None = None
    needs_calibration: bool = True
    batch_size: int = 256
    threads_per_worker: int | None = None
    split: DataSplit | None = None
    tokens: int | None = None  # a text model's sequence length (None: the entry's)
    crash_on_trial: tuple[tuple[int, int], ...] = field(default=(), repr=False)

    def setup(self, loaded: LoadedModel | None = None) -> EvalSetup:
        """Load model (unless ``loaded`` is the same model already in memory) and data,
        calibrate: the whole `EvalSetup`."""
        from haq.evaluate.setup import build_setup

        return build_setup(
            loaded if loaded is not None else self.model,
            self.weights,
            self.data,
            self.calib_data,
            limit=self.limit,
            calib_limit=self.calib_limit,
            seed=self.seed,
            settings=self.settings,
            needs_calibration=self.needs_calibration,
            batch_size=self.batch_size,
            split=self.split,
            tokens=self.tokens,
        )

    def build(self) -> LocalEvaluator:
        """A ready in-process evaluator."""
        return self.setup().evaluator

    def crashes_for(self, trial_id: int) -> int:
        return dict(self.crash_on_trial).get(trial_id, 0)


@dataclass
class EvalFailure:
    """A trial that failed ``attempts`` times; ``error`` is the last error, one line."""

    trial_id: int
    config: BitConfig
    error: str
    attempts: int


Outcome = EvalResult | EvalFailure


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}".rstrip(": ")


class Executor:
    """The interface both executors share, plus a context manager and `evaluate_all`."""

    def submit(self, trial_id: int, config: BitConfig) -> None:
        raise NotImplementedError

    def next_result(self, timeout: float | None = None) -> tuple[int, Outcome]:
        raise NotImplementedError

    def pending(self) -> int:
        raise NotImplementedError

    def capacity(self) -> int:
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError

    def evaluate_all(self, configs: Iterable[BitConfig | str]) -> list[Outcome]:
        """Score ``configs`` (trial ids 0..n-1 here), results in input order."""
        if self.pending():
            raise HaqError("evaluate_all needs an idle executor; collect pending results first")
        cfgs = [BitConfig.from_spec(c) for c in configs]
        for i, c in enumerate(cfgs):
            self.submit(i, c)
        out: dict[int, Outcome] = {}
        while self.pending():
            tid, res = self.next_result()
            out[tid] = res
        return [out[i] for i in range(len(cfgs))]

    def __enter__(self) -> Executor:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


class SerialExecutor(Executor):
    """In-process evaluation, one config at a time (``--workers 0``).

    Submissions are queued; each `next_result` call evaluates the oldest one (``timeout`` is
    ignored: an evaluation in this process cannot be interrupted). Builds the evaluator on
    construction; ``evaluator`` reuses one already built from the same spec.
    """

    def __init__(self, spec: EvalSpec, evaluator: LocalEvaluator | None = None) -> None:
        import torch

        self.spec = spec
        self._saved_threads: int | None = None
        if spec.threads_per_worker is not None:
            self._saved_threads = torch.get_num_threads()
            torch.set_num_threads(spec.threads_per_worker)
        self.evaluator = evaluator if evaluator is not None else spec.build()
        self._queue: deque[tuple[int, BitConfig]] = deque()

    def submit(self, trial_id: int, config: BitConfig) -> None:
        self._queue.append((trial_id, BitConfig.from_spec(config)))

    def next_result(self, timeout: float | None = None) -> tuple[int, Outcome]:
        if not self._queue:
            raise HaqError("no evaluations pending; submit a config first")
        trial_id, config = self._queue.popleft()
        error = ""
        for attempt in range(MAX_ATTEMPTS):
            try:
                if attempt < self.spec.crashes_for(trial_id):
                    raise RuntimeError(f"simulated crash of trial {trial_id}")
                return trial_id, self.evaluator.evaluate(config)
            except HaqError as exc:
                return trial_id, EvalFailure(trial_id, config, _one_line(exc), attempt + 1)
            except Exception as exc:
                error = _one_line(exc)
        return trial_id, EvalFailure(trial_id, config, error, MAX_ATTEMPTS)

    def pending(self) -> int:
        return len(self._queue)

    def capacity(self) -> int:
        return 1

    def close(self) -> None:
        self._queue.clear()
        if self._saved_threads is not None:
            import torch

            torch.set_num_threads(self._saved_threads)
            self._saved_threads = None


class _Worker:
    """The body of one Ray actor: builds the evaluator once, then scores configs."""

    def __init__(self, spec: EvalSpec, threads: int, env: dict[str, str], cwd: str | None) -> None:
        os.environ.update(env)
        if cwd is not None and os.path.isdir(cwd):
            os.chdir(cwd)  # relative data paths and `file.py:factory` models, as in the driver
            if cwd not in sys.path:
                sys.path.insert(0, cwd)
        import torch

        torch.set_num_threads(threads)
        self.spec = spec
        self.evaluator: LocalEvaluator | None = None
        self.error: Exception | None = None
        try:
            self.evaluator = spec.build()
        except Exception as exc:  # kept, so calls raise it as a task error with its cause
            self.error = exc

    def _ready_evaluator(self) -> LocalEvaluator:
        if self.evaluator is None:
            raise self.error or RuntimeError("worker has no evaluator")
        return self.evaluator

    def ready(self) -> tuple[int, str]:
        """(pid, Ray node id): where this worker runs."""
        import ray

        self._ready_evaluator()
        return os.getpid(), ray.get_runtime_context().get_node_id()

    def evaluate(self, trial_id: int, config: BitConfig, attempt: int) -> EvalResult:
        if attempt < self.spec.crashes_for(trial_id):
            os._exit(1)  # test hook: the process dies as in a segfault or an OOM kill
        return self._ready_evaluator().evaluate(config)


@dataclass
class _Task:
    trial_id: int
    config: BitConfig
    attempt: int = 0
    error: str = ""


class RayExecutor(Executor):
    """A pool of ``workers`` Ray actors, each holding model, calibration and data once.

    ``address=None`` starts a local Ray sized to the pool (or reuses a running one);
    ``"auto"`` or ``"ray://host:port"`` connects to a cluster (haq must be installed on its
    nodes, or pass ``runtime_env``). Threads per worker default to ``cpu_count // workers``
    on a local Ray (1 per worker on this 2-core machine with 2 workers) and 1 on a cluster;
    each actor reserves that many CPUs. The constructor returns when every actor is ready,
    so start-up cost is paid (and spec errors raised, as `HaqError`) here, not in `submit`.
    """

    def __init__(
        self,
        spec: EvalSpec,
        workers: int,
        address: str | None = None,
        *,
        runtime_env: dict[str, Any] | None = None,
        startup_timeout: float | None = 600.0,
    ) -> None:
        import ray

        if workers < 1:
            raise HaqError(f"a Ray pool needs at least 1 worker, not {workers}; use 0 for serial")
        self.spec = spec
        self.workers = workers
        local = address is None
        threads = spec.threads_per_worker or (
            max(1, (os.cpu_count() or 1) // workers) if local else 1
        )
        self.threads = threads
        self._started_ray = False
        if not ray.is_initialized():
            kwargs: dict[str, Any] = {
                "include_dashboard": False,
                "log_to_driver": False,
                "logging_level": "ERROR",
                "configure_logging": True,
            }
            if runtime_env:
                kwargs["runtime_env"] = runtime_env
            if local:
                kwargs["num_cpus"] = workers * threads
                kwargs["num_gpus"] = 0
            os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
            if local:
                ray.init(**kwargs)
            else:
                from haq.evaluate.ray_address import join_cluster

                join_cluster(address, kwargs)
            from haq import signals

            signals.reinstall()  # Ray's native handler would dump stacks on SIGTERM
            self._started_ray = True
        self._env = {k: v for k, v in os.environ.items() if k.startswith("HAQ_")} if local else {}
        self._cwd = os.getcwd() if local else None
        self._actor_cls = ray.remote(num_cpus=threads, max_restarts=0, max_task_retries=0)(_Worker)
        self._idle: list[Any] = []
        self._queue: deque[_Task] = deque()
        self._inflight: dict[Any, tuple[Any, _Task]] = {}  # ObjectRef -> (actor, task)
        self.restarts = 0
        t0 = time.perf_counter()
        actors = [self._new_actor() for _ in range(workers)]
        try:
            where = ray.get([a.ready.remote() for a in actors], timeout=startup_timeout)
        except Exception as exc:
            for a in actors:
                ray.kill(a)
            self._shutdown()
            cause = getattr(exc, "cause", None) or exc
            if isinstance(cause, HaqError):
                raise HaqError(str(cause)) from exc
            raise HaqError(f"Ray workers failed to start: {_one_line(cause)}") from exc
        self._idle = actors
        self.startup_seconds = time.perf_counter() - t0
        #: Ray node id -> how many of the pool's workers started there
        self.placement = dict(Counter(node for _, node in where))

    def _new_actor(self) -> Any:
        return self._actor_cls.remote(self.spec, self.threads, self._env, self._cwd)

    def _dispatch(self) -> None:
        while self._idle and self._queue:
            actor = self._idle.pop()
            task = self._queue.popleft()
            ref = actor.evaluate.remote(task.trial_id, task.config, task.attempt)
            self._inflight[ref] = (actor, task)

    def submit(self, trial_id: int, config: BitConfig) -> None:
        self._queue.append(_Task(trial_id, BitConfig.from_spec(config)))
        self._dispatch()

    def next_result(self, timeout: float | None = None) -> tuple[int, Outcome]:
        """The next finished trial (any order); `TimeoutError` after ``timeout`` seconds."""
        import ray
        from ray.exceptions import RayError, RayTaskError

        if not self.pending():
            raise HaqError("no evaluations pending; submit a config first")
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            self._dispatch()
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            ready, _ = ray.wait(list(self._inflight), num_returns=1, timeout=left)
            if not ready:
                raise TimeoutError(f"no evaluation finished within {timeout} s")
            ref = ready[0]
            actor, task = self._inflight.pop(ref)
            try:
                result = ray.get(ref, timeout=0)
            except RayTaskError as exc:  # the task raised; the worker lives on
                self._idle.append(actor)
                cause = exc.cause if exc.cause is not None else exc
                task.error = _one_line(cause)
                if isinstance(cause, HaqError):  # deterministic: a retry would fail the same
                    self._dispatch()
                    return task.trial_id, EvalFailure(
                        task.trial_id, task.config, task.error, task.attempt + 1
                    )
            except RayError as exc:  # the worker died (crash, OOM kill): a fresh actor retries
                ray.kill(actor)
                self._idle.append(self._new_actor())
                self.restarts += 1
                task.error = f"worker died ({type(exc).__name__})"
            else:
                self._idle.append(actor)
                self._dispatch()
                return task.trial_id, result
            task.attempt += 1
            if task.attempt >= MAX_ATTEMPTS:
                self._dispatch()
                return task.trial_id, EvalFailure(
                    task.trial_id, task.config, task.error, task.attempt
                )
            self._queue.appendleft(task)

    def pending(self) -> int:
        return len(self._queue) + len(self._inflight)

    def capacity(self) -> int:
        return self.workers

    def close(self) -> None:
        """Stop the actors (and the local Ray this executor started)."""
        import ray

        if not ray.is_initialized():
            return
        actors = self._idle + [a for a, _ in self._inflight.values()]
        for a in actors:
            ray.kill(a)
        self._idle, self._inflight = [], {}
        self._queue.clear()
        self._shutdown()

    def _shutdown(self) -> None:
        import ray

        if self._started_ray:
            ray.shutdown()
            self._started_ray = False


def make_executor(spec: EvalSpec, workers: int = 0, address: str | None = None) -> Executor:
    """`SerialExecutor` for ``workers == 0`` (and no address), else a `RayExecutor`."""
    if workers == 0 and address is None:
        return SerialExecutor(spec)
    return RayExecutor(spec, max(1, workers), address)
