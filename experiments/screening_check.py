"""Does the whole-config proxy on the calibration images (`haq.search.screening`) say more
about a config's validation top-1 than the summed per-layer proxy the ILP sweeps?

Two checks on cifar_resnet20, the same images as compare_drivers (1,000 validation images from
the train folder, disjoint from the 256 calibration images):

1. **Ranking at equal latency**: every config the archived hybrid, zeroq-dp, NSGA-II and TPE
   runs evaluated (`experiments/results/compare_drivers/`, validation top-1 known), within 15
   points of the best, cut into latency deciles on the target; per decile the Spearman
   correlation with validation top-1 of the whole config's calibration loss, its KL to the
   float model and the summed per-layer KL. Beside them, fitted on each archived hybrid
   seed's first 50 evaluations and scored on the configs those 50 do not hold: the hybrid's
   surrogate, a line in the calibration loss alone, and the driver's `ProxyMap` (surrogate
   and calibration loss together), by decile and by band of latency / w8a8's.
2. **First ILP sweep**: the hybrid driver's first-sweep configs at a 50-evaluation budget with
   screening off (the default ``screen=0``: the solution nearest each cost goal) and on
   (``screen=4``: of the 4 solutions nearest each goal, the best scored), each evaluated on the validation
   images; hypervolume of the baselines plus those points over the archived reference front
   (the issue's plane: top-1 drop from float, latency / w8a8's, reference point (10, 1.0)).

    python experiments/screening_check.py        # ~15 minutes on 2 cores
"""

from __future__ import annotations

import json
import sys
import time
from typing import Any

import numpy as np
import pandas as pd
from compare_drivers import CHECKPOINTS, _capped, _hv, _points, _w8_latency
from scipy.stats import spearmanr

from common import ROOT, require_shared, save

MODEL, TARGETS = "cifar_resnet20", ("npu-bitfusion-edge", "gpu-t4")
DRIVERS = ("hybrid", "zeroq-dp", "nsga2", "tpe")
FIRST = 50  # evaluations the surrogate and the proxy line are fitted on
BAND = 15.0  # points below the best validation top-1: configs a front could use
BANDS = [0.0, 0.45, 0.6, 0.8, 1.3]  # latency / w8a8's
PREDICTORS = ("surrogate", "proxy_line", "proxy_map")


def _search(target: str, budget: int, out: str) -> Any:
    from haq.search.options import SearchOptions
    from haq.search.runner import Search

    shared = require_shared()
    opts = SearchOptions(model=MODEL, weights=str(shared / "models" / CHECKPOINTS[MODEL]),
                         data=str(shared / "data/cifar10-jpeg/test"),
                         calib_data=str(shared / "data/cifar10-jpeg/train"), target=target,
                         out=out, progress=False, profile="never", budget=budget)  # fmt: skip
    return Search(opts)


def _driver(search: Any, **options: str) -> Any:
    from haq.search.drivers import get_driver

    driver = get_driver("hybrid").make(options)
    driver.start(search.driver_context(), [], None)
    return driver


def _rho(frame: pd.DataFrame, column: str, sign: float) -> float:
    return float(spearmanr(sign * frame[column], frame["val"])[0])


