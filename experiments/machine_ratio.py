"""How far apart two CPUs time the same whole networks: uniform configs in two table folders.

Reads the stored observations (`haq profile`'s ``observations.jsonl.gz``) of two tables
folders, e.g. the shipped cpu-avx512 tables (AMD) and a CPU profiled as a target of its own,
and for every (model, uniform config, threads) both measured reports the ratio of their
fastest wall medians (the tables' statistic). fp32 runs the same float kernels on both x86
CPUs; int8 may not (AMX, VNNI), so the ratios are given per kernel class.

    python experiments/machine_ratio.py [--a hardware_profiles/cpu-avx512]
        [--b experiments/runs/amx/cpu-amx] [--out machine_ratio]
"""

from __future__ import annotations

import argparse
from collections import defaultdict
from pathlib import Path
from typing import Any

from haq.hardware.ort.files import read_observations
from haq.hardware.ort.machines import cpu_identity

from common import ROOT, machine, save


def walls(directory: Path) -> tuple[dict[tuple[str, str, int], float], set[Any]]:
    """(model, uniform config, threads) -> fastest wall median in ms; and the CPUs named."""
    out, cpus = {}, set()
    for ob in read_observations(directory):
        if ob["config"].startswith("uniform:") and ob["batch"] == 1:
            out[(ob["model"], ob["config"], ob["threads"])] = ob["wall_us"] / 1e3
            cpus.add(cpu_identity(ob.get("machine") or {}))
    return out, cpus


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--a", default=str(ROOT / "hardware_profiles" / "cpu-avx512"))
    ap.add_argument("--b", default=str(ROOT / "experiments" / "runs" / "amx" / "cpu-amx"))
    ap.add_argument("--out", default="machine_ratio")
    args = ap.parse_args()
    a, cpus_a = walls(Path(args.a))
    b, cpus_b = walls(Path(args.b))
    per_class: dict[str, dict[str, float]] = defaultdict(dict)
    for key in sorted(a.keys() & b.keys()):
        model, config, threads = key
        per_class[config.removeprefix("uniform:")][f"{model} {threads}t"] = round(
            b[key] / a[key], 3
        )
    summary = {k: {"min": min(v.values()), "max": max(v.values()), "n": len(v)}
               for k, v in per_class.items()}  # fmt: skip
    for k, s in summary.items():
        print(f"{k:14s} b/a wall ratio {s['min']:.2f}-{s['max']:.2f} over {s['n']} networks")
    save(args.out, {"machine": machine(), "a": args.a, "b": args.b,
                    "cpus_a": sorted(map(str, cpus_a)), "cpus_b": sorted(map(str, cpus_b)),
                    "ratio_b_over_a": per_class, "summary": summary})  # fmt: skip


if __name__ == "__main__":
    main()
