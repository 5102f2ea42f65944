"""The hybrid driver's archived compare_drivers runs before and after a change, over one
reference front that holds both (the archive now plus the earlier hybrid runs).

compare_drivers keeps one set of hybrid runs per pair, so a rerun replaces the old ones and
its ratios are over a reference that no longer holds them. This reads the old runs from the
archive at a git revision (default: before the change that let the evolution move through
every choice and credit accuracy above the baselines) and sets the mean hypervolume ratios of
both at 30 / 50 / 100 / 200 evaluations side by side, as the issue measures them and capped
at the float model's accuracy. Seconds; no search.

    python experiments/hybrid_before_after.py [--rev 6b33a02]
"""

from __future__ import annotations

import argparse
import io
import subprocess
import sys
from typing import Any

import numpy as np
import pandas as pd
from compare_drivers import (
    PLAN,
    TARGETS,
    _archive_path,
    _archived,
    _capped,
    _hv,
    _points,
    _ratios,
    _w8_latency,
)

from common import ROOT, save

PREFIXES = (30, 50, 100, 200)


def _old_archive(rev: str, model: str, target: str) -> pd.DataFrame:
    path = _archive_path(model, target).relative_to(ROOT)
    blob = subprocess.run(
        ["git", "show", f"{rev}:{path}"], cwd=ROOT, capture_output=True, check=True
    )
    return pd.read_parquet(io.BytesIO(blob.stdout))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--rev", default="6b33a02", help="git revision holding the earlier runs")
    args = ap.parse_args()
    out: dict[str, Any] = {"rev": args.rev, "prefixes": PREFIXES, "pairs": {}}
    for model, (seeds, _) in PLAN.items():
        for target in TARGETS:
            now, old = _archived(model, target), _old_archive(args.rev, model, target)
            w8 = _w8_latency(model, target)
            runs = {label: [_points(f[f["run"] == f"{model}-{target}-hybrid-s{s}"], w8) for s in seeds]
                    for label, f in (("before", old), ("after", now))}  # fmt: skip
            every = np.vstack([_points(now, w8), *runs["before"]])
            ref, ref_capped = _hv(every), _hv(_capped(every))
            pair = out["pairs"][f"{model}:{target}"] = {}
            for label, pts in runs.items():
                ratios = [_ratios(p, ref, ref_capped, PREFIXES) for p in pts]
                pair[label] = {k: np.round(np.mean([r[k] for r in ratios], axis=0), 3).tolist()
                               for k in ("issue", "capped")}  # fmt: skip
            print(model, target, pair, file=sys.stderr)
    save("hybrid_before_after", out)


if __name__ == "__main__":
    main()
