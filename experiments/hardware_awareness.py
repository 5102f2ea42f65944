"""HAQ's finding, checked on haq's own searches: a config specialised for one target under a
latency budget is not the best one for another target.

Reads the default-driver searches of experiments/search_quality.py (cifar_resnet20 on
npu-bitfusion-edge and on gpu-t4; run that first). For each relative latency budget r (a
fraction of uniform w8a8's latency on each target), it takes from each search the config with
the best validation top-1 whose predicted latency on its own target is at most r, then scores
both configs on both targets with each target's cost model.

    python experiments/hardware_awareness.py [--budgets 0.6,0.7,0.8,0.9]
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

import pandas as pd

from common import ROOT, save

MODEL = "cifar_resnet20"
TARGETS = ("npu-bitfusion-edge", "gpu-t4")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--budgets", default="0.6,0.7,0.8,0.9")
    args = ap.parse_args()
    from haq import BitConfig
    from haq.cost import cost_model_for
    from haq.models import discover_layers, load_model

    lm = load_model(MODEL, "none")
    layers = discover_layers(lm.model, lm.example_input())
    names = [s.name for s in layers]
    models = {t: cost_model_for(t, layers) for t in TARGETS}
    w8 = {t: models[t].score(BitConfig.uniform("w8a8", names)).latency_ms for t in TARGETS}
    trials = {}
    for t in TARGETS:
        path = ROOT / "experiments" / "runs" / f"search_quality-{MODEL}-{t}-100" / "trials.parquet"
        if not path.is_file():
            sys.exit(f"run experiments/search_quality.py first (missing {path.relative_to(ROOT)})")
        frame = pd.read_parquet(path)
        trials[t] = frame[frame["state"] == "complete"]
    rows: list[dict[str, Any]] = []
    for r in (float(x) for x in args.budgets.split(",")):
        picked = {}
        for t in TARGETS:
            ok = trials[t][trials[t]["latency_ms"] <= r * w8[t]]
            if ok.empty:
                continue
            best = ok.loc[ok["val_top1"].idxmax()]
            picked[t] = (BitConfig.from_dict(json.loads(best["config"])), float(best["val_top1"]))
        if len(picked) < 2:
            continue
        row: dict[str, Any] = {"budget": r}
        for src, (cfg, top1) in picked.items():
            row[f"{src} config"] = cfg.summary()
            row[f"{src} val_top1"] = top1
            for t in TARGETS:
                latency = models[t].score(cfg).latency_ms
                assert latency is not None
                row[f"{src} config on {t}"] = round(latency / w8[t], 4)
        a, b = TARGETS
        row["configs differ"] = picked[a][0] != picked[b][0]
        row[f"{a}'s config faster on {a}"] = row[f"{a} config on {a}"] < row[f"{b} config on {a}"]
        row[f"{b}'s config faster on {b}"] = row[f"{b} config on {b}"] < row[f"{a} config on {b}"]
        rows.append(row)
        print(f"budget {r:.2f} x w8a8: {a}'s pick {row[f'{a} config']} ({row[f'{a} val_top1']:.1f} %) runs "
              f"{row[f'{a} config on {a}']:.3f} / {row[f'{a} config on {b}']:.3f}; {b}'s pick {row[f'{b} config']} "
              f"({row[f'{b} val_top1']:.1f} %) runs {row[f'{b} config on {a}']:.3f} / {row[f'{b} config on {b}']:.3f} "
              f"(latency / w8a8 on {a} / {b})", file=sys.stderr)  # fmt: skip
    save("hardware_awareness", {"model": MODEL, "targets": TARGETS, "rows": rows})


if __name__ == "__main__":
    main()
