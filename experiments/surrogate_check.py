"""How well the hybrid driver's accuracy surrogate, refitted on a finished hybrid search's own
trials, predicts the configs another driver found: a check on why hybrid misses them.

Reads the hybrid run of experiments/compare_drivers.py (its results dir under
experiments/runs/compare/, so run that first on this machine) and the other driver's trials
from that script's archive (experiments/results/compare_drivers/), refits the
surrogate exactly as the driver would on resume, and prints, for the other driver's configs in
a band of latency (fraction of uniform w8a8's), their measured validation top-1 against the
surrogate's prediction.

    python experiments/surrogate_check.py [--target gpu-t4] [--other amp-greedy] [--band 0.70,0.77]
"""

from __future__ import annotations

import argparse
import json
import sys
import warnings

import numpy as np
import pandas as pd

from common import ROOT, save


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--model", default="cifar_resnet20")
    ap.add_argument("--target", default="gpu-t4")
    ap.add_argument("--other", default="amp-greedy")
    ap.add_argument("--band", default="0.70,0.77")
    args = ap.parse_args()
    warnings.filterwarnings("ignore")
    from haq import BitConfig
    from haq.search.drivers import get_driver
    from haq.search.options import SearchOptions
    from haq.search.runner import Search
    from haq.search.storage import StudyStore

    runs = ROOT / "experiments" / "runs" / "compare"
    hybrid = runs / f"{args.model}-{args.target}-hybrid-s0"
    archive = (
        ROOT / "experiments" / "results" / "compare_drivers" / f"{args.model}-{args.target}.parquet"
    )
    if not (hybrid / "pareto.json").is_file() or not archive.is_file():
        sys.exit(f"run experiments/compare_drivers.py first (missing {hybrid.relative_to(ROOT)} "
                 f"or {archive.relative_to(ROOT)})")  # fmt: skip
    saved = json.loads((hybrid / "run.json").read_text())["options"]
    fields = SearchOptions.__dataclass_fields__
    opts = SearchOptions(**{k: v for k, v in saved.items() if k in fields and k != "budgets"})
    opts.resume, opts.out, opts.progress = True, str(hybrid), False
    search = Search(opts)
    ctx = search.driver_context()
    history = StudyStore(search.results.study_db, search.space, search.objectives,
                         ctx.directions, True).history()  # fmt: skip
    driver = get_driver("hybrid").make({})
    driver.start(ctx, history, None)
    recs = driver._evaluated()
    i = search.objectives.index("top1")
    fit = driver._fit(recs, np.array([r.values for r in recs]))[i]
    anchor, sigma = fit.anchor, fit.sigma
    w8 = search.cost_model.score(BitConfig.uniform("w8a8", search.space.names)).latency_ms
    lo, hi = (float(x) for x in args.band.split(","))
    frame = pd.read_parquet(archive)
    frame = frame[frame["run"] == f"{args.model}-{args.target}-{args.other}-s0"]
    rows = []
    for r in frame[frame["state"] == "complete"].sort_values("latency_ms").itertuples():
        if lo < r.latency_ms / w8 < hi:
            cfg = BitConfig.from_dict(json.loads(r.config))
            pred = fit.accuracy(driver._pair_ids(driver._params(cfg)))
            rows.append({"summary": r.summary, "latency_vs_w8a8": round(r.latency_ms / w8, 4),
                         "measured_top1": r.val_top1, "predicted_top1": round(pred, 2),
                         "in_hybrid_history": cfg.hash in driver.by_hash})  # fmt: skip
            print(f"{args.other} {r.summary} at {r.latency_ms / w8:.3f}x: measured {r.val_top1:.1f} %, "
                  f"surrogate {pred:.1f} %", file=sys.stderr)  # fmt: skip
    own = [r for r in recs if lo < r.cost.latency_ms / w8 < hi]
    best = max((r.values[i] for r in own), default=None)
    print(f"hybrid's own trials in the band: {len(own)}, best {best} % (anchor {anchor} %, "
          f"residual scale {sigma:.2f})", file=sys.stderr)  # fmt: skip
    save("surrogate_check", {"model": args.model, "target": args.target, "other": args.other,
                             "band": [lo, hi], "anchor_top1": anchor, "residual_scale": sigma,
                             "hybrid_trials_in_band": len(own), "hybrid_best_in_band": best,
                             "rows": rows})  # fmt: skip


if __name__ == "__main__":
    main()
