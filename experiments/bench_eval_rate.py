"""Evaluations per minute with and without prefix reuse, on the config streams searches make.

cifar_resnet20 (../shared checkpoint), 1,000 validation images from the CIFAR-10 JPEG train
split, 256 calibration images held out of the same split, 2 threads. The candidate space is
the ``default`` space on ``npu-bitfusion-edge``. Streams:

- sensitivity: uniform w8a8, then one search variable changed to each of its other choices,
  variable by variable, as a sensitivity phase does (a seeded subset of the choices);
- local: random parents, each followed by 3 children that change 1-2 random layers;
- random: independent random configs.

Each stream runs --repeats times with the plain evaluator and with prefix reuse, alternating
which goes first, the prefix cache cleared before every run, so the rates share machine
noise. Every metric must be identical between the two paths.

    python experiments/bench_eval_rate.py [--repeats 3] [--sens 16] [--local 4] [--random 8]
"""

from __future__ import annotations

import argparse
import random
import statistics
import time
from typing import Any

import torch

from haq import BitConfig
from haq.config import Precision
from haq.evaluate import LocalEvaluator, build_setup
from haq.hardware.profile import get_target
from haq.search.space import SearchSpace

from common import require_shared, save

TARGET = "npu-bitfusion-edge"


def _config(space: SearchSpace, values: dict[str, Precision]) -> BitConfig:
    """A full config from one precision per variable (tie groups filled in)."""
    return space.config({var: str(p) for var, p in values.items()})


def sensitivity_stream(space: SearchSpace, n: int, rng: random.Random) -> list[BitConfig]:
    """w8a8 first, then single-variable changes in layer order (a seeded subset of size n)."""
    base = {var: Precision.parse("w8a8") for var, _ in space.variables()}
    changes = [(var, Precision.parse(c)) for var, opts in space.variables() for c in opts]
    changes = [(v, p) for v, p in changes if p != base[v]]
    picked = sorted(rng.sample(range(len(changes)), min(n - 1, len(changes))))
    out = [_config(space, base)]
    for i in picked:
        var, p = changes[i]
        out.append(_config(space, {**base, var: p}))
    return out


def _random_values(space: SearchSpace, rng: random.Random) -> dict[str, Precision]:
    return {var: Precision.parse(rng.choice(opts)) for var, opts in space.variables()}


def local_stream(space: SearchSpace, parents: int, rng: random.Random) -> list[BitConfig]:
    """Each random parent followed by 3 children changing 1-2 random variables of it."""
    variables = dict(space.variables())
    out = []
    for _ in range(parents):
        parent = _random_values(space, rng)
        out.append(_config(space, parent))
        for _ in range(3):
            child = dict(parent)
            for var in rng.sample(sorted(variables), rng.choice((1, 2))):
                others = [c for c in variables[var] if Precision.parse(c) != parent[var]]
                child[var] = Precision.parse(rng.choice(others))
            out.append(_config(space, child))
    return out


def random_stream(space: SearchSpace, n: int, rng: random.Random) -> list[BitConfig]:
    return [_config(space, _random_values(space, rng)) for _ in range(n)]


def _run(evaluator: LocalEvaluator, stream: list[BitConfig]) -> tuple[float, list[dict[str, Any]]]:
    runner = evaluator.prefix_runner
    if runner is not None:
        runner.clear()  # every run starts cold: repeats must not hit the previous run's cache
    start = time.perf_counter()
    results = [evaluator.evaluate(cfg) for cfg in stream]
    seconds = time.perf_counter() - start
    metrics = [r.metrics.to_dict() for r in results]
    return seconds, metrics


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--limit", type=int, default=1000)
    ap.add_argument("--calib-limit", type=int, default=256)
    ap.add_argument("--sens", type=int, default=16, help="configs in the sensitivity stream")
    ap.add_argument("--local", type=int, default=4, help="parents in the local-search stream")
    ap.add_argument("--random", type=int, default=8, help="configs in the random stream")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    shared = require_shared()
    torch.set_num_threads(2)
    train = str(shared / "data/cifar10-jpeg/train")
    setup = build_setup("cifar_resnet20", str(shared / "models/resnet20-12fca82f.th"), train,
                        limit=args.limit, calib_limit=args.calib_limit)  # fmt: skip
    q = setup.quantizer
    fast = LocalEvaluator(q, setup.data, setup.evaluator.batch_size, reuse_prefixes=True)
    plain = LocalEvaluator(q, setup.data, setup.evaluator.batch_size, reuse_prefixes=False)
    target = get_target(TARGET)
    space = SearchSpace.build(q.layers, "default", lambda k, p: target.can_run(k, p))
    rng = random.Random(args.seed)
    streams = {
        "sensitivity": sensitivity_stream(space, args.sens, rng),
        "local": local_stream(space, args.local, rng),
        "random": random_stream(space, args.random, rng),
    }
    # warm everything both paths share: reference logits, quantized weights, the fx trace
    for ev in (plain, fast):
        _ = ev.reference
    for stream in streams.values():
        for cfg in stream:
            q.apply(cfg)
    runner = fast.prefix_runner
    assert runner is not None, "prefix reuse is unavailable for cifar_resnet20"

    rows: dict[str, Any] = {}
    for name, stream in streams.items():
        times: dict[str, list[float]] = {"plain": [], "prefix": []}
        identical = True
        reused = run = 0
        for rep in range(args.repeats):
            order = [("plain", plain), ("prefix", fast)]
            if rep % 2:
                order.reverse()
            got: dict[str, list[dict[str, Any]]] = {}
            for label, ev in order:
                before = (runner.stats.segments_reused, runner.stats.segments_run)
                seconds, got[label] = _run(ev, stream)
                times[label].append(seconds)
                if label == "prefix":
                    reused += runner.stats.segments_reused - before[0]
                    run += runner.stats.segments_run - before[1]
            identical &= got["plain"] == got["prefix"]
        med = {k: statistics.median(v) for k, v in times.items()}
        rate = {k: 60.0 * len(stream) / v for k, v in med.items()}
        rows[name] = {
            "configs": len(stream),
            "seconds": times,
            "evals_per_min_plain": rate["plain"],
            "evals_per_min_prefix": rate["prefix"],
            "speedup": rate["prefix"] / rate["plain"],
            "segments_reused_fraction": reused / max(1, reused + run),
            "metrics_identical": identical,
        }
        print(f"{name:>12}: {len(stream):3d} configs  plain {rate['plain']:6.1f}/min  "
              f"prefix {rate['prefix']:6.1f}/min  x{rate['prefix'] / rate['plain']:.2f}  "
              f"reused {rows[name]['segments_reused_fraction']:.0%} of segments  "
              f"identical={identical}")  # fmt: skip
    print(f"cifar_resnet20, {len(setup.data)} images, batch {fast.batch_size}, "
          f"{torch.get_num_threads()} threads, {len(runner.segments)} segments, "
          f"cache {runner.cache_limit / 2**20:.0f} MiB")  # fmt: skip
    save("bench_eval_rate", {"model": "cifar_resnet20", "images": len(setup.data),
                             "calib_images": len(setup.calib) if setup.calib else 0,
                             "batch_size": fast.batch_size, "target": TARGET,
                             "segments": len(runner.segments),
                             "cache_mb": runner.cache_limit / 2**20,
                             "repeats": args.repeats, "streams": rows})  # fmt: skip
    if not all(r["metrics_identical"] for r in rows.values()):
        raise SystemExit("prefix reuse changed a metric")


if __name__ == "__main__":
    main()
