"""Per-trial overhead of the search itself, with the evaluation replaced by a constant so only
haq's and Optuna's own work is timed (median over trials, per driver):

- driver + cost: ask (sampler on the in-memory study), decode the config, cost-model score,
  budget/repair check, tell with the trial's attributes;
- persistence: copy the finished trial into the SQLite study, pickle the sampler, rewrite
  trials.parquet (what makes a killed search resumable).

    python experiments/bench_search_overhead.py [--model resnet50] [--target cpu-avx512] [--trials 200]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
import warnings

from haq.evaluate.metrics import Metrics
from haq.search.runner import Candidate, Search, SearchOptions

from common import save


def _sqlite(tmp: str, name: str):  # noqa: ANN202
    from pathlib import Path

    from haq.search.runner import _sqlite_storage

    return _sqlite_storage(Path(tmp) / f"{name}.db")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--model", default="resnet50")
    ap.add_argument("--target", default=None)
    ap.add_argument("--trials", type=int, default=200)
    ap.add_argument("--drivers", default="nsga2,tpe,random")
    args = ap.parse_args()
    warnings.filterwarnings("ignore")
    import optuna
    from optuna.distributions import CategoricalDistribution

    from haq.search.drivers import get_driver

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    rows = {}
    with tempfile.TemporaryDirectory() as tmp:
        opts = SearchOptions(model=args.model, weights="none", target=args.target, data="synthetic", calib_data="synthetic",
                             out=f"{tmp}/x", progress=False)  # fmt: skip
        search = Search(opts)
        dists = {v: CategoricalDistribution(o) for v, o in search.space.variables()}
        metrics = Metrics(n_images=100, top1=50.0, agreement=90.0)
        search.results.create()
        persist: list[float] = []
        original_finish = search._finish

        def timed_finish(study, trial, values=None, state=None):  # noqa: ANN001, ANN202
            trial.set_user_attr("trial", trial.number)
            study.tell(trial, values) if values is not None else study.tell(trial, state=state)
            t0 = time.perf_counter()
            search.durable.add_trial(study.trials[trial.number])
            search.results.save_sampler(study.sampler)
            search._write_trials(study)
            persist.append(time.perf_counter() - t0)

        search._finish = timed_finish
        for name in args.drivers.split(","):
            sampler = get_driver(name).make(0, search.space, None)
            search.durable = optuna.create_study(
                storage=_sqlite(tmp, name), directions=["maximize", "minimize"]
            )
            study = optuna.create_study(directions=["maximize", "minimize"], sampler=sampler)
            times = []
            persist.clear()
            for _ in range(args.trials):
                t0 = time.perf_counter()
                trial = study.ask(dists)
                config = search.space.config(trial.params)
                cost = search.cost_model.score(config)
                fixed = search.repair(config, cost)
                assert fixed is not None
                cand = Candidate(trial, fixed[0], fixed[1], fixed[2], 0.0)
                search._tell(study, cand, metrics, {}, eval_seconds=0.0, cached=False)
                times.append(time.perf_counter() - t0 - persist[-1])
            med = statistics.median(times) * 1e3
            score_t0 = time.perf_counter()
            for _ in range(1000):
                search.cost_model.score(config)
            score_us = (time.perf_counter() - score_t0) * 1e3
            rows[name] = {"driver_cost_median_ms": round(med, 3),
                          "driver_cost_p90_ms": round(sorted(times)[int(0.9 * len(times))] * 1e3, 3),
                          "persist_median_ms": round(statistics.median(persist) * 1e3, 2),
                          "cost_score_us": round(score_us, 1)}  # fmt: skip
            print(f"{name:>7}: driver + cost {med:.2f} ms per trial (p90 {rows[name]['driver_cost_p90_ms']:.2f} ms), "
                  f"persistence {rows[name]['persist_median_ms']:.1f} ms; cost score {score_us:.1f} us "
                  f"[{search.cost_model.name}, {len(search.layers)} layers, {len(dists)} variables]")  # fmt: skip
        search._finish = original_finish
    save("bench_search_overhead", {"model": args.model, "target": args.target, "trials": args.trials,
                                   "cost_model": search.cost_model.name, "rows": rows})  # fmt: skip


if __name__ == "__main__":
    main()
