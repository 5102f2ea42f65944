"""`haq search`: the Pareto front of accuracy against hardware cost for one model and target."""

from __future__ import annotations

import argparse
import re
import shlex
import sys
from typing import Any

from haq.cli.args import add_group_args, add_model_args, add_ptq_args, add_validation_args
from haq.cli.space import add_space_args
from haq.errors import HaqError


def register(sub: Any) -> None:
    p = sub.add_parser(
        "search", help="search per-layer precisions: Pareto front of accuracy vs cost"
    )
    add_model_args(p, required=False)
    add_space_args(p)
    add_ptq_args(p, per_candidate=True)
    add_group_args(p)
    p.add_argument(
        "--data", "-d", default=None, help="test images, used only to re-score the final front"
    )
    p.add_argument("--calib-data", default=None,
                   help="calibration images; search-time validation images are drawn from the rest")  # fmt: skip
    p.add_argument(
        "--driver",
        default=None,
        help="hybrid (default: sensitivity + ILP + evolution), nsga2, tpe, gp, random, exhaustive",
    )
    p.add_argument(
        "--driver-opt",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a driver option, e.g. sensitivity=accuracy (hybrid) or population=20 (nsga2)",
    )
    p.add_argument("--objectives", default=None,
                   help="comma list of top1, fidelity, worst_class, latency, energy, size, bops "
                        "(default: top1,latency with a target, else top1,size; fidelity "
                        "instead of top1 for a data-free search)")  # fmt: skip
    p.add_argument(
        "--budget",
        type=int,
        default=None,
        help="number of trials (default 50; on --resume: as started)",
    )
    p.add_argument(
        "--time-limit", default=None, help="stop proposing after this long: 90s, 10m, 1h"
    )
    p.add_argument(
        "--workers",
        type=int,
        default=None,
        help="Ray evaluation workers (0: serial in-process; default: cores)",
    )
    p.add_argument(
        "--ray-address",
        default=None,
        help="run on an existing Ray cluster ('auto' or ray://host:port)",
    )
    add_validation_args(p)
    p.add_argument(
        "--test-limit",
        type=int,
        default=None,
        help="test images for the final front (default: all)",
    )
    p.add_argument("--threads", type=int, default=None, help="threads the latency is predicted for")
    p.add_argument("--seed", type=int, default=0, help="the driver's seed")
    p.add_argument(
        "--data-seed",
        type=int,
        default=0,
        help="seed of the calibration / validation subsets (default 0: the same images for any --seed)",
    )
    p.add_argument(
        "--eval-cache",
        default=None,
        metavar="FILE",
        help="SQLite file of evaluated metrics shared across searches on the same model and images",
    )
    p.add_argument("--max-latency-ms", type=float, default=None)
    p.add_argument("--max-size-mb", type=float, default=None)
    p.add_argument("--min-top1", type=float, default=None)
    p.add_argument(
        "--max-worst-class-drop", type=float, default=None, help="points of worst-class accuracy"
    )
    p.add_argument(
        "--out", "-o", default=None, help="results directory (default runs/<model>-<target>-<time>)"
    )
    p.add_argument("--resume", default=None, metavar="DIR", help="continue the search in DIR")
    p.add_argument("--quiet", "-q", action="store_true", help="no progress lines")
    p.add_argument("--log-json", action="store_true",
                   help="progress as JSON lines on stderr (one object per event), for scripts")  # fmt: skip
    p.add_argument("--report", action="store_true",
                   help="write report.html (offline HTML report) into the results dir at the end")  # fmt: skip
    p.add_argument("--profile", choices=("auto", "never", "ask"), default="auto",
                   help="when the target's runtime is here and its tables lack rows for this "
                        "model's layers: measure them into your table overlay first (auto, the "
                        "default), never, or ask")  # fmt: skip
    p.add_argument("--profile-jobs", type=int, default=None, metavar="N",
                   help="with --profile auto/ask: measure at most N jobs now, those the cost "
                        "model is least sure of first (as `haq profile --max-jobs`)")  # fmt: skip
    p.add_argument("--measure-front", action="store_true",
                   help="at the end, time every front point in the target's runtime (as `haq measure`)")  # fmt: skip
    p.set_defaults(func=run)


