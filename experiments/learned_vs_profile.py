"""Where the learned model and a network's own profile part: per layer and per boundary.

For one network the tables never profiled, the lookup cost model of ``--tables`` alone (the
learned model fitted on them, as `cost_model_validation.py` does) against the same cost model
reading the overlay that `--profile auto` measured (`cost_model_validation.py --profile-auto`
writes it under experiments/runs/<name>/overlay): each uniform config's total, the layers
that differ most, and for one of the validation's random configs the class-change boundaries
that differ most. Also the profiled networks' uniform configs on ``--tables`` against their
own measured walls (a profiled model's uniform configs should sum to them).

    python experiments/learned_vs_profile.py [--model mobilenet_v3_small]
        [--tables experiments/runs/amx/cpu-amx] [--validation cost_model_validation_amx] [--config 3]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import warnings
from pathlib import Path
from typing import Any

from cost_model_validation import CLASSES, RUNS, overlay_env, quantizer

from haq.cost.learned_target import fit_target
from haq.cost.lookup import LookupCostModel
from haq.hardware.ort.files import profile_yaml_path, read_observations
from haq.hardware.ort.target import class_config
from haq.hardware.profile import load_profile

from common import RESULTS, ROOT, save


def top(pairs: list[dict[str, Any]], key: str, k: int = 8) -> list[dict[str, Any]]:
    return sorted(pairs, key=lambda r: -abs(r[key]))[:k]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--model", default="mobilenet_v3_small")
    ap.add_argument("--tables", default=str(ROOT / "experiments/runs/amx/cpu-amx"))
    ap.add_argument("--validation", default="cost_model_validation_amx")
    ap.add_argument("--config", type=int, default=3, help="which validation config to break down")
    ap.add_argument("--out", default="learned_vs_profile")
    args = ap.parse_args()
    warnings.filterwarnings("ignore")
    tables = Path(args.tables)
    profile = load_profile(profile_yaml_path(tables))
    q = quantizer(args.model)
    names, n = q.layer_names, len(q.layer_names)
    with tempfile.TemporaryDirectory() as empty, overlay_env(Path(empty)):
        learned = fit_target(profile, save=False)
        alone = LookupCostModel(profile, q.layers, threads=1, learned=learned, calibration=None)
        walls = {}
        own: dict[str, LookupCostModel] = {}  # per profiled model, built once
        for ob in read_observations(tables):
            # text models' jobs are labelled per token count ("minilm@16"): image models only
            if (
                ob["config"].startswith("uniform:")
                and ob["threads"] == 1
                and "@" not in ob["model"]
            ):
                spec = quantizer(ob["model"])
                if ob["model"] not in own:
                    own[ob["model"]] = LookupCostModel(profile, spec.layers, threads=1,
                                                       learned=None, calibration=None)  # fmt: skip
                config = class_config(spec.layer_names, ob["kernels"])
                pred = own[ob["model"]].score(config).latency_ms
                walls[ob["config"] + " " + ob["model"]] = {
                    "predicted_ms": round(pred, 3),
                    "wall_ms": round(ob["wall_us"] / 1e3, 3),
                }
    with overlay_env(RUNS / args.validation / "overlay"):
        after = LookupCostModel(profile, q.layers, threads=1, learned=learned, calibration=None)
    uniform = {}
    for cls in CLASSES:
        a, b = (m.breakdown(class_config(names, [cls] * n)) for m in (alone, after))
        layers = [{"layer": la["name"], "learned_us": round(la["latency_us"], 1),
                   "source": la["source"], "profiled_us": round(lb["latency_us"], 1),
                   "diff_us": round(la["latency_us"] - lb["latency_us"], 1)}
                  for la, lb in zip(a["layers"], b["layers"], strict=True)]  # fmt: skip
        uniform[cls] = {"learned_ms": round(a["latency_ms"], 3),
                        "profiled_ms": round(b["latency_ms"], 3), "top_layers": top(layers, "diff_us")}  # fmt: skip
        print(cls, uniform[cls]["learned_ms"], "ms learned,", uniform[cls]["profiled_ms"],
              "ms profiled;", uniform[cls]["top_layers"][:3])  # fmt: skip
    rows = json.loads((RESULTS / f"{args.validation}.json").read_text())["rows"]
    row = [r for r in rows if r["model"] == args.model][args.config]
    a, b = (m.breakdown(class_config(names, row["kernels"])) for m in (alone, after))
    bounds = [{"before": xa["before"], "from": xa["from"], "to": xa["to"],
               "learned_us": round(xa["latency_us"], 1), "profiled_us": round(xb["latency_us"], 1),
               "diff_us": round(xa["latency_us"] - xb["latency_us"], 1)}
              for xa, xb in zip(a["boundaries"], b["boundaries"], strict=True)]  # fmt: skip
    mixed = {"config": args.config, "measured_ms": round(row["best_round_median_ms"], 3),
             "learned_ms": round(a["latency_ms"], 3), "profiled_ms": round(b["latency_ms"], 3),
             "boundaries_learned_us": round(sum(x["learned_us"] for x in bounds), 1),
             "boundaries_profiled_us": round(sum(x["profiled_us"] for x in bounds), 1),
             "top_boundaries": top(bounds, "diff_us")}  # fmt: skip
    print(
        "mixed",
        {k: v for k, v in mixed.items() if k != "top_boundaries"},
        mixed["top_boundaries"][:3],
    )
    save(args.out, {"argv": vars(args), "uniform": uniform, "mixed": mixed,
                    "profiled_uniform_walls": walls})  # fmt: skip


if __name__ == "__main__":
    main()
