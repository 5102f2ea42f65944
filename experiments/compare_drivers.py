"""Every driver side by side: hypervolume against evaluations, on the same validation images.

Each (model, target, driver, seed) is one `haq search` (serial, 2 threads; 1,000 validation
images from the train folder, the same for every run whatever its --seed since the subsets
follow --data-seed; calibration on 256 others) kept under experiments/runs/compare/ and
resumed when interrupted, skipped when finished. Every run shares one evaluation cache
(--eval-cache experiments/runs/compare/evaluations.sqlite): a config any earlier run
evaluated on these images is read back, still counted as an evaluation of the run. Hypervolume is measured in the plane (top-1 drop from the float model in
points, predicted latency as a fraction of uniform w8a8's) against the reference point
(10 points, 1.0), after each evaluation, and divided by the hypervolume of the reference
front (the non-dominated union of every run of that model and target). Budgets 50 and 100
are read as prefixes of the same run. Each run's final front is re-scored on --test-limit
test images; the table gives its hypervolume on test top-1 too (same plane, test float top-1).
A second table caps every accuracy at the float model's (drop at least 0) in runs and
reference alike: it leaves out the area of configs that beat the float model on the
validation images (part luck on those images, part real: on resnet20 the reference front's
points keep about half of it on test), which is what the first table's 50-evaluation ratios
mostly miss.

Plan (the issue's): cifar_resnet20 with seeds 0,1,2 and 200 evaluations, cifar_resnet56 with
seed 0 and 100, each on npu-bitfusion-edge, gpu-t4 and cpu-avx512. --jobs N runs N searches
at once, each on cores/N threads (two 2-thread searches on 2 cores thrash).

    python experiments/compare_drivers.py [--pairs cifar_resnet20:npu-bitfusion-edge,...] \
        [--drivers hybrid,nsga2,...] [--seeds 0] [--budget 100] [--jobs 2] [--report-only]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from haq.pareto import non_dominated_mask

from common import ROOT, require_shared, save

CHECKPOINTS = {"cifar_resnet20": "resnet20-12fca82f.th", "cifar_resnet56": "resnet56-4bfd9763.th"}
PLAN = {"cifar_resnet20": ([0, 1, 2], 200), "cifar_resnet56": ([0], 100)}  # seeds, evaluations
TARGETS = ("npu-bitfusion-edge", "gpu-t4", "cpu-avx512")
DRIVERS = "hybrid,nsga2,tpe,random,haq-ddpg,amp-greedy,hawq-ilp,zeroq-dp,ompq"
RUNS = ROOT / "experiments" / "runs" / "compare"
EVAL_CACHE = RUNS / "evaluations.sqlite"
REF_POINT = (10.0, 1.0)
PREFIXES = (50, 100, 200)


ARCHIVE = ROOT / "experiments" / "results" / "compare_drivers"  # one parquet per pair, committed
KEEP = ["trial", "state", "cached", "reused", "source", "val_top1", "test_top1", "latency_ms",
        "config_hash", "config", "summary"]  # fmt: skip


def _name(model: str, target: str, driver: str, seed: int) -> str:
    return f"{model}-{target}-{driver}-s{seed}"


def _archive_path(model: str, target: str) -> Path:
    return ARCHIVE / f"{model}-{target}.parquet"


def _archived(model: str, target: str) -> pd.DataFrame:
    path = _archive_path(model, target)
    return pd.read_parquet(path) if path.is_file() else pd.DataFrame(columns=["run"])


def _archive(model: str, target: str) -> pd.DataFrame:
    """Finished runs' trials (the columns the report needs) into the pair's archive, so the
    table survives without experiments/runs/ (kept out of git) and finished runs are skipped."""
    from haq.io import atomic_write_bytes

    old = _archived(model, target)
    frames = [old]
    for out in sorted(RUNS.glob(f"{model}-{target}-*-s*")):
        if out.name in set(old["run"]) or not (out / "pareto.json").is_file():
            continue
        driver, seed = out.name[len(f"{model}-{target}-") :].rsplit("-s", 1)
        t = pd.read_parquet(out / "trials.parquet")[KEEP]
        run, front = (json.loads((out / f).read_text()) for f in ("run.json", "pareto.json"))
        frames.append(t.assign(run=out.name, driver=driver, seed=int(seed),
                               float_val_top1=run["float_val"]["top1"],
                               wall_seconds=front["wall_seconds"]))  # fmt: skip
    frame = pd.concat([f for f in frames if len(f)], ignore_index=True)
    ARCHIVE.mkdir(parents=True, exist_ok=True)
    import io

    buf = io.BytesIO()
    frame.to_parquet(buf, compression="zstd", index=False)
    atomic_write_bytes(_archive_path(model, target), buf.getvalue())
    return frame


def _refusals(model: str, target: str, new: dict[str, str] | None = None) -> dict[str, str]:
    """Runs a driver refused at its start (one-line error, exit 2), kept beside the archive."""
    from haq.io import atomic_write_text

    path = ARCHIVE / f"{model}-{target}-refused.json"
    known = json.loads(path.read_text()) if path.is_file() else {}
    if new:
        known.update(new)
        ARCHIVE.mkdir(parents=True, exist_ok=True)
        atomic_write_text(path, json.dumps(known, indent=2))
    return known


def _run(model: str, target: str, driver: str, seed: int, budget: int, test_limit: int,
         shared: Path, threads: int, done: set[str]) -> None:  # fmt: skip
    out = RUNS / _name(model, target, driver, seed)
    if out.name in done or (out / "pareto.json").is_file():
        return
    RUNS.mkdir(parents=True, exist_ok=True)
    lock = RUNS / f"{out.name}.lock"  # another invocation of this script is running it
    try:
        fd = os.open(lock, os.O_CREAT | os.O_EXCL)
    except FileExistsError:
        print(f"  {out.name}: running elsewhere ({lock.name}), skipped", file=sys.stderr)
        return
    os.close(fd)
    try:
        _search(out, model, target, driver, seed, budget, test_limit, shared, threads)
    finally:
        lock.unlink()


def _search(out: Path, model: str, target: str, driver: str, seed: int, budget: int,
            test_limit: int, shared: Path, threads: int, extra: Sequence[str] = ()) -> None:  # fmt: skip
    """One `haq search` into ``out`` (resumed if started), ``extra`` appended to a new one."""
    cache = ["--eval-cache", str(EVAL_CACHE)]
    if (out / "run.json").is_file():
        cmd = ["haq", "search", "--resume", str(out), "--workers", "0", *cache]
    else:
        cmd = ["haq", "search", "--model", model, "--weights", str(shared / "models" / CHECKPOINTS[model]),
               "--data", str(shared / "data/cifar10-jpeg/test"), "--calib-data", str(shared / "data/cifar10-jpeg/train"),
               "--target", target, "--driver", driver, "--seed", str(seed), "--budget", str(budget),
               "--workers", "0", "--test-limit", str(test_limit), *cache, "--out", str(out), *extra]  # fmt: skip
    print("$", " ".join(cmd), file=sys.stderr, flush=True)
    # a cache dir of its own: drops measured by an earlier run (amp-greedy's phase 1) must be
    # paid for again by each run; the evaluation cache only saves wall time
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads),
           "HAQ_CACHE_DIR": str(out / "haq-cache")}  # fmt: skip
    t0 = time.perf_counter()
    proc = subprocess.run(
        cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env
    )
    if proc.returncode == 2:  # the driver refuses this budget (e.g. amp-greedy's phase 1)
        line = proc.stderr.strip().splitlines()[-1]
        _refusals(model, target, {out.name: line})
        print(f"  {out.name}: {line}", file=sys.stderr, flush=True)
        return
    if proc.returncode != 0:
        sys.exit(f"{out.name} failed:\n{proc.stderr[-2000:]}")
    print(f"  {model} {target} {driver} seed {seed}: {time.perf_counter() - t0:.0f} s",
          file=sys.stderr, flush=True)  # fmt: skip


def _trials(frame: pd.DataFrame) -> pd.DataFrame:
    """Evaluated trials in order (repeats of a config within the run are no evaluation)."""
    t = frame.sort_values("trial")
    return t[(t["state"] == "complete") & ~t["cached"].astype(bool)]


def _points(frame: pd.DataFrame, w8_latency: float) -> np.ndarray:
    """Per evaluated trial in order: (drop from the float top-1, relative latency)."""
    t = _trials(frame)
    return np.column_stack(
        [
            t["float_val_top1"].to_numpy() - t["val_top1"].to_numpy(),
            t["latency_ms"].to_numpy() / w8_latency,
        ]
    )


def _test_points(frame: pd.DataFrame, w8_latency: float, float_test: float) -> np.ndarray:
    """The final front and baselines, re-scored on the test images."""
    t = _trials(frame).dropna(subset=["test_top1"])
    return np.column_stack(
        [float_test - t["test_top1"].to_numpy(), t["latency_ms"].to_numpy() / w8_latency]
    )


def _float_test(model: str, test_limit: int, shared: Path) -> float:
    from haq import BitConfig
    from haq.evaluate.setup import build_setup

    setup = build_setup(model, str(shared / "models" / CHECKPOINTS[model]),
                        str(shared / "data/cifar10-jpeg/test"), None, limit=test_limit,
                        needs_calibration=False)  # fmt: skip
    names = [s.name for s in setup.quantizer.layers]
    top1 = setup.evaluator.evaluate(BitConfig.uniform("fp32", names)).metrics.top1
    assert top1 is not None
    return top1


def _hv(points: np.ndarray) -> float:
    from haq.pareto import hypervolume

    if not len(points):
        return 0.0
    return hypervolume(points, ["minimize", "minimize"], list(REF_POINT))


def _capped(points: np.ndarray) -> np.ndarray:
    """``points`` with accuracy capped at the float model's (drop at least 0): the plane
    without the area of configs that beat the float model on these validation images,
    which is their luck, not the search's (on test they do not)."""
    out = points.copy()
    if len(out):
        out[:, 0] = np.maximum(out[:, 0], 0.0)
    return out


