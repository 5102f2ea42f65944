"""Per-trial overhead of the search itself, with every evaluation answering one constant result
at once, so only haq's and Optuna's own work is timed (median over trials, per driver):

- driver + cost: the driver's ask and tell, the cost-model score, the budget/repair check;
- persistence: the trial into the SQLite study, the driver's state, trials.parquet rewritten
  (what makes a killed search resumable);

each as the median over an early window of trials and over the last 100, so per-trial work
that grows with the number of trials shows; then the time to resume the finished run (the
study's history read back and the driver restarted on it).

    python experiments/bench_search_overhead.py [--model resnet50] [--target gpu-h100] [--trials 200]
    python experiments/bench_search_overhead.py --model digits_cnn --target cpu-avx512 \
        --trials 10000 --drivers random,hybrid --out bench_search_overhead_10k
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import tempfile
import time
import warnings
from dataclasses import replace
from typing import Any

from haq.config import BitConfig
from haq.evaluate.evaluator import EvalResult
from haq.evaluate.metrics import Metrics
from haq.evaluate.pool import Executor, Outcome
from haq.search.loop import SearchLoop
from haq.search.options import SearchOptions
from haq.search.runner import Search
from haq.search.storage import StudyStore

from common import RESULTS, save


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


def _window(values: list[float], lo: int, hi: int) -> float:
    """Median ms of trials [lo, hi)."""
    part = values[lo:hi]
    return round(statistics.median(part) * 1e3, 3) if part else float("nan")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--model", default="resnet50")
    ap.add_argument("--target", default="gpu-h100")
    ap.add_argument("--trials", type=int, default=200)
    ap.add_argument("--drivers", default="nsga2,tpe,random")
    ap.add_argument("--out", default="bench_search_overhead", help="results name")
    args = ap.parse_args()
    warnings.filterwarnings("ignore")
    rows = {}
    n = args.trials
    early, late = (min(100, n // 2), min(200, n)), (max(0, n - 100), n)
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.drivers.split(","):
            opts = SearchOptions(model=args.model, weights="none", target=args.target, data="synthetic:2000",
                                 calib_data="synthetic:2000", out=f"{tmp}/{name}", progress=False,
                                 driver=name, budget=n, profile="never")  # fmt: skip
            search = Search(opts)
            ctx = search.driver_context()  # with its sensitivity source, as a real search
            dirs = ctx.directions
            search.driver.start(ctx, [], None)
            search.results.create()
            search._write_run({}, resumed=False)  # what a resume reads first
            store = StudyStore(
                search.results.study_db, search.space, search.objectives, dirs, False
            )
            loop = SearchLoop(ctx, search.driver, ConstantExecutor(), store, search.scale, None,
                              on_record=search._write_trials, save_state=search.results.save_driver_state,
                              progress=False)  # fmt: skip
            parts: dict[str, list[float]] = {}
            for label, obj, attr in (("study", store, "add"), ("driver state", search.driver, "state"),
                                     ("trials.parquet", search.results, "write_trials"),
                                     ("finish (all of a trial's bookkeeping)", loop, "_finish"),
                                     ("driver ask", search.driver, "ask")):  # fmt: skip
                parts[label] = []
                _timed(obj, attr, parts[label])
            t0 = time.perf_counter()
            loop.run([])
            wall = time.perf_counter() - t0
            trials = len(loop.records)
            asks = sum(parts["driver ask"])
            rows[name] = {
                "trials": trials, "wall_s": round(wall, 2),
                "ms_per_trial_overall": round(wall / trials * 1e3, 3),
                "driver_ask_ms_total_per_trial": round(asks / trials * 1e3, 3),
                "windows": {label: {f"trials {early[0]}-{early[1]}": _window(v, *early),
                                    f"trials {late[0]}-{late[1]}": _window(v, *late)}
                            for label, v in parts.items() if label != "driver ask"},
            }  # fmt: skip
            start = time.perf_counter()
            resumed = Search(replace(opts, resume=True, budget=n))
            resumed_store = StudyStore(
                search.results.study_db, resumed.space, resumed.objectives, dirs, True
            )
            history = resumed_store.history()
            resumed.driver.start(ctx, history, search.results.load_driver_state())
            rows[name]["resume_seconds"] = round(time.perf_counter() - start, 2)
            rows[name]["max_rss_mb"] = round(
                resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1
            )
            print(f"{name:>7}: {trials} trials in {wall:.1f} s ({rows[name]['ms_per_trial_overall']:.2f} ms "
                  f"per trial); resume {rows[name]['resume_seconds']:.1f} s; peak RSS {rows[name]['max_rss_mb']:.0f} MB", flush=True)  # fmt: skip
            for label, w in rows[name]["windows"].items():
                print(
                    f"         {label:<40} " + "  ".join(f"{k}: {v:.3f} ms" for k, v in w.items())
                )
    path = RESULTS / f"{args.out}.json"  # drivers run separately add up in one file
    if path.is_file():
        rows = {**json.loads(path.read_text()).get("rows", {}), **rows}
    save(args.out, {"model": args.model, "target": args.target, "trials": n, "rows": rows})  # fmt: skip


if __name__ == "__main__":
    main()
