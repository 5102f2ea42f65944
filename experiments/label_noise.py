"""How much of the single-layer loss change on the calibration images is noise, and what the
raw signed loss did to the hybrid driver's ILP sweep (the figures behind `sensitivity=loss`).

Reads what earlier experiment runs left behind, computes nothing new:

* the sensitivity tables compare_drivers' hybrid seed-0 bitfusion runs cached
  (experiments/runs/compare/<model>-npu-bitfusion-edge-hybrid-s0/haq-cache/sensitivity/):
  per model, the single-layer changes, how many lower the loss (``loss`` < 0), and how many
  of those the ``label`` column (loss minus KL, shrunk by its standard error) calls noise;
* the ILP points' latency range (x uniform w8a8's) of the resnet56 runs with the raw signed
  loss in the ILP (`hybrid_variant.py --label loss56 --driver-opt sensitivity=loss`, run at
  commit c4901c4) against this round's compare_drivers runs (ILP on KL).

    python experiments/label_noise.py
"""

from __future__ import annotations

import pandas as pd
from compare_drivers import RUNS, _w8_latency

from common import ROOT, save

TARGETS = ("npu-bitfusion-edge", "gpu-t4")


def _table(model: str) -> pd.DataFrame:
    cache = RUNS / f"{model}-npu-bitfusion-edge-hybrid-s0" / "haq-cache" / "sensitivity"
    [path] = [p for p in cache.glob("*.parquet") if "-top1-" not in p.name]
    return pd.read_parquet(path)


def _ilp_range(trials: pd.DataFrame, w8: float) -> list[float]:
    lat = trials.loc[trials["source"] == "ilp", "latency_ms"] / w8
    return [round(float(lat.min()), 2), round(float(lat.max()), 2)]


def main() -> None:
    out: dict[str, dict] = {"tables": {}, "ilp_latency_range": {}}
    for model in ("cifar_resnet20", "cifar_resnet56"):
        t = _table(model)
        lower = t[t["loss"] < 0]
        out["tables"][model] = {"changes": len(t), "loss_negative": len(lower),
                                "loss_negative_within_noise": int((lower["label"] == 0).sum()),
                                "label_negative": int((t["label"] < 0).sum())}  # fmt: skip
        print(model, out["tables"][model])
    model = "cifar_resnet56"
    for target in TARGETS:
        w8 = _w8_latency(model, target)
        raw = pd.read_parquet(
            ROOT / "experiments/runs/loss56" / f"{model}-{target}-s0/trials.parquet"
        )
        kl = pd.read_parquet(RUNS / f"{model}-{target}-hybrid-s0" / "trials.parquet")
        out["ilp_latency_range"][target] = {
            "raw_loss": _ilp_range(raw, w8),
            "kl": _ilp_range(kl, w8),
        }
        print(target, out["ilp_latency_range"][target])
    save("label_noise", out)


if __name__ == "__main__":
    main()