def _ratios(points: np.ndarray, ref: float, ref_capped: float,
            prefixes: Sequence[int]) -> dict[str, list[float]]:  # fmt: skip
    """Hypervolume over the reference after each prefix, as the issue measures it and capped."""
    return {"issue": [_hv(points[:n]) / ref for n in prefixes],
            "capped": [_hv(_capped(points[:n])) / ref_capped for n in prefixes]}  # fmt: skip


def _w8_latency(model: str, target: str) -> float:
    from haq import BitConfig
    from haq.cost import cost_model_for
    from haq.models import discover_layers, load_model

    lm = load_model(model, "none")
    layers = discover_layers(lm.model, lm.example_input())
    latency = (
        cost_model_for(target, layers)
        .score(BitConfig.uniform("w8a8", [s.name for s in layers]))
        .latency_ms
    )
    assert latency is not None
    return latency


def _phase_ends(runs: list[tuple[list[str], np.ndarray]], ref_capped: float,
                within: int = PREFIXES[0]) -> dict[str, float]:  # fmt: skip
    """Per trial source (baseline, ilp, evolution, ...): the capped hypervolume ratio right
    after that source's last trial among the first ``within`` evaluations, mean of the runs."""
    ends: dict[str, list[float]] = {}
    for sources, points in runs:
        for source in dict.fromkeys(sources[:within]):
            last = max(i for i, x in enumerate(sources[:within]) if x == source)
            ends.setdefault(source, []).append(_hv(_capped(points[: last + 1])) / ref_capped)
    return {k: round(float(np.mean(v)), 4) for k, v in ends.items()}


