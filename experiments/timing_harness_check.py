"""Do the profile's and the measurement's timing harnesses agree on one config?

`haq profile` (and `--profile auto`) times each job as one session alone: the median of
consecutive runs (`haq.hardware.ort.observation.time_wall`). `haq measure` and
`cost_model_validation.py` time many sessions in interleaved rounds and keep the fastest
round's median (`haq.runtime.timing.time_interleaved`). Here each model's uniform fp32 and
int8 configs are timed both ways back to back, the interleaved way beside ``--configs``
random mixed configs exactly as the validation does, ``--repeats`` times: if the ratio stays
near 1, a systematic gap between a profile and a validation run minutes apart is the
machine's state, not the harness.

    python experiments/timing_harness_check.py [--models mobilenet_v3_small,shufflenet_v2_x1_0]
        [--configs 10] [--repeats 2] [--out timing_harness_check]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
import warnings

from cost_model_validation import quantizer, random_configs

from haq.export.onnx_export import export_onnx, reuse_float_graph
from haq.hardware.ort.observation import time_wall
from haq.hardware.ort.target import class_config
from haq.runtime.machine import machine_info
from haq.runtime.ort import make_session, random_feeds, runtime_info
from haq.runtime.timing import latency_stats, time_interleaved

from common import save

REFERENCES = ("fp32", "int8")


def check_model(name: str, index: int, args: argparse.Namespace) -> list[dict[str, object]]:
    """Per repeat and reference class: alone (ms), interleaved (ms) and their ratio."""
    q = quantizer(name)
    n = len(q.layer_names)
    configs = random_configs(n, args.configs, args.seed + index) + [[c] * n for c in REFERENCES]
    datas = [export_onnx(q, class_config(q.layer_names, k))[0] for k in configs]
    sessions = [make_session(d, threads=args.threads) for d in datas]
    feeds = random_feeds(sessions[0], 1)
    for sess in sessions:
        for _ in range(3):
            sess.run(None, feeds)
    out = []
    for rep in range(args.repeats):
        alone = {c: time_wall(d, args.threads, 1, args.runs, 10)["median_us"] / 1e3
                 for c, d in zip(REFERENCES, datas[-2:], strict=True)}  # fmt: skip
        times = time_interleaved(sessions, feeds, args.rounds, args.runs_per_round, args.seed + rep)
        for c, per_round in zip(REFERENCES, times[-2:], strict=True):
            inter = latency_stats(per_round).best_round_median_ms
            out.append({"model": name, "repeat": rep, "pattern": c,
                        "alone_ms": round(alone[c], 4), "interleaved_ms": round(inter, 4),
                        "ratio": round(inter / alone[c], 4)})  # fmt: skip
            print(f"{name:>20} #{rep} {c:>5}: alone {alone[c]:.3f} ms  interleaved with "
                  f"{len(sessions)} sessions {inter:.3f} ms  ratio {inter / alone[c]:.3f}", flush=True)  # fmt: skip
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--models", default="mobilenet_v3_small,shufflenet_v2_x1_0")
    ap.add_argument("--configs", type=int, default=10)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--runs", type=int, default=200, help="runs of the alone timing")
    ap.add_argument("--rounds", type=int, default=12)
    ap.add_argument("--runs-per-round", type=int, default=6)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default="timing_harness_check")
    args = ap.parse_args()
    warnings.filterwarnings("ignore")
    t0 = time.time()
    rows = []
    with reuse_float_graph():
        for i, name in enumerate(args.models.split(",")):
            rows += check_model(name, i, args)
    ratios = [r["ratio"] for r in rows]
    save(args.out, {
        "rows": rows,
        "ratio_median": round(statistics.median(ratios), 4),
        "ratio_range": [min(ratios), max(ratios)],
        "seconds": round(time.time() - t0, 1),
        "cpu": {**machine_info(), "runtime": runtime_info()},
        "measured_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "argv": sys.argv[1:],
    })  # fmt: skip
    print(f"interleaved / alone: median {statistics.median(ratios):.3f}, "
          f"range {min(ratios):.3f}-{max(ratios):.3f}")  # fmt: skip


if __name__ == "__main__":
    main()