def parse_duration(text: str | None) -> float | None:
    if text is None:
        return None
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smh]?)\s*", text)
    if not m:
        raise HaqError(f"--time-limit {text!r} is not a duration; write e.g. 90s, 10m or 1h")
    return float(m.group(1)) * {"": 1, "s": 1, "m": 60, "h": 3600}[m.group(2)]


TARGET_ENV = "HAQ_TARGET"  # the default --target ('none': size only)


def _target(given: str | None) -> str | None:
    """``--target``, else $HAQ_TARGET, else the target this machine is (said in one line);
    'none' searches without hardware latency (size and BOPs only)."""
    import os

    if given is None:
        given = os.environ.get(TARGET_ENV)
    if given is None:
        from haq.hardware.reachable import local_target
        from haq.progress import emit

        given = local_target()
        if given is not None:
            emit("note", f"haq: --target {given}: this machine's CPU is of that target's class; "
                 "pass --target none to search size only", target=given)  # fmt: skip
    return None if given in (None, "none") else given


def run(args: argparse.Namespace) -> int:
    import os

    from haq.search.budgets import Budgets
    from haq.search.drivers import DEFAULT_DRIVER, parse_driver_options
    from haq.search.options import SearchOptions, restore_options
    from haq.search.runner import Search

    workers = (
        args.workers
        if args.workers is not None
        else (len(os.sched_getaffinity(0)) if args.ray_address is None else 0)
    )
    if args.resume and args.out and args.out != args.resume:
        raise HaqError("--resume DIR already names the results dir; drop --out")
    from haq import progress

    progress.configure("json" if args.log_json else "quiet" if args.quiet else "auto")
    target = args.target if args.resume else _target(args.target)
    opts = SearchOptions(
        model=args.model or "digits_cnn", weights=args.weights, tokens=args.tokens, target=target, data=args.data,
        calib_data=args.calib_data, space=args.space, driver=args.driver or DEFAULT_DRIVER,
        driver_options=parse_driver_options(args.driver_opt), objectives=args.objectives, val_split=args.val_split,
        budget=args.budget if args.budget is not None else 50, time_limit=parse_duration(args.time_limit), workers=workers,
        ray_address=args.ray_address, val_limit=args.val_limit, calib_limit=args.calib_limit,
        test_limit=args.test_limit, seed=args.seed, data_seed=args.data_seed,
        eval_cache=args.eval_cache, threads=args.threads, pins=args.pin,
        ties=[t.split(",") for t in args.tie],
        budgets=Budgets(args.max_latency_ms, args.max_size_mb, args.min_top1, args.max_worst_class_drop),
        out=args.resume or args.out, resume=args.resume is not None, progress=not args.quiet,
        command=shlex.join(["haq", *sys.argv[1:]]), report=args.report, ptq=args.ptq,
        adaround_iterations=args.adaround_iterations, measure_front=args.measure_front,
        profile=args.profile, profile_jobs=args.profile_jobs, group_size=args.group_size, weight_only_mapping=args.weight_only_mapping,
    )  # fmt: skip
    if opts.resume:
        restore_options(opts, keep_budget=args.budget is None)
    search = Search(opts)
    try:
        files = search.run()
    except KeyboardInterrupt as e:
        from haq import signals

        print(f"haq: {signals.describe(e)}; finished trials are saved: resume with `haq search --resume "
              f"{search.results.path}`", file=sys.stderr)  # fmt: skip
        return signals.exit_code(e)
    _print_front(files.path)
    if opts.report:
        print(f"report: {files.path / 'report.html'}")
    return 0


def _print_front(path: Any) -> None:
    from haq.search.api import SearchResult

    result = SearchResult(path)
    front = result.front
    cols = [c for c in front.columns if c in result.objectives]
    print(f"Pareto front: {len(front)} points (hypervolume {result.hypervolume:.4g})")
    measured = [c for c in ("measured_latency_ms", "dominated_when_measured") if c in front]
    tests = [f"test_{c}" for c in cols if f"test_{c}" in front] or ["test_top1"]
    show = front[["name", *cols, *measured, *tests, "baseline", "summary"]].sort_values(cols[-1])
    import pandas as pd

    with pd.option_context("display.width", 160, "display.max_colwidth", 60):
        print(show.to_string(index=False))
    print(f"\nresults: {path}/ (pareto.json, trials.parquet, configs/, study.db, run.json)")
