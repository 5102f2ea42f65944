"""Per-trial overhead of the search itself, with every evaluation answering one constant result
at once, so only haq's and Optuna's own work is timed (median over trials, per driver):

- driver + cost: the driver's ask and tell, the cost-model score, the budget/repair check;
- persistence: the trial into the SQLite study, the driver's state, trials.parquet rewritten
  (what makes a killed search resumable).

    python experiments/bench_search_overhead.py [--model resnet50] [--target gpu-h100] [--trials 200]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
import warnings
from typing import Any

from haq.config import BitConfig
from haq.evaluate.evaluator import EvalResult
from haq.evaluate.metrics import Metrics
from haq.evaluate.pool import Executor, Outcome
from haq.search.drivers import DriverContext
from haq.search.loop import SearchLoop
from haq.search.objectives import DIRECTIONS
from haq.search.runner import Search, SearchOptions
from haq.search.storage import StudyStore

from common import save


class ConstantExecutor(Executor):
    """Answers every config with the same metrics at once: the evaluation costs nothing."""

    def __init__(self) -> None:
        self.queue: list[tuple[int, BitConfig]] = []
        self.metrics = Metrics(n_images=100, top1=50.0, agreement=90.0)

    def submit(self, trial_id: int, config: BitConfig) -> None:
        self.queue.append((trial_id, config))

    def next_result(self, timeout: float | None = None) -> tuple[int, Outcome]:
        tid, cfg = self.queue.pop(0)
        return tid, EvalResult(cfg, self.metrics, 0.0)

    def pending(self) -> int:
        return len(self.queue)

    def capacity(self) -> int:
        return 1

    def close(self) -> None:
        self.queue.clear()


def _timed(obj: Any, name: str, into: list[float]) -> None:
    fn = getattr(obj, name)

    def wrapper(*a: Any, **k: Any) -> Any:
        t0 = time.perf_counter()
        out = fn(*a, **k)
        into.append(time.perf_counter() - t0)
        return out

    setattr(obj, name, wrapper)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--model", default="resnet50")
    ap.add_argument("--target", default="gpu-h100")
    ap.add_argument("--trials", type=int, default=200)
    ap.add_argument("--drivers", default="nsga2,tpe,random")
    args = ap.parse_args()
    warnings.filterwarnings("ignore")
    rows = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.drivers.split(","):
            opts = SearchOptions(model=args.model, weights="none", target=args.target, data="synthetic",
                                 calib_data="synthetic", out=f"{tmp}/{name}", progress=False,
                                 driver=name, budget=args.trials)  # fmt: skip
            search = Search(opts)
            dirs = [DIRECTIONS[n] for n in search.objectives]
            ctx = DriverContext(search.space, search.objectives, dirs, search.cost_model, search.guard,
                                args.trials, 0, None)  # fmt: skip
            search.driver.start(ctx, [], None)
            search.results.create()
            store = StudyStore(
                search.results.study_db, search.space, search.objectives, dirs, False
            )
            persist: list[float] = []
            total: list[float] = []
            loop = SearchLoop(ctx, search.driver, ConstantExecutor(), store, search.scale, None,
                              on_record=search._write_trials, save_state=search.results.save_driver_state,
                              progress=False)  # fmt: skip
            for obj, attr in ((store, "add"), (search.results, "save_driver_state"),
                              (search.results, "write_trials")):  # fmt: skip
                _timed(obj, attr, persist)
            _timed(loop, "_finish", total)
            t0 = time.perf_counter()
            loop.run([])
            wall = time.perf_counter() - t0
            per_trial_persist = [sum(persist[i : i + 3]) for i in range(0, len(persist), 3)]
            driver_cost = (wall - sum(per_trial_persist)) / args.trials
            rows[name] = {"driver_cost_mean_ms": round(driver_cost * 1e3, 3),
                          "persist_median_ms": round(statistics.median(per_trial_persist) * 1e3, 2),
                          "trials": len(loop.records)}  # fmt: skip
            print(f"{name:>7}: driver + cost {driver_cost * 1e3:.2f} ms per trial, persistence "
                  f"{rows[name]['persist_median_ms']:.1f} ms [{search.cost_model.name}, "
                  f"{len(search.layers)} layers]")  # fmt: skip
    save("bench_search_overhead", {"model": args.model, "target": args.target, "trials": args.trials,
                                   "rows": rows})  # fmt: skip


if __name__ == "__main__":
    main()
