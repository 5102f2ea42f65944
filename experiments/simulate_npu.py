"""Simulated latency/energy tables for the bit-flexible NPUs HAQ targeted.

Builds every NPU target with its `haq.hardware.builders` builder (the analytic simulators in
`haq.hardware.simulators`, Bit Fusion and BISMO, edge and cloud presets, over the
de-duplicated layer signatures of the zoo models; files: `haq.hardware.simulators.files`)
into ``hardware_profiles/``, and writes ``experiments/results/simulate_npu.json``: whole-model
sums of layer latency/energy at uniform w8a8 / w4a4 / w2a2 and the per-kind latency ratios.

Usage: ``python experiments/simulate_npu.py [--batch 1] [--models resnet18 ...]``.
Takes a few seconds (CPU only).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter, defaultdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
from haq.hardware.builders import get_builder  # noqa: E402
from haq.hardware.simulators import TARGETS  # noqa: E402
from haq.hardware.simulators.files import MODELS, collect_layers  # noqa: E402
from haq.hardware.tables import SIGNATURE_COLUMNS  # noqa: E402

from common import ROOT, save  # noqa: E402

UNIFORM = [(8, 8), (4, 4), (2, 2)]


def summarize(
    tables: dict[str, pd.DataFrame], per_model: dict[str, list], models: list[str]
) -> dict[str, Any]:
    """Whole-model sums at uniform configs and per-kind w8a8 / w4a4 latency ratios."""
    out: dict[str, Any] = {}
    for tid, frame in tables.items():
        cols = ["latency_us", "energy_uj", "compute_us", "memory_us"]
        keys = zip(*(frame[c] for c in [*SIGNATURE_COLUMNS, "precision"]), strict=True)
        idx = dict(zip(keys, frame[cols].to_dict("records"), strict=True))
        target = TARGETS[tid]
        res: dict[str, Any] = {}
        for name in models:
            entry: dict[str, Any] = {}
            for w, a in UNIFORM:
                cls = target.kernel_class(w, a)
                lat = en = 0.0
                bound: Counter[str] = Counter()
                for _spec, key in per_model[name]:
                    row = idx[(*key, cls)]
                    lat += float(row["latency_us"])
                    en += float(row["energy_uj"])
                    bound["compute" if row["compute_us"] >= row["memory_us"] else "memory"] += 1
                entry[f"w{w}a{a}"] = {
                    "latency_ms": round(lat / 1e3, 4),
                    "energy_mj": round(en / 1e3, 4),
                    "layers_compute_bound": bound["compute"],
                    "layers_memory_bound": bound["memory"],
                }
            ratios: dict[str, list[float]] = defaultdict(list)
            for spec, key in per_model[name]:
                r8 = idx[(*key, target.kernel_class(8, 8))]["latency_us"]
                r4 = idx[(*key, target.kernel_class(4, 4))]["latency_us"]
                kind = "pointwise" if spec.kind == "conv" and spec.kernel == (1, 1) else spec.kind
                ratios[kind].append(r8 / r4)
            entry["w8a8_over_w4a4_by_kind"] = {
                k: {"mean": round(sum(v) / len(v), 3), "min": round(min(v), 3),
                    "max": round(max(v), 3), "layers": len(v)}
                for k, v in sorted(ratios.items())
            }  # fmt: skip
            res[name] = entry
        out[tid] = res
    return out


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--models", nargs="+", default=MODELS)
    ap.add_argument("--out", type=Path, default=ROOT / "hardware_profiles")
    args = ap.parse_args(argv)
    date = datetime.now(UTC).isoformat(timespec="seconds")
    argv = sys.argv[1:] if argv is None else argv
    sigs, per_model = collect_layers(args.models, args.batch)
    print(f"{len(sigs)} unique layer signatures from {len(args.models)} models")
    tables: dict[str, pd.DataFrame] = {}
    for tid in TARGETS:
        built = get_builder(tid).build(
            args.out, args.models, batch=args.batch, date=date, argv=argv
        )
        tables[tid] = built.layers
        table, yaml_file = built.files[0], built.files[-1]
        print(f"wrote {table} ({len(built.layers)} rows, {table.stat().st_size / 1024:.0f} KiB), "
              f"{yaml_file.name}")  # fmt: skip
    summary = summarize(tables, per_model, args.models)
    for tid, res in summary.items():
        for name in ("resnet18", "mobilenet_v2"):
            if name in res:
                e = res[name]
                print(
                    f"{tid:22s} {name:13s} "
                    + "  ".join(
                        f"{k} {e[k]['latency_ms']:.3f} ms" for k in ("w8a8", "w4a4", "w2a2")
                    )
                )
    payload = {"argv": args.__dict__ | {"out": str(args.out)}, "summary": summary}
    if args.out.resolve() == (ROOT / "hardware_profiles").resolve():
        save("simulate_npu", payload)
    else:  # a scratch run (tests): keep experiments/results untouched
        (args.out / "simulate_npu.json").write_text(json.dumps(payload, indent=2))


if __name__ == "__main__":
    main()
