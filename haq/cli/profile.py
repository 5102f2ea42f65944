"""`haq profile`: measure a target's latency tables (layers, transitions, glue) on this machine.

cpu-avx512 is measured here in ONNX Runtime (`haq.hardware.ort.jobs`); gpu-h100 goes to its
builder (`haq.hardware.builders.TorchGpu`: torch on a CUDA device), which takes --model,
--out and --shipped only.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from haq.errors import HaqError


def register(sub: Any) -> None:
    p = sub.add_parser(
        "profile",
        help="measure per-layer, transition and glue latency tables for a hardware target",
        description=(
            "Exports whole-model configs per kernel class (uniform and alternating), times them "
            "with ONNX Runtime and attributes the time with its profiler. Resumable: jobs "
            "already in the tables are skipped."
        ),
    )
    p.add_argument("--target", required=True,
                   help="hardware target (measured here: cpu-avx512; gpu-h100 on a CUDA machine, "
                        "through its builder: --model, --out and --shipped apply)")  # fmt: skip
    p.add_argument("--model", "-m", default=None,
                   help="registered model name(s), comma-separated (see `haq models`)")  # fmt: skip
    p.add_argument("--probes", type=int, default=None, metavar="N",
                   help="measure the probe networks probe_0 .. probe_<N-1> (seeded random CNNs "
                        "of the classifier design space, grouped convs included, haq.models.probe) "
                        "into <tables>/probes/: training rows for the learned cost model (uniform "
                        "configs only; by default it learns from them the op kinds no named "
                        "network's row has)")  # fmt: skip
    p.add_argument("--weights", "-w", default="none",
                   help="'none' (default: random init; latency does not depend on the values), "
                        "'default' or a checkpoint path")  # fmt: skip
    p.add_argument("--threads", "-t", default="1,2", help="intra-op thread counts (default 1,2)")
    p.add_argument("--kernels", default=None,
                   help="kernel classes to measure, comma-separated (default: all of "
                        "fp32,int8,int8-weights,qdq16,matmulnbits,dynamic-int8,dynamic-int8-token; "
                        "text models get fp32, the two dynamic-int8 and matmulnbits only)")  # fmt: skip
    p.add_argument("--tokens", default="16,128",
                   help="text models (minilm, hf:PATH): token counts to measure, comma-separated "
                        "(default 16,128; each is a model of its own in the tables, name@T)")  # fmt: skip
    p.add_argument("--no-transitions", action="store_true",
                   help="skip the alternating configs (no cross-class transition rows)")  # fmt: skip
    p.add_argument("--runs", type=int, default=30, help="timed runs per config (default 30)")
    p.add_argument("--profile-runs", type=int, default=10,
                   help="profiled runs per config for attribution (default 10)")  # fmt: skip
    p.add_argument("--warmup", type=int, default=5, help="untimed runs first (default 5)")
    p.add_argument("--repeats", type=int, default=2,
                   help="wall timings per config, in separate passes over all configs; the "
                        "fastest median counts (default 2)")  # fmt: skip
    p.add_argument("--wait-idle", type=float, default=0.0, metavar="SECONDS",
                   help="before each config, wait up to SECONDS for other processes to leave "
                        "the CPUs idle (default 0: measure at once; the load is recorded)")  # fmt: skip
    p.add_argument("--fresh", action="store_true",
                   help="discard the stored measurements of these models at these thread "
                        "counts and measure them again (e.g. taken on a busy machine)")  # fmt: skip
    p.add_argument("--max-jobs", type=int, default=None, metavar="N",
                   help="measure at most N new jobs now, those whose layer rows the cost model "
                        "is least sure of first (most predicted time no row answers); run again "
                        "for the rest")  # fmt: skip
    p.add_argument("--out", default=None,
                   help="tables directory (default: your table overlay, which every cost model "
                        "of the target reads over its shipped tables); the profile YAML goes "
                        "beside it as <folder name>.yaml, a target of that name (--out DIR/my-cpu: "
                        "this CPU as a target of its own, --target DIR/my-cpu.yaml); gpu-h100: "
                        "the folder its builder writes gpu-h100/ into)")  # fmt: skip
    p.add_argument("--shipped", action="store_true",
                   help="measure into the shipped tables (hardware_profiles/<target>/) and "
                        "rewrite the target's YAML: for maintainers of the target")  # fmt: skip
    p.set_defaults(func=run)


def _int_list(name: str, text: str) -> list[int]:
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise HaqError(f"{name} must be comma-separated integers, not {text!r}") from None
    if not values or min(values) < 1:
        raise HaqError(f"{name} must be positive integers, not {text!r}")
    return values


def _least_sure(target: str, out: str | None) -> Any:
    """`haq.search.profiling.least_sure` of the tables being grown: ``--out``'s target once it
    has a YAML, else ``target`` (with the user's overlay)."""
    from haq.hardware.ort.files import profile_yaml_path
    from haq.hardware.profile import get_target
    from haq.search.profiling import least_sure

    own = profile_yaml_path(out) if out else None
    return least_sure(get_target(own if own is not None and own.is_file() else target))


def run(args: argparse.Namespace) -> int:
    from haq.hardware.ort.files import profile_yaml_path
    from haq.hardware.ort.jobs import profile_target
    from haq.hardware.ort.target import KERNEL_CLASSES, TARGETS, iter_classes

    if args.shipped and args.out:
        raise HaqError("--shipped already names the tables directory; drop --out")
    if args.target not in TARGETS:
        return _measure_with_builder(args)
    threads = _int_list("--threads", args.threads)
    if args.max_jobs is not None and args.max_jobs < 1:
        raise HaqError(f"--max-jobs must be at least 1, not {args.max_jobs}")
    if (args.model is None) == (args.probes is None):
        raise HaqError("give either --model NAMES or --probes N")
    if args.probes is not None:
        if args.probes < 1:
            raise HaqError(f"--probes must be at least 1, not {args.probes}")
        models = [f"probe_{i}" for i in range(args.probes)]
    else:
        models = [m.strip() for m in args.model.split(",") if m.strip()]
    if not models:
        raise HaqError("--model needs at least one model name (see `haq models`)")
    classes = (
        iter_classes(c.strip() for c in args.kernels.split(",") if c.strip())
        if args.kernels
        else list(KERNEL_CLASSES)
    )
    from haq.hardware.overlay import overlay_path

    overlay = not args.shipped and args.out is None
    if args.out is None:  # rows joining the target's own: only from a CPU that runs its kernels
        from haq.hardware.profile import get_target
        from haq.hardware.reachable import runtime_gap

        gap = runtime_gap(get_target(args.target))
        if gap is not None:
            where = "shipped tables" if args.shipped else "tables (your overlay)"
            raise HaqError(f"cannot profile into {args.target}'s {where}: {gap}")
    report = profile_target(
        models,
        target=args.target,
        threads=threads,
        classes=classes,
        transitions=not args.no_transitions,
        runs=args.runs,
        profile_runs=args.profile_runs,
        warmup=args.warmup,
        weights=args.weights,
        directory=overlay_path(args.target) if overlay else args.out,
        write_yaml=not overlay,
        wait_idle_s=args.wait_idle,
        repeats=args.repeats,
        fresh=args.fresh,
        probes=args.probes is not None,
        tokens=_int_list("--tokens", args.tokens),
        max_jobs=args.max_jobs,
        priority=None if args.max_jobs is None else _least_sure(args.target, args.out),
    )
    tables = report.tables
    sizes = (
        f"{len(tables.layers)} layer rows, {len(tables.transitions)} transition rows, "
        f"{len(tables.glue)} glue rows"
        if tables is not None
        else "no tables"
    )
    name = Path(args.out).name if args.out else args.target  # --out DIR/NAME: target NAME
    own = f" (a target of its own: {profile_yaml_path(args.out)})" if name != args.target else ""
    print(f"{name}: measured {report.measured} jobs, skipped {report.skipped} already "
          f"measured, in {report.seconds:.0f} s; {sizes} in {report.directory}{own}")  # fmt: skip
    if report.deferred:
        print(f"{name}: {report.deferred} jobs left by --max-jobs; run again to measure them")
    if args.out and tables is not None:
        _fit_own_model(Path(args.out))
    if report.failed:
        for line in report.failed:
            print(f"haq: failed: {line}")
        return 1
    return 0


def _fit_own_model(out: Path) -> None:
    """A target of its own has no shipped learned model: fit one beside its tables
    (`LearnedCostModel.folder_of`), so layers no row holds are learned, not roofline."""
    from haq.cost.learned_target import fit_target
    from haq.hardware.ort.files import profile_yaml_path
    from haq.hardware.profile import get_target

    profile = get_target(profile_yaml_path(out))
    print(f"{profile.id}: fitting its learned cost model on these tables ...", flush=True)
    try:
        r = fit_target(profile).report
    except HaqError as e:
        print(f"{profile.id}: no learned cost model ({e}); layers no row holds get the roofline")
        return
    print(f"{profile.id}: learned cost model on {r['rows']} rows ({r['probe_rows']} from "
          f"probe networks), in-sample MAPE {r['in_sample_mape']:.1f}%, "
          f"saved to {r['saved_to']}")  # fmt: skip


def _measure_with_builder(args: argparse.Namespace) -> int:
    """A target measured by a builder of its own (gpu-h100: torch on CUDA), not ORT."""
    from haq.hardware.builders import BUILDERS
    from haq.paths import data_dir, overlay_dir

    measured = [t for t, make in BUILDERS.items() if make().provenance == "measured"]
    if args.target not in BUILDERS:
        raise HaqError(
            f"unknown target {args.target!r}; `haq profile` measures: {', '.join(measured)}"
        )
    builder = BUILDERS[args.target]()
    if builder.provenance != "measured":
        raise HaqError(f"{args.target} is {builder.provenance}, not measured: its builder makes "
                       f"its tables (haq.hardware.builders); `haq profile` measures: "
                       f"{', '.join(measured)}")  # fmt: skip
    if args.probes is not None:
        raise HaqError(f"--probes is for cpu-avx512; {args.target} takes --model NAMES")
    models = [m.strip() for m in args.model.split(",") if m.strip()] if args.model else None
    out = data_dir("hardware_profiles") if args.shipped else Path(args.out or overlay_dir())
    built = builder.build(out, models, script="haq profile", argv=sys.argv[1:])
    print(f"{args.target}: {len(built.layers)} layer rows in {out / args.target}")
    return 0