def ranking(target: str, tmp: str) -> dict[str, Any]:
    from haq.config import BitConfig
    from haq.search.drivers.hybrid import WIDE_MARGIN
    from haq.search.drivers.surrogate import fit_proxy_map
    from haq.search.sensitivity import kl_each, loss_each
    from haq.search.trials import TrialRecord

    search = _search(target, 200, f"{tmp}/rank-{target}")
    driver = _driver(search)
    ev = search.driver_context().sensitivity.evaluator
    archive = pd.read_parquet(
        ROOT / f"experiments/results/compare_drivers/{MODEL}-{target}.parquet"
    )
    done = archive[archive["state"] == "complete"]
    pool = done[done["driver"].isin(DRIVERS)].drop_duplicates("config_hash")
    pool = pool[pool["val_top1"] > pool["val_top1"].max() - BAND]
    configs = {h: BitConfig.from_dict(json.loads(c))
               for h, c in zip(pool["config_hash"], pool["config"], strict=True)}  # fmt: skip
    rows, t0 = [], time.perf_counter()
    for n, (h, cfg) in enumerate(configs.items()):
        logits = ev.logits(cfg)
        rows.append({"hash": h, "loss": float(loss_each(logits, ev.data.y).mean()),
                     "kl": float(kl_each(ev.reference, logits).mean()),
                     "summed_kl": sum(driver.penalty(v, str(cfg[v])) for v, _ in driver.vars)})  # fmt: skip
        if n % 200 == 0:
            print(f"  {target}: {n}/{len(configs)} configs, {time.perf_counter() - t0:.0f} s",
                  file=sys.stderr, flush=True)  # fmt: skip
    frame = pool.set_index("config_hash")[["val_top1", "latency_ms"]].rename(
        columns={"val_top1": "val", "latency_ms": "lat"}).join(pd.DataFrame(rows).set_index("hash"))  # fmt: skip
    frame["decile"] = pd.qcut(frame["lat"], 10, labels=False)
    frame["band"] = pd.cut(frame["lat"] / _w8_latency(MODEL, target), BANDS)
    deciles = {c: float(np.mean([_rho(g, c, -1.0) for _, g in frame.groupby("decile")]))
               for c in ("loss", "kl", "summed_kl")}  # fmt: skip
    fitted = []
    for seed in (0, 1, 2):
        run = archive[archive["run"] == f"{MODEL}-{target}-hybrid-s{seed}"].sort_values("trial")
        run = run[(run["state"] == "complete") & ~run["cached"].astype(bool)].head(FIRST)
        d = _driver(search)
        for r in run.itertuples():
            d.tell(TrialRecord(int(r.trial), BitConfig.from_dict(json.loads(r.config)), None,
                               "complete", "complete", values=[r.val_top1, r.latency_ms]))  # fmt: skip
        recs = d._evaluated()
        values = np.array([r.values for r in recs])
        fit = d._fit(recs, values)[0]
        base = d.screen.scores([d.reference])[0]
        done = np.array(d.screen.scores([r.config for r in recs])) - base
        drops = fit.anchor - values[:, 0]
        line = np.polyfit(done[drops <= WIDE_MARGIN], drops[drops <= WIDE_MARGIN], 1)
        pmap = fit_proxy_map(done, fit.loo, drops, WIDE_MARGIN)
        assert pmap is not None
        unseen = frame[~frame.index.isin([r.config.hash for r in recs])].copy()
        surrogate = np.array([fit.drop(d._pair_ids(d._params(configs[h]))) for h in unseen.index])
        unseen["surrogate"] = fit.anchor - surrogate
        unseen["proxy_line"] = fit.anchor - np.polyval(line, unseen["loss"] - base)
        unseen["proxy_map"] = [fit.anchor - pmap.drop(x - base, s)
                               for x, s in zip(unseen["loss"], surrogate, strict=True)]  # fmt: skip
        fitted.append({c: {
            "decile_spearman": float(np.mean([_rho(g, c, 1.0) for _, g in unseen.groupby("decile")])),
            "rmse": float(np.sqrt(((unseen[c] - unseen["val"]) ** 2).mean())),
            **{f"bias {b}": float((g[c] - g["val"]).mean()) for b, g in unseen.groupby("band", observed=True)},
            **{f"rmse {b}": float(np.sqrt(((g[c] - g["val"]) ** 2).mean()))
               for b, g in unseen.groupby("band", observed=True)},
        } for c in PREDICTORS})  # fmt: skip
    return {"configs": len(frame), "decile_spearman": deciles,
            f"fitted_on_first_{FIRST}": {c: {k: round(float(np.mean([f[c][k] for f in fitted])), 3)
                                             for k in fitted[0][c]}
                                         for c in PREDICTORS}}  # fmt: skip


def first_sweep(target: str, tmp: str) -> dict[str, Any]:
    search = _search(target, 50, f"{tmp}/sweep-{target}")
    ev = search._local().evaluator
    w8 = _w8_latency(MODEL, target)
    archive = pd.read_parquet(
        ROOT / f"experiments/results/compare_drivers/{MODEL}-{target}.parquet"
    )
    float_val = float(archive["float_val_top1"].iloc[0])
    every = _points(archive, w8)
    ref, ref_capped = _hv(every), _hv(_capped(every))
    out: dict[str, Any] = {}
    for label, options in (("screen=0 (default)", {}), ("screen=4", {"screen": "4"})):
        driver = _driver(search, **options)
        proposals = driver.ask(40)
        pts = np.array([[float_val - ev.evaluate(p.config).metrics.top1,
                         search.cost_model.score(p.config).latency_ms / w8] for p in proposals])  # fmt: skip
        ilp = [p.source == "ilp" for p in proposals]
        out[label] = {"ilp_points": int(sum(ilp)), "hv_ratio": round(_hv(pts) / ref, 4),
                      "capped_hv_ratio": round(_hv(_capped(pts)) / ref_capped, 4),
                      "screen_passes": driver.screen.passes if driver.screen else 0}  # fmt: skip
    return out


def main() -> None:
    import tempfile

    result: dict[str, Any] = {"model": MODEL, "targets": {}}
    with tempfile.TemporaryDirectory() as tmp:
        for target in TARGETS:
            result["targets"][target] = {"ranking": ranking(target, tmp),
                                         "first_sweep": first_sweep(target, tmp)}  # fmt: skip
            print(target, result["targets"][target], file=sys.stderr, flush=True)
    save("screening_check", result)


if __name__ == "__main__":
    main()
