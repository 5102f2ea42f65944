"""End-to-end ONNX Runtime latency of fp32, all-int8 and two mixed configs, 1 and 2 threads,
all measured in this one run (ratios comparable on a noisy machine), plus achieved GOPS against
this CPU's int8 and fp32 GEMM peaks measured here with ORT's own kernels.

Mixed configs: ``half-float`` (every other conv/linear left fp32) and ``ends-float`` (first and
last layer fp32, the rest int8, the usual deployment choice). Random weights for the torchvision
models (latency does not depend on them), real checkpoints for the CIFAR ResNets if ../shared is
there. Each exported graph is checked: the layers configured fp32 must run float kernels.

    python experiments/deploy_speedup.py [--models resnet18,resnet50,...] [--runs 30]
"""

from __future__ import annotations

import argparse
import time
import warnings

import numpy as np
import torch

from haq import BitConfig
from haq.export.bench import benchmark
from haq.export.onnx_export import export_onnx
from haq.models import load_model
from haq.quant import Quantizer
from haq.runtime.ort import executed_ops, make_session

from common import SHARED, save

INT8_OPS = {"QLinearConv", "QGemm", "QLinearMatMul", "MatMulIntegerToFloat"}
CIFAR = {"cifar_resnet20": "resnet20-12fca82f.th", "cifar_resnet56": "resnet56-4bfd9763.th"}


def gemm_peaks(threads: int, n: int = 1024, runs: int = 20) -> dict[str, float]:
    """Achievable GOPS of one large square GEMM: int8 (QLinearMatMul u8 x s8) and fp32 MatMul."""
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)

    def model(op: str) -> bytes:
        if op == "fp32":
            b = numpy_helper.from_array(rng.standard_normal((n, n)).astype(np.float32), "b")
            nodes = [helper.make_node("MatMul", ["a", "b"], ["y"])]
            inits, a_type, y_type = [b], TensorProto.FLOAT, TensorProto.FLOAT
        else:
            b = numpy_helper.from_array(rng.integers(-127, 127, (n, n)).astype(np.int8), "b")
            s = [
                numpy_helper.from_array(np.array(v, np.float32), k)
                for k, v in (("sa", 0.02), ("sb", 0.01), ("sy", 0.5))
            ]
            z = [numpy_helper.from_array(np.array(128, np.uint8), "za"), numpy_helper.from_array(np.array(0, np.int8), "zb"),
                 numpy_helper.from_array(np.array(128, np.uint8), "zy")]  # fmt: skip
            nodes = [
                helper.make_node(
                    "QLinearMatMul", ["a", "sa", "za", "b", "sb", "zb", "sy", "zy"], ["y"]
                )
            ]
            inits, a_type, y_type = [b, *s, *z], TensorProto.UINT8, TensorProto.UINT8
        g = helper.make_graph(nodes, op, [helper.make_tensor_value_info("a", a_type, [n, n])],
                              [helper.make_tensor_value_info("y", y_type, [n, n])], inits)  # fmt: skip
        m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 21)])
        m.ir_version = 10
        return m.SerializeToString()

    out = {}
    for op in ("int8", "fp32"):
        sess = make_session(model(op), threads=threads)
        a = (
            rng.standard_normal((n, n)).astype(np.float32)
            if op == "fp32"
            else rng.integers(0, 255, (n, n)).astype(np.uint8)
        )
        for _ in range(3):
            sess.run(None, {"a": a})
        times = []
        for _ in range(runs):
            t = time.perf_counter()
            sess.run(None, {"a": a})
            times.append(time.perf_counter() - t)
        out[op] = 2 * n**3 / min(times) / 1e9  # best run: the achievable peak
    return out


def configs(names: list[str]) -> dict[str, BitConfig]:
    return {
        "fp32": BitConfig.uniform("fp32", names),
        "int8": BitConfig.uniform("w8a8", names),
        "half-float": BitConfig({n: "fp32" if i % 2 else "w8a8" for i, n in enumerate(names)}),
        "ends-float": BitConfig(
            {n: "fp32" if i in (0, len(names) - 1) else "w8a8" for i, n in enumerate(names)}
        ),
    }


def check_float_layers(data: bytes, config: BitConfig) -> tuple[int, int]:
    """(float layers that stayed float, float layers configured) in ORT's optimized graph."""
    ops = executed_ops(data)
    ran: dict[str, set[str]] = {}
    for row in ops.itertuples():
        if row.layer is not None:
            ran.setdefault(row.layer, set()).add(row.op_type)
    float_layers = [n for n, p in config.items() if p.is_float]
    kept = sum(1 for n in float_layers if ran.get(n) and not ran[n] & INT8_OPS)
    return kept, len(float_layers)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument(
        "--models", default="resnet18,resnet50,mobilenet_v2,cifar_resnet20,cifar_resnet56"
    )
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--runs", type=int, default=30)
    args = ap.parse_args()
    warnings.filterwarnings("ignore")
    torch.manual_seed(0)
    threads = [int(t) for t in args.threads.split(",")]
    peaks = {t: gemm_peaks(t) for t in threads}
    for t, p in peaks.items():
        print(
            f"GEMM peak, {t} thread(s): int8 {p['int8']:.0f} GOPS, fp32 {p['fp32']:.0f} GFLOPS (x{p['int8'] / p['fp32']:.2f})"
        )
    rows = []
    for name in args.models.split(","):
        weights = (
            str(SHARED / "models" / CIFAR[name])
            if name in CIFAR and (SHARED / "models").is_dir()
            else "none"
        )
        loaded = load_model(name, weights)
        calib = torch.randn(16, *loaded.preprocess.input_size)
        q = Quantizer(loaded.model, loaded.example_input(), calibration_images=calib)
        macs = sum(s.macs for s in q.layers)
        exported = {}
        for label, cfg in configs(q.layer_names).items():
            data, _ = export_onnx(q, cfg)
            kept, n_float = check_float_layers(data, cfg)
            exported[label] = (data, kept, n_float)
        for t in threads:  # all configs of one model and thread count back to back
            base = None
            for label, (data, kept, n_float) in exported.items():
                r = benchmark(
                    data, threads=t, runs=args.runs, warmup=5, profile=False, busy_check_s=0.2
                )
                base = base or r.median_ms
                gops = 2 * macs / (r.median_ms / 1e3) / 1e9
                peak = peaks[t]["fp32" if label == "fp32" else "int8"]
                row = {"model": name, "threads": t, "config": label, "median_ms": round(r.median_ms, 3),
                       "p10_ms": round(r.p10_ms, 3), "p90_ms": round(r.p90_ms, 3), "speedup": round(base / r.median_ms, 2),
                       "gops": round(gops, 1), "peak_share": round(gops / peak, 3), "float_layers_kept": f"{kept}/{n_float}",
                       "busy": r.busy_warning is not None}  # fmt: skip
                rows.append(row)
                print(f"{name:>15} {t}t {label:>10}: {r.median_ms:8.2f} ms  x{row['speedup']:.2f}  {gops:6.1f} GOPS "
                      f"({100 * row['peak_share']:.0f}% of {'fp32' if label == 'fp32' else 'int8'} peak)  "
                      f"float layers kept {kept}/{n_float}{'  [busy]' if row['busy'] else ''}", flush=True)  # fmt: skip
    save("deploy_speedup", {"peaks": {str(t): p for t, p in peaks.items()}, "rows": rows})


if __name__ == "__main__":
    main()
