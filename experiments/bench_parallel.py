"""Evaluation rate of the Ray pool: 1 worker against N workers, start-up reported apart.

cifar_resnet20 on a --limit image subset of ../shared/data/cifar10-jpeg/train (calibration
images held out of it), or digits_cnn when ../shared is absent. The same --configs random mixed
configs go through the in-process SerialExecutor (all threads), a 1-worker Ray pool and a
--workers pool (1 torch thread per worker in both pools, so the ratio measures process
parallelism). Rates exclude actor start-up (model load, data decode, calibration), which is
reported separately; metrics must match across executors.

    python experiments/bench_parallel.py [--configs 16] [--limit 2000] [--workers 2]
"""

from __future__ import annotations

import argparse
import os
import random
import time
from dataclasses import replace
from typing import Any

import torch

from haq import BitConfig
from haq.evaluate import EvalResult
from haq.evaluate.pool import EvalSpec, Executor, RayExecutor, SerialExecutor

from common import SHARED, save

CHOICES = ["w8a8", "w6a6", "w4a8", "w6a8", "w4a32", "w8a32", "fp32"]


def _spec(args: argparse.Namespace) -> EvalSpec:
    ckpt = SHARED / "models" / "resnet20-12fca82f.th"
    train = SHARED / "data" / "cifar10-jpeg" / "train"
    if ckpt.is_file() and train.is_dir():
        return EvalSpec("cifar_resnet20", str(ckpt), str(train), str(train), limit=args.limit,
                        calib_limit=args.calib_limit, seed=args.seed)  # fmt: skip
    print(f"../shared not found at {SHARED}: falling back to digits_cnn")
    return EvalSpec("digits_cnn", data="digits", calib_data="digits:train",
                    calib_limit=min(args.calib_limit, 256), seed=args.seed)  # fmt: skip


def _run(ex: Executor, configs: list[BitConfig]) -> tuple[float, dict[int, Any]]:
    """Keep the executor full (as a search loop does); wall seconds until all are back."""
    out: dict[int, Any] = {}
    t0 = time.perf_counter()
    nxt = 0
    while nxt < len(configs) or ex.pending():
        while nxt < len(configs) and ex.pending() < ex.capacity():
            ex.submit(nxt, configs[nxt])
            nxt += 1
        tid, res = ex.next_result()
        out[tid] = res
    return time.perf_counter() - t0, out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--configs", type=int, default=16)
    ap.add_argument("--limit", type=int, default=2000)
    ap.add_argument("--calib-limit", type=int, default=256)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--no-serial", action="store_true", help="skip the in-process baseline")
    args = ap.parse_args()
    spec = _spec(args)

    rows: dict[str, dict[str, Any]] = {}
    metrics: dict[str, list[Any]] = {}
    configs: list[BitConfig] = []

    def record(
        name: str, startup: float, seconds: float, out: dict[int, Any], **extra: Any
    ) -> None:
        ok = [r for r in out.values() if isinstance(r, EvalResult)]
        rate = 60.0 * len(configs) / seconds
        rows[name] = {"startup_s": round(startup, 3), "seconds": round(seconds, 3),
                      "evals_per_min": round(rate, 2), "ok": len(ok), **extra}  # fmt: skip
        metrics[name] = [out[i].metrics.to_dict() if isinstance(out[i], EvalResult) else out[i].error
                        for i in range(len(configs))]  # fmt: skip
        print(f"{name:>24}: start-up {startup:6.2f} s  {len(configs)} evals {seconds:6.2f} s  "
              f"{rate:6.1f} evals/min")  # fmt: skip

    t0 = time.perf_counter()
    serial = SerialExecutor(spec)
    serial_startup = time.perf_counter() - t0
    names = serial.evaluator.quantizer.layer_names
    rng = random.Random(args.seed)
    configs = [BitConfig({n: rng.choice(CHOICES) for n in names}) for _ in range(args.configs)]
    n_images = serial.evaluator.data.x.shape[0]
    print(f"{spec.model}: {len(names)} layers, {n_images} evaluation images, "
          f"{len(configs)} configs, {os.cpu_count()} CPUs")  # fmt: skip
    if not args.no_serial:
        secs, out = _run(serial, configs)
        record("serial (in-process)", serial_startup, secs, out, threads=torch.get_num_threads())
    serial.close()
    del serial

    for workers in sorted({1, args.workers}):
        t0 = time.perf_counter()
        pool_spec = replace(spec, threads_per_worker=1)
        with RayExecutor(pool_spec, workers=workers) as ex:
            startup = time.perf_counter() - t0  # ray.init + actors ready (load, decode, calibrate)
            secs, out = _run(ex, configs)
            record(f"ray {workers} worker(s) x 1 thread", startup, secs, out, workers=workers,
                   actor_startup_s=round(ex.startup_seconds, 3))  # fmt: skip

    pools = [m for name, m in metrics.items() if name.startswith("ray")]
    identical = all(m == pools[0] for m in pools)
    serial_same = "serial (in-process)" not in metrics or metrics["serial (in-process)"] == pools[0]
    one = rows["ray 1 worker(s) x 1 thread"]["evals_per_min"]
    many = rows[f"ray {args.workers} worker(s) x 1 thread"]["evals_per_min"]
    ratio = many / one
    print(f"metrics identical across Ray pools: {identical}; same as in-process: {serial_same}")
    print(f"speed-up {args.workers} workers / 1 worker: x{ratio:.2f} (goal >= 1.7 with 2 workers)")
    if "serial (in-process)" in rows:
        vs = many / rows["serial (in-process)"]["evals_per_min"]
        print(f"speed-up {args.workers} workers / serial in-process: x{vs:.2f}")
    load = os.getloadavg()
    print(f"load average at the end: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
    save("bench_parallel", {"model": spec.model, "images": int(n_images), "layers": len(names),
                            "configs": len(configs), "rows": rows, "speedup": round(ratio, 3),
                            "metrics_identical": identical, "serial_identical": serial_same,
                            "loadavg_end": [round(x, 2) for x in load]})  # fmt: skip


if __name__ == "__main__":
    main()
