"""HAQ's finding, checked on haq's own searches: the best config depends on the target, and
each target's config is faster on its own target than another target's config of the same
accuracy.

Reads the default-driver (hybrid) searches archived by experiments/compare_drivers.py
(cifar_resnet20, seed 0, on npu-bitfusion-edge, gpu-t4 and cpu-avx512; run that first). For each accuracy level
(top-1 at most d points below the float model's, on the validation images every search shares)
it takes from each search the config fastest on that search's own target among those reaching
the level, then scores every picked config on every target with each target's cost model.
Because all searches share the validation images, the picks are accuracy-matched.

    python experiments/hardware_awareness.py [--drops 0.5,1,2,4]
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

import pandas as pd

from common import ROOT, save

MODEL = "cifar_resnet20"
TARGETS = ("npu-bitfusion-edge", "gpu-t4", "cpu-avx512")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--drops", default="0.5,1,2,4")
    ap.add_argument("--driver", default="hybrid")
    args = ap.parse_args()
    from haq import BitConfig, HaqError
    from haq.cost import cost_model_for
    from haq.models import discover_layers, load_model

    lm = load_model(MODEL, "none")
    layers = discover_layers(lm.model, lm.example_input())
    names = [s.name for s in layers]
    models = {t: cost_model_for(t, layers) for t in TARGETS}
    w8 = {t: models[t].score(BitConfig.uniform("w8a8", names)).latency_ms for t in TARGETS}
    trials, float_top1 = {}, {}
    for t in TARGETS:
        path = ROOT / "experiments" / "results" / "compare_drivers" / f"{MODEL}-{t}.parquet"
        name = f"{MODEL}-{t}-{args.driver}-s0"
        frame = pd.read_parquet(path) if path.is_file() else pd.DataFrame({"run": []})
        frame = frame[frame["run"] == name]
        if frame.empty:
            sys.exit(
                f"run experiments/compare_drivers.py first ({name} is not in {path.relative_to(ROOT)})"
            )
        trials[t] = frame[frame["state"] == "complete"]
        float_top1[t] = float(frame["float_val_top1"].iloc[0])
    assert len(set(float_top1.values())) == 1, "the searches must share their validation images"
    top = next(iter(float_top1.values()))
    rows: list[dict[str, Any]] = []
    for d in (float(x) for x in args.drops.split(",")):
        picked = {}
        for t in TARGETS:
            ok = trials[t][trials[t]["val_top1"] >= top - d]
            best = ok.loc[ok["latency_ms"].idxmin()]
            picked[t] = (BitConfig.from_dict(json.loads(best["config"])), float(best["val_top1"]))
        row: dict[str, Any] = {"max_drop_points": d, "picks": {}}
        for src, (cfg, top1) in picked.items():
            on: dict[str, float | None] = {}
            for t in TARGETS:
                try:
                    latency = models[t].score(cfg).latency_ms
                except HaqError:  # e.g. a float layer on an integer-only NPU
                    latency = None
                on[t] = round(latency / w8[t], 4) if latency is not None else None
            row["picks"][src] = {
                "config": cfg.summary(),
                "val_top1": top1,
                "latency_vs_w8a8_on": on,
            }
        row["all configs differ"] = len({c.hash for c, _ in picked.values()}) == len(TARGETS)

        def latency_on(src: str, t: str, row: dict[str, Any] = row) -> float:
            v = row["picks"][src]["latency_vs_w8a8_on"][t]
            return float("inf") if v is None else v  # a config the target cannot run

        row["own config fastest on own target"] = {
            t: all(latency_on(t, t) <= latency_on(o, t) for o in TARGETS) for t in TARGETS
        }
        rows.append(row)
        print(f"top-1 >= float - {d:g} points:", file=sys.stderr)
        for src, p in row["picks"].items():
            lat = ", ".join(f"{t} {v:.3f}" if v is not None else f"{t} cannot run"
                            for t, v in p["latency_vs_w8a8_on"].items())  # fmt: skip
            print(f"  {src:>18}'s pick {p['config']} ({p['val_top1']:.1f} %): latency / w8a8 on {lat}",
                  file=sys.stderr)  # fmt: skip
        print(f"  own config fastest on own target: {row['own config fastest on own target']}",
              file=sys.stderr)  # fmt: skip
    save("hardware_awareness", {"model": MODEL, "targets": TARGETS, "driver": args.driver,
                                "float_val_top1": top, "rows": rows})  # fmt: skip


if __name__ == "__main__":
    main()