def _report(model: str, target: str, drivers: list[str], seeds: list[int], frame: pd.DataFrame,
            float_test: float) -> dict[str, Any]:  # fmt: skip
    w8 = _w8_latency(model, target)
    runs = {
        (d, s): frame[frame["run"] == _name(model, target, d, s)] for d in drivers for s in seeds
    }
    pts = {key: _points(f, w8) for key, f in runs.items()}
    ref_hv = _hv(np.vstack([p for p in pts.values() if len(p)]))
    ref_capped = _hv(_capped(np.vstack([p for p in pts.values() if len(p)])))
    tests = {key: _test_points(f, w8, float_test) for key, f in runs.items()}
    ref_test = _hv(np.vstack([p for p in tests.values() if len(p)]))
    rows, curves = [], {}
    # how much of the reference front is validation luck: its points' drops on test
    ev = _trials(pd.concat(list(runs.values())))
    val_drop = (ev["float_val_top1"] - ev["val_top1"]).to_numpy()
    mask = non_dominated_mask(
        np.column_stack([val_drop, ev["latency_ms"].to_numpy()]), ["minimize"] * 2
    )
    front = ev[mask & (val_drop < REF_POINT[0])].assign(
        val_drop=val_drop[mask & (val_drop < REF_POINT[0])]
    )
    scored = front.dropna(subset=["test_top1"])
    luck = {"points": len(front), "with_test": len(scored),
            "mean_val_drop": round(float(scored["val_drop"].mean()), 2),
            "mean_test_drop": round(float((float_test - scored["test_top1"]).mean()), 2),
            "best_val_above_float": round(float(-front["val_drop"].min()), 2),
            # the points above the float model on validation: do they stay above on test?
            "above_float": {"points": int((above := scored[scored["val_drop"] < 0]).shape[0]),
                            "val_gain": round(float(-above["val_drop"].mean()), 2) if len(above) else None,
                            "test_gain": round(float((above["test_top1"] - float_test).mean()), 2) if len(above) else None},
            "hv_share_above_float": round(1.0 - ref_capped / ref_hv, 4)}  # fmt: skip
    for d in drivers:
        per_seed = []
        for s in seeds:
            p = pts[(d, s)]
            curve = [_hv(p[: n + 1]) / ref_hv for n in range(len(p))]
            curves[f"{d}-s{s}"] = curve
            per_seed.append(curve)
        row: dict[str, Any] = {"driver": d}
        for n in PREFIXES:
            vals = [c[min(n, len(c)) - 1] for c in per_seed if c]
            row[f"hv_ratio_at_{n}"] = round(float(np.mean(vals)), 4) if vals else None
            capped = [_hv(_capped(pts[(d, s)][:n])) / ref_capped for s in seeds]
            row[f"capped_hv_ratio_at_{n}"] = round(float(np.mean(capped)), 4)
        row["capped_hv_ratio_after_phase"] = _phase_ends(
            [(_trials(runs[(d, s)])["source"].tolist(), pts[(d, s)]) for s in seeds], ref_capped
        )
        row.update({
            "test_hv_ratio": round(float(np.mean([_hv(tests[(d, s)]) / ref_test for s in seeds])), 4),
            "evaluations": int(np.mean([len(c) for c in per_seed])),
            "reused_from_cache": int(np.mean([_trials(runs[(d, s)])["reused"].sum() for s in seeds])),
            "wall_seconds": round(float(np.mean([runs[(d, s)]["wall_seconds"].iloc[0] for s in seeds])), 1),
        })  # fmt: skip
        rows.append(row)
    return {"seeds": seeds, "reference_hv": ref_hv, "reference_capped_hv": ref_capped,
            "reference_test_hv": ref_test, "reference_front": luck,
            "w8a8_latency_ms": w8, "float_test_top1": float_test, "rows": rows, "curves": curves}  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--pairs", default=",".join(f"{m}:{t}" for m in PLAN for t in TARGETS))
    ap.add_argument("--drivers", default=DRIVERS)
    ap.add_argument("--seeds", default=None, help="override the plan's seeds")
    ap.add_argument("--budget", type=int, default=None, help="override the plan's evaluations")
    ap.add_argument("--test-limit", type=int, default=1000)
    ap.add_argument("--jobs", type=int, default=1)
    ap.add_argument("--threads", type=int, default=None, help="per search (default cores / jobs)")
    ap.add_argument("--report-only", action="store_true", help="report the finished runs")
    args = ap.parse_args()
    shared = require_shared()
    drivers = args.drivers.split(",")
    pairs = [tuple(p.split(":")) for p in args.pairs.split(",")]
    import warnings

    warnings.filterwarnings("ignore")

    def plan(model: str) -> tuple[list[int], int]:
        seeds, budget = PLAN.get(model, ([0], 100))
        if args.seeds is not None:
            seeds = [int(s) for s in args.seeds.split(",")]
        return seeds, args.budget or budget

    jobs = [(m, t, d, s, plan(m)[1]) for m, t in pairs for s in plan(m)[0] for d in drivers]
    done = {name for m, t in pairs for name in [*_archived(m, t)["run"], *_refusals(m, t)]}
    if not args.report_only:
        threads = args.threads or max(1, (os.cpu_count() or 1) // args.jobs)
        with ThreadPoolExecutor(args.jobs) as pool:
            list(pool.map(lambda j: _run(*j, args.test_limit, shared, threads, done), jobs))
    path = ROOT / "experiments" / "results" / "compare_drivers.json"
    results: dict[str, Any] = json.loads(path.read_text())["results"] if path.is_file() else {}
    float_tests: dict[str, float] = {}
    for model, target in pairs:
        seeds, budget = plan(model)
        frame = _archive(model, target)
        refused = _refusals(model, target)
        missing = [n for d in drivers for s in seeds
                   if (n := _name(model, target, d, s)) not in set(frame["run"]) | set(refused)]  # fmt: skip
        if missing:
            print(f"skipping {model}:{target}: unfinished runs {missing}", file=sys.stderr)
            continue
        if model not in float_tests:
            float_tests[model] = _float_test(model, args.test_limit, shared)
        ran = [d for d in drivers if all(_name(model, target, d, s) not in refused for s in seeds)]
        if not ran:
            continue
        res = _report(model, target, ran, seeds, frame, float_tests[model])
        res["refused"] = {
            d: refused[_name(model, target, d, seeds[0])] for d in drivers if d not in ran
        }
        res["budget"] = budget
        results[f"{model}:{target}"] = res
        print(f"\n{model} on {target} (seeds {seeds}, reference-front HV {res['reference_hv']:.4f}; "
              f"its points: {res['reference_front']}):", file=sys.stderr)  # fmt: skip
        for r in sorted(res["rows"], key=lambda r: -(r["hv_ratio_at_100"] or 0)):
            print(f"  {r['driver']:>11}: HV/ref at 50 {r['hv_ratio_at_50']}, 100 {r['hv_ratio_at_100']}, "
                  f"200 {r['hv_ratio_at_200']}; test {r['test_hv_ratio']}; {r['evaluations']} evaluations "
                  f"({r['reused_from_cache']} from the cache), {r['wall_seconds']} s", file=sys.stderr)  # fmt: skip
    _markdown(results)
    save("compare_drivers", {"ref_point": REF_POINT, "test_limit": args.test_limit, "plan": PLAN,
                             "results": results})  # fmt: skip
    _plot(results)


def _markdown(results: dict[str, Any]) -> None:
    """The README's tables, one row per driver and a column per model x target: the issue's
    hypervolume ratios (best at 100 evaluations and on test in bold), then the same with
    accuracy capped at the float model's (what a search can win without validation luck)."""
    pairs = list(results)
    drivers = list(dict.fromkeys(d for p in pairs for d in [*(r["driver"] for r in results[p]["rows"]),
                                                             *results[p].get("refused", {})]))  # fmt: skip

    def bold(x: float, top: float) -> str:
        return f"**{x:.3f}**" if round(x, 3) == round(top, 3) else f"{x:.3f}"

    def table(title: str, keys: tuple[str, ...], test: bool) -> None:
        best = {p: [max(r[k] for r in results[p]["rows"]) for k in keys] for p in pairs}
        tops = {p: max(r["test_hv_ratio"] for r in results[p]["rows"]) for p in pairs}
        print("| driver | " + " | ".join(f"{p.replace(':', ' on ')} ({len(results[p]['seeds'])} seeds) {title}"
                                           for p in pairs) + " |")  # fmt: skip
        print("|---|" + "---|" * len(pairs))
        for d in drivers:
            cells = []
            for p in pairs:
                r = next((r for r in results[p]["rows"] if r["driver"] == d), None)
                if r is None:
                    refused = results[p].get("refused", {}).get(d)
                    cells.append(
                        "refused: " + refused.removeprefix("haq: error: ") if refused else "-"
                    )
                    continue
                # only the budget (100) is set in bold
                vals = [bold(r[k], top) if "100" in k else f"{r[k]:.3f}"
                        for k, top in zip(keys, best[p], strict=True)]  # fmt: skip
                cells.append(
                    " / ".join(vals) + (f", {bold(r['test_hv_ratio'], tops[p])}" if test else "")
                )
            print(f"| {d} | " + " | ".join(cells) + " |")
        print()

    table("HV/ref at 50 / 100 / 200, test", tuple(f"hv_ratio_at_{n}" for n in PREFIXES), True)
    table(
        "capped at float: 50 / 100 / 200", tuple(f"capped_hv_ratio_at_{n}" for n in PREFIXES), False
    )


def _plot(results: dict[str, Any]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cols = min(3, len(results))
    rows_n = (len(results) + cols - 1) // cols
    fig, axes = plt.subplots(rows_n, cols, figsize=(5.5 * cols, 3.8 * rows_n), squeeze=False)
    for ax in axes.flat[len(results) :]:
        ax.axis("off")
    for ax, (pair, res) in zip(axes.flat, results.items(), strict=False):
        by_driver: dict[str, list[list[float]]] = {}
        for name, curve in res["curves"].items():
            by_driver.setdefault(name.rsplit("-s", 1)[0], []).append(curve)
        order = DRIVERS.split(",")
        for name, curves in sorted(by_driver.items()):
            i = order.index(name) if name in order else len(order)
            n = min(len(c) for c in curves)
            mean = np.mean([c[:n] for c in curves], axis=0)
            ax.plot(range(1, n + 1), mean, label=name, color=f"C{i % 10}",
                    lw=2.4 if name == "hybrid" else 1.0)  # fmt: skip
        ax.set_title(
            f"{pair.replace(':', ' on ')} (mean of {len(res['seeds'])} seeds)", fontsize=10
        )
        ax.set_xlabel("evaluations")
        ax.set_ylabel("hypervolume / reference front's")
        ax.set_ylim(0.3, 1.01)
        ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    out = ROOT / "experiments" / "results" / "compare_drivers.png"
    fig.savefig(out, dpi=110)
    print(f"wrote {out.relative_to(ROOT)}", file=sys.stderr)


if __name__ == "__main__":
    main()
