#!/usr/bin/env python3
"""Measure per-layer torch kernel latencies (and whole-model latencies) for ``gpu-h100``.

Run from the repository root, no install needed::

    PYTHONUNBUFFERED=1 PYTHONPATH=. python3 experiments/profile_gpu_h100.py --device cuda --out DIR

A thin caller of the job runner `haq.hardware.torch_gpu_jobs` (what the ``gpu-h100`` builder
runs; the files it writes into ``--out``: `haq.hardware.torch_gpu_files`): the flags are its
`GpuProfileOptions`, and the time budget counts from this process's start.
"""

# ruff: noqa: E402  (the clock and the cache location are set before the heavy imports)
from __future__ import annotations

import time

T0 = time.monotonic()

import argparse
import os
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
# haq's user cache would need platformdirs; nothing here needs a persistent cache.
os.environ.setdefault("HAQ_CACHE_DIR", tempfile.mkdtemp(prefix="haq-cache-"))

from haq.errors import HaqError
from haq.hardware import torch_gpu as tg
from haq.hardware.torch_gpu_jobs import DEFAULT_MODELS, GpuProfileOptions, profile_gpu


def _list(text: str) -> tuple[str, ...]:
    return tuple(v.strip() for v in str(text).split(",") if v.strip())


def parse_args(argv: list[str] | None = None) -> tuple[Path, GpuProfileOptions]:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--device", default="cuda", choices=["cuda", "cpu"])
    ap.add_argument("--batches", default="1,8,32", help="comma list (default 1,8,32)")
    ap.add_argument("--models", default=",".join(DEFAULT_MODELS),
                    help="comma list of registry names")  # fmt: skip
    ap.add_argument("--precisions", default=",".join(tg.PRECISIONS), help="comma list")
    ap.add_argument("--out", required=True, type=Path, help="output directory")
    ap.add_argument("--quick", action="store_true", help="few reps/samples (smoke test)")
    ap.add_argument("--time-budget", type=float, default=200.0,
                    help="seconds after start at which measuring stops (default 200)")  # fmt: skip
    ap.add_argument("--no-e2e", action="store_true", help="skip whole-model runs")
    ap.add_argument("--e2e-variants", default="folded,plain",
                    help="folded (Conv-BN folded with torch.fx) and/or plain")  # fmt: skip
    ap.add_argument("--threads", type=int, default=None,
                    help="torch CPU threads (default: 1 on --device cpu, torch's own on cuda)")  # fmt: skip
    ap.add_argument("--plan-only", action="store_true", help="print the plan and exit")
    args = ap.parse_args(argv)
    try:
        options = GpuProfileOptions(
            device=args.device, models=_list(args.models),
            batches=tuple(int(b) for b in _list(args.batches)),
            precisions=_list(args.precisions), quick=args.quick, time_budget=args.time_budget,
            e2e=not args.no_e2e, e2e_variants=_list(args.e2e_variants), threads=args.threads,
            plan_only=args.plan_only,
        )  # fmt: skip
    except HaqError as exc:
        ap.error(str(exc))
    return args.out, options


def main(argv: list[str] | None = None) -> int:
    out, options = parse_args(argv)
    try:
        profile_gpu(out, options, t0=T0, script="experiments/profile_gpu_h100.py",
                    argv=sys.argv[1:] if argv is None else argv)  # fmt: skip
    except HaqError as exc:  # no CUDA device (also in log.txt)
        print(f"profile_gpu_h100: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
