"""Measured latency tables for the ``cpu-avx512`` target: ONNX Runtime's CPU provider, in-graph.

Every number comes from whole models as ORT runs them (fusions, layouts and all), never from
one-layer models: each *job* exports one config of one model, times it with the profiler off
(wall-clock median: the total) and once more with the profiler on (attribution only).

Kernel classes (what a (w, a) pair really runs as; `RULES` maps precisions onto them):

=================  ==================================================================
``fp32``           float Conv (NCHWc) / Gemm
``int8``           QLinearConv / QGemm, uint8 activations x int8 weights (w <= 8, a <= 8)
``int8-weights``   int8 weights dequantized on every run, then the float op
``qdq16``          16-bit activations: DequantizeLinear -> float op (+ weight dequantize)
``matmulnbitsN``   Linear weight-only, block-wise N = 2, 4, 8 bits (MatMulNBits, block 32)
=================  ==================================================================

The latency model the tables implement, for a config giving layer ``l`` kernel class ``k_l``
(layers in execution order ``0..n-1``; `haq.cost.LookupCostModel` computes the sums, the third
only for a model the target profiled)::

    latency = sum_l  L[signature_l, k_l]                                      (layers.csv)
            + sum_{j: k_{j-1} != k_j}  T[k_{j-1} -> k_j, channels_j, h_j, w_j]  (transitions.csv)
            + sum_{j=0..n}  G[model, j, k_{j-1}, k_j]                          (glue.csv)

Boundary ``j`` is the gap in front of layer ``j`` in execution order; its tensor is the input
of layer ``j`` (`boundary_keys`; ``j = 0`` is the model input, ``j = n`` the output).

Attribution of one profiled run (every executed node lands in exactly one bucket):

- a layer's nodes (`haq.export.bench.LayerMap`: the Conv/Gemm with what ORT fused into it) and
  the nodes that only process its constant weights on every run (the weight DequantizeLinear
  of ``int8-weights`` / ``qdq16``) -> the layer's *kernel time*;
- every other node (Quantize/Dequantize, Transpose, NCHWc Reorder, and the model ops Add, ReLU,
  pooling, reshape) -> the boundary in front of the first layer (execution order) it feeds;
  nodes that feed no layer -> the output boundary. Model ops are boundary costs, not a fixed
  per-model term, because whether they run at all depends on the neighbouring kernels: an
  fp32 NCHWc conv absorbs the residual Add and ReLU, next to an int8 conv they run on their own.

All node times of a run are scaled by ``wall median / profiled total`` (the profiler's own
overhead, up to 2.5x on tiny models, and drift between the two sessions), so the buckets of a
measured config sum to its wall time (``scale`` column; `aggregate(scaled=False)` gives the
unscaled variant).

Layer rows (``latency_us``) = kernel time + the boundary in front of the layer when its
predecessor has the same class (``entry_us``: what ORT runs around a layer among its own kind,
from the uniform config; the model input for layer 0) + the output boundary for the last
layer (``exit_us``). So a uniform config is the plain sum of its layer rows, and same-class
boundaries need no transition rows (as `haq.hardware.tables` documents transitions: the extra
time of a boundary whose classes differ).

Transition rows come from *alternating* configs (even layers ``a``, odd layers ``b``, and the
reverse), which hold every boundary position in both directions: boundary time + the change of
the layer's own kernel time against the uniform config (``delta_us``: a layer runs slower right
after a precision change, e.g. int8 convs +5-17% on ResNet-18) - the ``entry_us`` its layer row
already charges; the mean over all observed boundaries with the key (``n``, ``models``),
floored at 0 (``raw_us`` keeps the mean).

Glue (glue.csv, per model): what the shared, shape-keyed tables cannot know about one
model's graph, per boundary position ``j`` and class pair ``(k_{j-1}, k_j)`` (the
"kernel-class pattern" at that boundary): measured (layer ``j`` kernel time + boundary ``j``)
minus what the shared tables charge there, from the uniform (same-class pairs) and
alternating (different-class pairs) configs; ``j = n`` holds the output boundary. It carries
e.g. ORT's uint8 MaxPool in NCHW when an fp32 stem conv feeds an int8 conv (+4 ms on
ResNet-18: the shape-keyed ``fp32 -> int8`` row averages it over every 64x56x56 boundary),
rows measured in another model (the first model to measure a signature wins, with the mean of
its same-signature layers), and transition rows floored at 0. Summed along a config (by
`haq.cost.LookupCostModel`, which recognises a profiled model by ``layer_map.csv``), a uniform
config of a profiled model comes out at its measured wall time (alternating ones too, but for
their input and output positions, taken from the uniform configs); a pair never observed at a
position adds 0; unprofiled models have no glue and get the shared tables alone.

Raw observations (one JSON line per job) are kept in ``observations.jsonl.gz``; the tables are
re-derived from them after every job, so a killed run resumes where it stopped (a job whose
observation exists is never re-measured) and merging never duplicates rows.
"""

from __future__ import annotations

import contextlib
import gzip
import io
import json
import math
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

from haq.errors import HaqError
from haq.hardware.profile import KernelRule
from haq.hardware.tables import COLUMNS, INPUT, OUTPUT, SHAPE_COLUMNS, SIGNATURE_COLUMNS, signature
from haq.io import atomic_write_bytes, atomic_write_text

if TYPE_CHECKING:
    import onnx
    import pandas as pd

    from haq.models.layers import LayerSpec
    from haq.quant import Quantizer

# --------------------------------------------------------------------------- the target

TARGET = "cpu-avx512"
#: ``haq profile`` targets measured by this harness.
TARGETS = (TARGET,)
#: Kernel classes whose uniform configs (and alternating pairs) are measured.
PAIR_CLASSES = ("fp32", "int8", "int8-weights", "qdq16")
MATMULNBITS_CLASSES = ("matmulnbits2", "matmulnbits4", "matmulnbits8")
KERNEL_CLASSES = PAIR_CLASSES + MATMULNBITS_CLASSES
#: The precision each class is measured with (``matmulnbits*`` under group-wise settings).
CLASS_PRECISION = {
    "fp32": "fp32",
    "int8": "w8a8",
    "int8-weights": "w8a32",
    "qdq16": "w8a16",
    "matmulnbits2": "w2a32",
    "matmulnbits4": "w4a32",
    "matmulnbits8": "w8a32",
}
GROUP_SIZE = 32  # MatMulNBits block size measured
#: What really executes each class (for the profile YAML).
KERNEL_DESCRIPTIONS = {
    "fp32": "float Conv (NCHWc layout, bias/ReLU/residual Add fused) or Gemm",
    "int8": "QLinearConv / QGemm: uint8 activations x int8 per-channel weights (VNNI)",
    "int8-weights": "int8 weights DequantizeLinear on every run + float Conv/Gemm (no NCHWc)",
    "qdq16": "uint16 activation Q/DQ + int8 weight dequantize + float op",
    "matmulnbits2": "com.microsoft.MatMulNBits, 2-bit blocks of 32, accuracy_level 4",
    "matmulnbits4": "com.microsoft.MatMulNBits, 4-bit blocks of 32, accuracy_level 4",
    "matmulnbits8": "com.microsoft.MatMulNBits, 8-bit blocks of 32, accuracy_level 4",
}
_ALL = ("conv", "dwconv", "gconv", "linear")
#: (op kind, w bits, a bits, weight granularity) -> kernel class; the first match wins.
RULES: tuple[KernelRule, ...] = (
    KernelRule(_ALL, None, None, "fp32"),
    KernelRule(("linear",), (2, 2), None, "matmulnbits2", "group"),
    KernelRule(("linear",), (4, 4), None, "matmulnbits4", "group"),
    KernelRule(("linear",), (8, 8), None, "matmulnbits8", "group"),
    # other group-wise cases export fake-quantized float weights: a float kernel
    KernelRule(_ALL, (2, 16), None, "fp32", "group"),
    KernelRule(_ALL, (2, 16), (2, 16), "qdq16", "group"),
    KernelRule(_ALL, (2, 8), (2, 8), "int8"),  # W6A8, W4A4, ...: the int8 kernel, no faster
    KernelRule(_ALL, (2, 8), (9, 16), "qdq16"),
    KernelRule(_ALL, (2, 8), None, "int8-weights"),  # W4 conv: dequantize fallback
    KernelRule(_ALL, (9, 16), None, "fp32"),
    KernelRule(_ALL, (9, 16), (2, 16), "qdq16"),
    KernelRule(_ALL, None, (2, 16), "qdq16"),
)
#: Where a transition key has no row, look it up with these classes substituted (both consume
#: and produce float tensors at a boundary).
TRANSITION_FALLBACK = dict.fromkeys(MATMULNBITS_CLASSES, "fp32")

TRANSITION_KEY = ["from_kernel", "to_kernel", "channels", "h", "w", "batch", "threads"]
LAYER_KEY = SIGNATURE_COLUMNS + ["precision", "threads"]
GLUE_KEY = ["model", "threads", "batch", "index", "from_kernel", "to_kernel"]
OBSERVATIONS = "observations.jsonl.gz"
#: Sub-folder of a target's tables with the probe networks' tables (learned-model training rows).
PROBES_DIR = "probes"


def kernel_class(
    kind: str, w_bits: int | None, a_bits: int | None, granularity: str = "channel"
) -> str:
    """The class `RULES` gives a layer of ``kind`` at (w_bits, a_bits)."""

    def inside(bits: int | None, span: tuple[int, int] | None) -> bool:
        return bits is None if span is None else bits is not None and span[0] <= bits <= span[1]

    for rule in RULES:
        if (
            kind in rule.ops
            and inside(w_bits, rule.w)
            and inside(a_bits, rule.a)
            and rule.granularity in (None, granularity)
        ):
            return rule.kernel
    raise HaqError(f"no {TARGET} kernel for {kind} at w{w_bits}a{a_bits} ({granularity})")


def applicable(kind: str, cls: str) -> bool:
    """Whether a layer of ``kind`` can run kernel class ``cls`` (MatMulNBits: Linear only)."""
    return kind == "linear" or cls not in MATMULNBITS_CLASSES


# --------------------------------------------------------------------------- boundaries


@dataclass(frozen=True)
class Boundary:
    """Gap ``index`` (0 = model input, n = model output) and the tensor crossing it."""

    index: int
    channels: int
    h: int
    w: int


def boundaries(specs: Sequence[LayerSpec]) -> list[Boundary]:
    """The n + 1 boundaries of a layer table in execution order (see the module docstring)."""
    out = [Boundary(j, s.in_channels, s.in_hw[0], s.in_hw[1]) for j, s in enumerate(specs)]
    last = specs[-1]
    out.append(Boundary(len(specs), last.out_channels, last.out_hw[0], last.out_hw[1]))
    return out


def boundary_keys(
    specs: Sequence[LayerSpec], kernels: Sequence[str], batch: int = 1, threads: int = 1
) -> list[tuple[Any, ...]]:
    """Transition-table keys (`TRANSITION_KEY` order) of a config's n + 1 boundaries."""
    chain = [INPUT, *kernels, OUTPUT]
    return [
        (chain[b.index], chain[b.index + 1], b.channels, b.h, b.w, batch, threads)
        for b in boundaries(specs)
    ]


# --------------------------------------------------------------------------- machine


def machine_info() -> dict[str, Any]:
    """CPU model, family/model, the flags that decide int8 speed, cores, load, runtime."""
    info: dict[str, Any] = {"cpus": os.cpu_count(), "platform": platform.platform()}
    flags: set[str] = set()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                key, _, value = line.partition(":")
                key, value = key.strip(), value.strip()
                if key == "model name":
                    info.setdefault("cpu", value)
                elif key == "cpu family":
                    info.setdefault("family", int(value))
                elif key == "model":
                    info.setdefault("model", int(value))
                elif key == "flags" and not flags:
                    flags = set(value.split())
    except OSError:
        info["cpu"] = platform.processor() or platform.machine()
    wanted = ("avx2", "avx512f", "avx512bw", "avx512_vnni", "avx512_bf16", "avx_vnni",
              "amx_tile", "amx_int8", "amx_bf16")  # fmt: skip
    info["flags"] = [f for f in wanted if f in flags]
    info["loadavg"] = [round(x, 2) for x in os.getloadavg()] if hasattr(os, "getloadavg") else None
    try:
        import onnxruntime as ort

        info["runtime"] = {"name": "onnxruntime", "version": ort.__version__,
                           "provider": "CPUExecutionProvider"}  # fmt: skip
    except ImportError:  # pragma: no cover - a dependency
        info["runtime"] = None
    return info


# --------------------------------------------------------------------------- export


@contextlib.contextmanager
def reuse_float_graph() -> Iterator[None]:
    """Export each model's float graph once while inside (torch.onnx.export dominates every
    `export_onnx` call: 2-8 s of ~0.3 s). Copies are handed out: the exporter edits them."""
    from haq.export import onnx_export

    original = onnx_export.export_float_graph
    cache: dict[tuple[int, tuple[int, ...]], Any] = {}

    def cached(model: Any, example: Any) -> Any:
        import onnx

        key = (id(model), tuple(example.shape))
        if key not in cache:
            cache[key] = (model, original(model, example))  # keep model alive: ids stay unique
        out = onnx.ModelProto()
        out.CopyFrom(cache[key][1])
        return out

    onnx_export.export_float_graph = cached
    try:
        yield
    finally:
        onnx_export.export_float_graph = original


def class_config(names: Sequence[str], kernels: Sequence[str]) -> Any:
    """The BitConfig that exports each layer as its kernel class."""
    from haq.config import BitConfig

    return BitConfig({n: CLASS_PRECISION[k] for n, k in zip(names, kernels, strict=True)})


# --------------------------------------------------------------------------- profiling


@dataclass
class NodeTimes:
    """Per-run kernel µs of every executed node of one profiled session."""

    runs: int
    times: dict[str, list[float]]  # node -> µs per run
    ops: dict[str, str]  # node -> op type (domain-tagged for NCHWc)
    optimized: Any  # onnx GraphProto ORT ran


def profile_nodes(data: bytes, threads: int, warmup: int, runs: int) -> NodeTimes:
    """Run ``data`` ``warmup + runs`` times with ORT's profiler; per-node µs of the last runs."""

    import onnx

    from haq.export.bench import _source, make_session, per_run_node_times

    src, _ = _source(data)
    with tempfile.TemporaryDirectory(prefix="haq-profile-") as tmp:
        opt = Path(tmp) / "optimized.onnx"
        sess = make_session(src, threads=threads, profile=True, optimized_model_path=opt,
                            profile_prefix=str(Path(tmp) / "profile"))  # fmt: skip
        feeds = {
            i.name: _input_like(i.shape, i.type) for i in sess.get_inputs()
        }  # values do not change the kernel time
        for _ in range(warmup + runs):
            sess.run(None, feeds)
        with open(sess.end_profiling()) as f:
            events = json.load(f)
        graph = onnx.load(str(opt), load_external_data=False).graph
    n_runs, times, info = per_run_node_times(events, runs)
    domains = {n.name: n.domain for n in graph.node}
    ops = {
        node: f"{meta['op_type'] or '?'}[nchwc]"
        if domains.get(node, "").endswith("nchwc")
        else (meta["op_type"] or "?")
        for node, meta in info.items()
    }
    return NodeTimes(n_runs, times, ops, graph)


def _input_like(shape: Sequence[Any], ort_type: str) -> Any:
    import numpy as np

    dims = [d if isinstance(d, int) and d > 0 else 1 for d in shape]
    dtype = np.float32 if ort_type == "tensor(float)" else np.int64
    return np.random.default_rng(0).standard_normal(dims).astype(dtype)


class Attributor:
    """Assigns every executed node to a layer index or a boundary index (module docstring)."""

    def __init__(self, exported: onnx.ModelProto, optimized: Any, names: Sequence[str]) -> None:
        from haq.export.bench import LayerMap

        self.n = len(names)
        self.index = {n: i for i, n in enumerate(names)}
        self.layer_map = LayerMap(exported)
        self.nodes = {n.name: n for n in optimized.node}
        consts = {t.name for t in optimized.initializer}
        changed = True
        while changed:  # constant tensors: initializers and what only they feed
            changed = False
            for n in optimized.node:
                ins = [i for i in n.input if i]
                if ins and all(i in consts for i in ins) and not all(o in consts for o in n.output):
                    consts.update(o for o in n.output if o)
                    changed = True
        self.consts = consts
        self.consumers: dict[str, list[Any]] = {}
        for n in optimized.node:
            for i in n.input:
                if i:
                    self.consumers.setdefault(i, []).append(n)
        self.layer_of: dict[str, int] = {}
        for n in optimized.node:
            m = self.layer_map.match(n.name, n.op_type, list(n.input), list(n.output))
            if m.layer is not None and m.layer in self.index:
                self.layer_of[n.name] = self.index[m.layer]
        self._memo: dict[str, int | None] = {}

    def _first_layer(self, tensor: str, depth: int = 0) -> int | None:
        """Smallest layer index reached downstream of ``tensor`` (through non-layer nodes)."""
        if tensor in self._memo:
            return self._memo[tensor]
        best: int | None = None
        if depth < 200:
            for c in self.consumers.get(tensor, []):
                if c.name in self.layer_of:
                    cand: int | None = self.layer_of[c.name]
                else:
                    found = [self._first_layer(o, depth + 1) for o in c.output if o]
                    cand = min((f for f in found if f is not None), default=None)
                if cand is not None and (best is None or cand < best):
                    best = cand
        self._memo[tensor] = best
        return best

    def assign(self, node: str) -> tuple[str, int] | None:
        """``("layer", i)``, ``("boundary", j)``, or None (not in the optimized graph)."""
        if node in self.layer_of:
            return "layer", self.layer_of[node]
        proto = self.nodes.get(node)
        if proto is None:
            return None
        downstream = [self._first_layer(o) for o in proto.output if o]
        first = min((d for d in downstream if d is not None), default=None)
        ins = [i for i in proto.input if i]
        if ins and all(i in self.consts for i in ins) and first is not None:
            return "layer", first  # per-run weight processing (dequantize) of that layer
        return "boundary", self.n if first is None else first


def _stats(values: Sequence[float]) -> tuple[float, float, float]:
    """(median, p10, p90) with linear interpolation."""
    xs = sorted(values)
    if not xs:
        return 0.0, 0.0, 0.0

    def q(p: float) -> float:
        pos = (len(xs) - 1) * p
        lo = math.floor(pos)
        hi = min(lo + 1, len(xs) - 1)
        return xs[lo] + (xs[hi] - xs[lo]) * (pos - lo)

    return statistics.median(xs), q(0.1), q(0.9)


@dataclass(frozen=True)
class JobSpec:
    """One config of one model at one thread count."""

    model: str
    config: str  # "uniform:int8", "alt:fp32/int8", "fp32+matmulnbits4"
    kernels: tuple[str, ...]
    threads: int
    batch: int = 1

    @property
    def key(self) -> tuple[str, int, int, str]:
        return (self.model, self.threads, self.batch, self.config)


def time_wall(data: bytes, threads: int, batch: int, runs: int, warmup: int) -> dict[str, Any]:
    """Median wall time of ``runs`` runs (profiler off) after ``warmup``, with the load."""
    from haq.export.bench import benchmark

    with contextlib.redirect_stderr(io.StringIO()):  # its busy warning: kept in the record
        r = benchmark(data, threads=threads, batch=batch, runs=runs, warmup=warmup,
                      profile=False, busy_check_s=0.1)  # fmt: skip
    return {
        "median_us": round(r.median_ms * 1e3, 2),
        "p10_us": round(r.p10_ms * 1e3, 2),
        "p90_us": round(r.p90_ms * 1e3, 2),
        "others_cpu": r.others_cpu_during,
        "busy": r.busy_warning is not None,
        "ort_version": r.ort_version,
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
    }


def add_wall(ob: dict[str, Any], wall: dict[str, Any]) -> None:
    """Record another wall timing of a job; its wall time is the fastest median (other
    processes only ever slow a run down) and the node-time scale follows it."""
    ob["walls"].append(wall)
    best = min(ob["walls"], key=lambda w: w["median_us"])
    ob["wall_us"], ob["wall_p10_us"], ob["wall_p90_us"] = (
        best["median_us"], best["p10_us"], best["p90_us"])  # fmt: skip
    ob["busy"] = best["busy"]
    ob["scale"] = round(ob["wall_us"] / (ob["profiled_total_us"] or 1.0), 5)


def measure_job(
    job: JobSpec,
    data: bytes,
    specs: Sequence[LayerSpec],
    *,
    runs: int,
    profile_runs: int,
    warmup: int,
) -> dict[str, Any]:
    """Time and attribute one exported config; the observation record (JSON-able)."""
    import onnx

    load_before = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    t0 = time.time()
    wall = time_wall(data, job.threads, job.batch, runs, warmup)
    prof = profile_nodes(data, job.threads, warmup=min(warmup, 5), runs=profile_runs)
    attr = Attributor(onnx.load_model_from_string(data), prof.optimized, [s.name for s in specs])
    layer_runs: dict[int, list[float]] = {}
    bound_runs: dict[int, list[float]] = {}
    layer_ops: dict[int, list[str]] = {}
    bound_ops: dict[int, list[str]] = {}
    unmatched = [0.0] * prof.runs
    for node, per_run in prof.times.items():
        where = attr.assign(node)
        if where is None:
            unmatched = [a + b for a, b in zip(unmatched, per_run, strict=True)]
            continue
        runs_map, ops_map = (
            (layer_runs, layer_ops) if where[0] == "layer" else (bound_runs, bound_ops)
        )
        acc = runs_map.setdefault(where[1], [0.0] * prof.runs)
        runs_map[where[1]] = [a + b for a, b in zip(acc, per_run, strict=True)]
        ops_map.setdefault(where[1], []).append(prof.ops[node])
    # scale so the buckets' medians (and the unmatched rest) sum to the wall median
    total = (
        sum(_stats(v)[0] for v in (*layer_runs.values(), *bound_runs.values()))
        + _stats(unmatched)[0]
    ) or 1.0
    wall_us = wall["median_us"]
    layers = []
    for i, s in enumerate(specs):
        med, p10, p90 = _stats(layer_runs.get(i, []))
        layers.append([i, s.name, job.kernels[i], round(med, 2), round(p10, 2), round(p90, 2),
                       "+".join(dict.fromkeys(layer_ops.get(i, [])))])  # fmt: skip
    bounds = []
    for b in boundaries(specs):
        med, p10, p90 = _stats(bound_runs.get(b.index, []))
        bounds.append([b.index, round(med, 2), round(p10, 2), round(p90, 2),
                       "+".join(bound_ops.get(b.index, []))])  # fmt: skip
    return {
        "model": job.model,
        "threads": job.threads,
        "layers_without_nodes": [s.name for i, s in enumerate(specs) if i not in layer_runs],
        "batch": job.batch,
        "config": job.config,
        "kernels": list(job.kernels),
        "specs": [_spec_row(s) for s in specs],
        "wall_us": round(wall_us, 2),
        "wall_p10_us": wall["p10_us"],
        "wall_p90_us": wall["p90_us"],
        "walls": [wall],
        "runs": runs,
        "profile_runs": prof.runs,
        "profiled_total_us": round(total, 2),
        "scale": round(wall_us / total, 5),
        "unmatched_us": round(_stats(unmatched)[0], 2),
        "layers": layers,  # [index, name, class, median, p10, p90, ops] (unscaled µs)
        "boundaries": bounds,  # [index, median, p10, p90, ops] (unscaled µs)
        "others_cpu": wall["others_cpu"],
        "busy": wall["busy"],
        "loadavg_before": None if load_before is None else round(load_before, 2),
        "seconds": round(time.time() - t0, 2),
        "ort_version": wall["ort_version"],
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
    }


def _spec_row(s: LayerSpec) -> list[Any]:
    return [s.kind, s.in_channels, s.out_channels, *s.kernel, *s.stride, s.groups, *s.in_hw,
            *s.out_hw, s.macs, s.params, s.act]  # fmt: skip


def _spec_signature(row: Sequence[Any], batch: int) -> dict[str, Any]:
    return dict(zip(SIGNATURE_COLUMNS, [*row[:12], batch], strict=True))


# --------------------------------------------------------------------------- aggregation


@dataclass
class Tables:
    layers: pd.DataFrame
    transitions: pd.DataFrame
    glue: pd.DataFrame


def _uniform_class(config: str) -> str | None:
    return config.removeprefix("uniform:") if config.startswith("uniform:") else None


def _is_mnb(config: str) -> bool:
    """MatMulNBits configs (``fp32+matmulnbits4``): only their Linear layers are new."""
    return "+matmulnbits" in config


def aggregate(
    observations: Sequence[dict[str, Any]],
    *,
    scaled: bool = True,
    with_delta: bool = True,
    wall_stat: str = "median",
) -> Tables:
    """Derive the three tables from raw observations (see the module docstring).

    Variants for validation: ``scaled=False`` keeps the profiler's node times as measured;
    ``with_delta=False`` leaves the in-context kernel-time change out of transition rows;
    ``wall_stat="p10"`` scales to the fastest 10th-percentile wall time instead of the fastest
    median (less sensitive to other processes on a shared machine).
    """
    if wall_stat not in ("median", "p10"):
        raise HaqError(f"wall_stat must be 'median' or 'p10', not {wall_stat!r}")

    def scale_of(ob: dict[str, Any]) -> float:
        if not scaled:
            return 1.0
        if wall_stat == "median":
            return float(ob["scale"])
        return min(w["p10_us"] for w in ob["walls"]) / (ob["profiled_total_us"] or 1.0)

    import pandas as pd

    # In-graph kernel time of each layer in the uniform config of its class (Δ reference).
    ref: dict[tuple[Any, ...], float] = {}
    for ob in observations:
        if _uniform_class(ob["config"]) is not None:
            s = scale_of(ob)
            for idx, _, k, med, *_ in ob["layers"]:
                ref[(ob["model"], ob["threads"], ob["batch"], k, idx)] = med * s
    # Layers: kernel + same-class entry (+ exit after the last layer), from uniform configs
    # and MatMulNBits' own; same-signature layers of one job averaged; the first job wins.
    layer_rows: dict[tuple[Any, ...], dict[str, Any]] = {}
    for ob in observations:
        s = scale_of(ob)
        if ob["config"].startswith("alt:"):
            continue
        kernels, n = ob["kernels"], len(ob["kernels"])
        bound = {b[0]: b[1] * s for b in ob["boundaries"]}
        groups: dict[tuple[Any, ...], list[tuple[float, float, float, float, float, str]]] = {}
        for idx, _, k, med, p10, p90, ops in ob["layers"]:
            if _is_mnb(ob["config"]) and k not in MATMULNBITS_CLASSES:
                continue
            prev = INPUT if idx == 0 else kernels[idx - 1]
            entry = bound.get(idx, 0.0) if prev in (INPUT, k) else 0.0
            exit_ = bound.get(n, 0.0) if idx == n - 1 else 0.0
            sig = _spec_signature(ob["specs"][idx], ob["batch"])
            groups.setdefault((*sig.values(), k, ob["threads"]), []).append(
                (med * s, p10 * s, p90 * s, entry, exit_, ops)
            )
        for key, items in groups.items():
            if key in layer_rows:
                continue
            kern, p10, p90, entry, exit_ = (statistics.fmean(i[j] for i in items) for j in range(5))
            layer_rows[key] = {
                **dict(zip(SIGNATURE_COLUMNS, key[: len(SIGNATURE_COLUMNS)], strict=True)),
                "precision": key[-2],
                "kernel": items[0][5] or "?",
                "latency_us": round(kern + entry + exit_, 2),
                "p10_us": round(p10 + entry + exit_, 2),
                "p90_us": round(p90 + entry + exit_, 2),
                "runs": ob["profile_runs"],
                "threads": ob["threads"],
                "kernel_us": round(kern, 2),
                "entry_us": round(entry, 2),
                "exit_us": round(exit_, 2),
                "scale": round(s, 5),
                "n_layers": len(items),
                "model": ob["model"],
                "config": ob["config"],
            }
    layers = pd.DataFrame(list(layer_rows.values()))
    entry_of = {k: v["entry_us"] for k, v in layer_rows.items()}
    # Transitions: boundaries between different classes, minus the entry the layer row holds.
    obs_t: dict[tuple[Any, ...], list[tuple[float, float, float, str]]] = {}
    for ob in observations:
        if _uniform_class(ob["config"]) is not None:
            continue
        s = scale_of(ob)
        specs = [_SpecView(r) for r in ob["specs"]]
        keys = boundary_keys(specs, ob["kernels"], ob["batch"], ob["threads"])
        for (j, med, *_), key in zip(ob["boundaries"], keys, strict=True):
            src, dst = key[0], key[1]
            if src in (dst, INPUT) or dst == OUTPUT:
                continue  # folded into the layer rows
            if (
                _is_mnb(ob["config"])
                and dst not in MATMULNBITS_CLASSES
                and src not in MATMULNBITS_CLASSES
            ):
                continue
            delta = 0.0
            if with_delta and ob["config"].startswith("alt:"):
                r = ref.get((ob["model"], ob["threads"], ob["batch"], dst, j))
                if r is not None:
                    delta = ob["layers"][j][3] * s - r
            sig = _spec_signature(ob["specs"][j], ob["batch"])
            entry = entry_of.get((*sig.values(), dst, ob["threads"]), 0.0)
            obs_t.setdefault(key, []).append((med * s, delta, entry, ob["model"]))
    t_rows = []
    for key, vals in obs_t.items():
        raw = statistics.fmean(v[0] + v[1] - v[2] for v in vals)
        t_rows.append({
            **dict(zip(TRANSITION_KEY, key, strict=True)),
            "latency_us": round(max(raw, 0.0), 2),
            "raw_us": round(raw, 2),
            "nodes_us": round(statistics.fmean(v[0] for v in vals), 2),
            "delta_us": round(statistics.fmean(v[1] for v in vals), 2),
            "entry_us": round(statistics.fmean(v[2] for v in vals), 2),
            "n": len(vals),
            "models": ";".join(sorted({v[3] for v in vals})),
        })  # fmt: skip
    transitions = pd.DataFrame(t_rows, columns=[*TRANSITION_KEY, "latency_us", "raw_us",
                                                "nodes_us", "delta_us", "entry_us", "n",
                                                "models"])  # fmt: skip
    # Glue: per model and boundary position, measured (layer kernel + boundary in front of it)
    # minus what the shared tables charge there, for each observed (from, to) class pair.
    lookup = _Lookup(layers, transitions)
    obs_g: dict[tuple[Any, ...], list[float]] = {}
    names: dict[tuple[str, int], str] = {}
    for ob in observations:
        s = scale_of(ob)
        specs = [_SpecView(r) for r in ob["specs"]]
        kernels, n = ob["kernels"], len(ob["kernels"])
        keys = boundary_keys(specs, kernels, ob["batch"], ob["threads"])
        mnb, alt = _is_mnb(ob["config"]), ob["config"].startswith("alt:")
        for j, key in enumerate(keys):
            if mnb and key[0] not in MATMULNBITS_CLASSES and key[1] not in MATMULNBITS_CLASSES:
                continue
            if alt and (key[0] in (key[1], INPUT) or key[1] == OUTPUT):
                continue  # the input/output positions come from the uniform configs
            measured = ob["boundaries"][j][1] * s
            table = 0.0
            if j < n:
                measured += ob["layers"][j][3] * s
                try:
                    table = lookup.layer(specs[j], kernels[j], ob["threads"], ob["batch"])
                except HaqError:  # no row (its uniform config is being re-measured)
                    continue
                if j > 0 and key[0] != key[1]:
                    table += lookup.transition(key)
            names[(ob["model"], j)] = ob["layers"][j][1] if j < n else OUTPUT
            gkey = (ob["model"], ob["threads"], ob["batch"], j, key[0], key[1])
            obs_g.setdefault(gkey, []).append(measured - table)
    g_rows = [
        {**dict(zip(GLUE_KEY, key, strict=True)), "layer": names[(key[0], key[3])],
         "latency_us": round(statistics.fmean(v), 2), "n": len(v)}
        for key, v in obs_g.items()
    ]  # fmt: skip
    glue = pd.DataFrame(g_rows, columns=[*GLUE_KEY, "layer", "latency_us", "n"])
    return Tables(_sorted(layers, LAYER_KEY), _sorted(transitions, TRANSITION_KEY),
                  _sorted(glue, GLUE_KEY))  # fmt: skip


def _sorted(frame: pd.DataFrame, key: list[str]) -> pd.DataFrame:
    if frame.empty:
        return frame
    return frame.sort_values(key, kind="stable").reset_index(drop=True)


class _SpecView:
    """The LayerSpec fields `boundaries` and `signature` read, from a stored spec row."""

    def __init__(self, row: Sequence[Any]) -> None:
        self.kind = row[0]
        self.in_channels, self.out_channels = row[1], row[2]
        self.kernel, self.stride, self.groups = (row[3], row[4]), (row[5], row[6]), row[7]
        self.in_hw, self.out_hw = (row[8], row[9]), (row[10], row[11])


# --------------------------------------------------------------------------- prediction


class _Lookup:
    """Exact-key look-ups of layer and transition rows (to derive the glue)."""

    def __init__(self, layers: pd.DataFrame, transitions: pd.DataFrame) -> None:
        self.layers: dict[tuple[Any, ...], float] = {}
        if not layers.empty:
            for r in layers.to_dict("records"):
                self.layers[tuple(r[c] for c in LAYER_KEY)] = float(r["latency_us"])
        self.transitions: dict[tuple[Any, ...], float] = {}
        if not transitions.empty:
            for r in transitions.to_dict("records"):
                self.transitions[tuple(r[c] for c in TRANSITION_KEY)] = float(r["latency_us"])

    def layer(self, spec: Any, cls: str, threads: int, batch: int) -> float:
        key = (*signature(spec, batch).values(), cls, threads)
        if key not in self.layers:
            raise HaqError(
                f"{TARGET} has no {cls} row for {spec.kind} {spec.in_channels}->"
                f"{spec.out_channels} k{spec.kernel[0]} s{spec.stride[0]} at "
                f"{spec.in_hw[0]}x{spec.in_hw[1]}, {threads} thread(s); measure the model with "
                f"`haq profile --target {TARGET} --model <name> --threads {threads}`"
            )
        return self.layers[key]

    def transition(self, key: tuple[Any, ...]) -> float:
        if key[0] == key[1]:
            return 0.0
        if key in self.transitions:
            return self.transitions[key]
        alt = (TRANSITION_FALLBACK.get(key[0], key[0]), TRANSITION_FALLBACK.get(key[1], key[1]),
               *key[2:])  # fmt: skip
        return self.transitions.get(alt, 0.0)


# --------------------------------------------------------------------------- files


def default_dir() -> Path:
    from haq.paths import data_dir

    return data_dir("hardware_profiles") / TARGET


def read_observations(directory: str | Path) -> list[dict[str, Any]]:
    path = Path(directory) / OBSERVATIONS
    if not path.is_file():
        return []
    try:
        with gzip.open(path, "rt", encoding="utf-8") as f:
            out = [json.loads(line) for line in f if line.strip()]
    except (OSError, EOFError, json.JSONDecodeError) as e:
        raise HaqError(
            f"{path} is not readable ({e}); restore it or remove it to re-measure"
        ) from e
    for ob in out:  # records from before repeated wall timings: their one timing
        ob.setdefault("walls", [{
            "median_us": ob["wall_us"], "p10_us": ob["wall_p10_us"], "p90_us": ob["wall_p90_us"],
            "others_cpu": ob.get("others_cpu"), "busy": ob.get("busy", False),
            "ort_version": ob.get("ort_version"), "date": ob.get("date"),
        }])  # fmt: skip
    return out


def read_tables(directory: str | Path) -> Tables:
    import pandas as pd

    d = Path(directory)
    frames = []
    for name in ("layers", "transitions", "glue"):
        path = d / f"{name}.csv"
        if not path.is_file():
            raise HaqError(f"{path} not found; measure it with `haq profile --target {TARGET}`")
        frames.append(pd.read_csv(path))
    return Tables(*frames)


def write_all(
    directory: str | Path,
    observations: Sequence[dict[str, Any]],
    meta: dict[str, Any],
    boundary_tables: bool = True,
) -> Tables:
    """Atomically write the observations, the derived layer table (with ``boundary_tables``
    also the transition and glue tables: probe networks need only their layer rows),
    ``layer_map.csv`` and the ``.meta.json`` sidecars.

    Layer rows already in ``layers.csv`` that the observations do not cover (e.g. from another
    harness) are kept; rows are unique on `LAYER_KEY`.
    """
    import pandas as pd

    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    lines = "".join(json.dumps(ob, separators=(",", ":")) + "\n" for ob in observations)
    atomic_write_bytes(d / OBSERVATIONS, gzip.compress(lines.encode("utf-8"), mtime=0))
    tables = aggregate(observations)
    layers = tables.layers
    old_path = d / "layers.csv"
    if old_path.is_file() and old_path.stat().st_size:
        old = pd.read_csv(old_path)
        if not old.empty and set(LAYER_KEY) <= set(old.columns):
            have = (
                {tuple(r) for r in layers[LAYER_KEY].itertuples(index=False)}
                if len(layers)
                else set()
            )
            keep = old[[tuple(r) not in have for r in old[LAYER_KEY].itertuples(index=False)]]
            layers = _sorted(pd.concat([layers, keep], ignore_index=True), LAYER_KEY)
    tables.layers = layers
    cols = [c for c in COLUMNS if c in layers.columns]
    cols += [c for c in layers.columns if c not in COLUMNS]
    atomic_write_text(d / "layers.csv", layers[cols].to_csv(index=False))
    boundary = ("transitions", "glue")
    if boundary_tables:
        for name in boundary:
            atomic_write_text(d / f"{name}.csv", getattr(tables, name).to_csv(index=False))
    atomic_write_text(d / "layer_map.csv", layer_map(observations).to_csv(index=False))
    for name, what in _TABLE_DOCS.items():
        if name in boundary and not boundary_tables:
            continue
        atomic_write_text(d / f"{name}.meta.json",
                          json.dumps({**meta, "table": name, "contents": what}, indent=2,
                                     sort_keys=True, default=str))  # fmt: skip
    return tables


def layer_map(observations: Sequence[dict[str, Any]]) -> pd.DataFrame:
    """model, name, index, signature (without batch), macs, params and the activation after
    it (`LayerSpec.act`) of every profiled layer."""
    import pandas as pd

    rows: dict[tuple[str, str], dict[str, Any]] = {}
    for ob in observations:
        for idx, name, *_ in ob["layers"]:
            if (ob["model"], name) not in rows:
                spec = ob["specs"][idx]
                sig = dict(zip(SHAPE_COLUMNS, spec[:12], strict=True))
                rows[(ob["model"], name)] = {"model": ob["model"], "name": name, "index": idx,
                                             **sig, "macs": spec[12], "params": spec[13],
                                             "act": spec[14] if len(spec) > 14 else "none"}  # fmt: skip
    return pd.DataFrame(list(rows.values()))


_TABLE_DOCS = {
    "layers": (
        "per signature x kernel class (precision column) x threads: latency_us = kernel_us "
        "(in-graph time of the layer's fused node(s) + per-run weight dequantize) + entry_us "
        "(Q/DQ, Transpose, Reorder and model ops in front of it when the previous layer has the "
        "same class; the input for the first layer) + exit_us (after the last layer), from "
        "whole-model uniform configs, all scaled by wall median / profiled total of that run "
        "(scale); same-signature layers of one model averaged (n_layers); the first model "
        "measuring a key wins (model, config)"
    ),
    "transitions": (
        "extra time of a boundary between consecutive layers (execution order) of different "
        "kernel classes, keyed by the input tensor of the second layer (channels, h, w): "
        "boundary nodes (nodes_us) + the second layer's kernel-time change against its uniform "
        "config (delta_us) - the entry_us its layer row already holds (entry_us); mean of n "
        "observed boundaries of alternating configs over the listed models (raw_us), floored "
        "at 0 (latency_us)"
    ),
    "glue": (
        "per model, threads, batch, boundary index (in front of layer `layer`; index n = after "
        "the last layer) and class pair (from_kernel, to_kernel): measured layer kernel time + "
        "boundary time minus the layers.csv row and the transitions.csv row charged there, "
        "mean of n observations (uniform configs for same-class pairs, alternating configs "
        "otherwise); add the rows along a config to the lookup sum for a profiled model"
    ),
    "layer_map": (
        "model, layer name, execution index, signature, MACs, parameters and the activation "
        "after it (act) of every profiled layer"
    ),
}


# --------------------------------------------------------------------------- jobs


def plan_configs(
    names: Sequence[str], kinds: Sequence[str], classes: Sequence[str], transitions: bool
) -> list[tuple[str, tuple[str, ...]]]:
    """(config label, per-layer classes) for one model: uniform, alternating, MatMulNBits."""
    pair = [c for c in PAIR_CLASSES if c in classes]
    out = [(f"uniform:{c}", tuple([c] * len(names))) for c in pair]
    if transitions:
        for a in pair:
            for b in pair:
                if a != b:
                    out.append(
                        (f"alt:{a}/{b}", tuple(a if i % 2 == 0 else b for i in range(len(names))))
                    )
    if "linear" in kinds:
        for c in MATMULNBITS_CLASSES:
            if c in classes:
                out.append((f"fp32+{c}", tuple(c if k == "linear" else "fp32" for k in kinds)))
    return out


@dataclass
class _Model:
    name: str
    specs: list[LayerSpec]
    channel: Quantizer
    group: Quantizer | None = None
    macs: int = 0


def _load(name: str, weights: str, calib_images: int) -> _Model:
    import torch

    from haq.models import load_model
    from haq.quant import Quantizer, QuantSettings

    loaded = load_model(name, weights)
    gen = torch.Generator().manual_seed(0)
    calib = torch.randn((calib_images, *loaded.preprocess.input_size), generator=gen)
    q = Quantizer(loaded.model, loaded.example_input(), calibration_images=calib)
    group = None
    if any(s.kind == "linear" for s in q.layers):
        group = Quantizer(loaded.model, loaded.example_input(),
                          QuantSettings(granularity="group", group_size=GROUP_SIZE))  # fmt: skip
    return _Model(name, q.layers, q, group, sum(s.macs for s in q.layers))


def _export(model: _Model, label: str, kernels: Sequence[str]) -> tuple[bytes, str]:
    """The ONNX of one planned config and its `graph_digest`."""
    from haq.export.onnx_export import export_onnx

    q = model.group if label.startswith("fp32+matmulnbits") else model.channel
    if q is None:
        raise HaqError(f"{model.name} has no Linear layer for {label}")
    data, _ = export_onnx(q, class_config([s.name for s in model.specs], kernels))
    return data, graph_digest(data)


def graph_digest(data: bytes) -> str:
    """Hash of an exported graph's structure (ops, attributes, wiring, tensor shapes and
    dtypes, not weight values): observations of another structure are stale."""
    import hashlib

    import onnx

    model = onnx.load_model_from_string(data)
    h = hashlib.sha256()
    for n in model.graph.node:
        attrs = sorted((a.name, a.i, a.f, a.s, tuple(a.ints)) for a in n.attribute)
        h.update(repr((n.op_type, n.domain, list(n.input), list(n.output), attrs)).encode())
    for t in model.graph.initializer:
        h.update(repr((t.name, t.data_type, tuple(t.dims))).encode())
    return h.hexdigest()[:16]


@dataclass
class ProfileReport:
    directory: Path
    measured: int
    skipped: int
    failed: list[str] = field(default_factory=list)
    seconds: float = 0.0
    tables: Tables | None = None


def profile_target(
    models: Sequence[str],
    *,
    target: str = TARGET,
    threads: Sequence[int] = (1, 2),
    classes: Sequence[str] = KERNEL_CLASSES,
    transitions: bool = True,
    runs: int = 30,
    profile_runs: int = 10,
    warmup: int = 5,
    repeats: int = 1,
    weights: str = "none",
    directory: str | Path | None = None,
    profile_yaml: str | Path | None = None,
    calib_images: int = 8,
    wait_idle_s: float = 0.0,
    fresh: bool = False,
    probes: bool = False,
    progress: Callable[[str], None] | None = None,
) -> ProfileReport:
    """Measure (resumably) every pending job of ``models`` and rewrite the tables after each.

    Pass 1 times and profiles each job; passes 2..``repeats`` time its wall clock again (a
    pass over all jobs later, so a burst of other load hits one timing, not all), and the
    fastest median counts (`add_wall`). ``wait_idle_s``: before each timing, wait up to this
    long for other processes to use less than `IDLE_THRESHOLD` of the CPUs; a timing they
    disturbed anyway is retried once. ``fresh``: discard the stored observations of the
    planned jobs and measure them again (the old ones stay on disk until the first new one is
    written). ``probes``: the models are training networks for the learned cost model
    (`haq.models.probe`): their tables go to ``<directory>/probes/`` (uniform configs only),
    and the target's YAML, rewritten from the main tables, names them.
    """
    if target not in TARGETS:
        raise HaqError(f"unknown target {target!r}; `haq profile` measures: {', '.join(TARGETS)}")
    unknown = [c for c in classes if c not in KERNEL_CLASSES]
    if unknown:
        raise HaqError(f"unknown kernel class {unknown[0]!r}; use {', '.join(KERNEL_CLASSES)}")
    for name, value, least in (("threads", min(threads, default=0), 1), ("runs", runs, 1),
                               ("profile runs", profile_runs, 1), ("warmup", warmup, 0),
                               ("repeats", repeats, 1)):  # fmt: skip
        if value < least:
            raise HaqError(f"{name} must be at least {least}, not {value}")
    say = progress or (lambda msg: print(msg, file=sys.stderr, flush=True))
    main_dir = Path(directory) if directory is not None else default_dir()
    d = main_dir / PROBES_DIR if probes else main_dir
    transitions = transitions and not probes
    observations = read_observations(d)
    by_key = {(o["model"], o["threads"], o["batch"], o["config"]): o for o in observations}
    from haq.models.registry import get_entry

    for m in models:
        get_entry(m)  # unknown names fail before any measuring
    info = machine_info()
    if "avx512f" not in info["flags"]:
        say(f"haq: warning: this CPU lacks avx512f; the {target} tables describe this machine")
    t_start = time.time()
    report = ProfileReport(d, 0, 0)
    loaded: dict[str, _Model] = {}
    plans: list[tuple[str, str, tuple[str, ...], list[JobSpec]]] = []
    stale = 0
    for m in models:  # one model in memory at a time; only those with jobs left are kept
        with reuse_float_graph():
            model = _load(m, weights, calib_images)
            rows = [_spec_row(s) for s in model.specs]
            for ob in observations:  # layer descriptions as this version discovers them
                if ob["model"] == m and len(ob["specs"]) == len(rows):
                    ob["specs"] = rows
            names = [s.name for s in model.specs]
            kinds = [s.kind for s in model.specs]
            for label, kernels in plan_configs(names, kinds, classes, transitions):
                jobs = [JobSpec(m, label, kernels, t) for t in threads]
                digest = graph_digest(_export(model, label, kernels)[0])
                for j in jobs:  # measured from another graph (the exporter changed): redo
                    old = by_key.get(j.key)
                    if old is not None and fresh:
                        observations.remove(by_key.pop(j.key))
                    elif old is not None and old.get("graph") != digest:
                        observations.remove(by_key.pop(j.key))
                        stale += 1
                pending = [j for j in jobs if len(by_key.get(j.key, {}).get("walls", ())) < repeats]
                report.skipped += len(jobs) - len(pending)
                if pending:
                    plans.append((m, label, kernels, pending))
                    loaded[m] = model
    if stale:
        say(f"{target}: {stale} jobs were measured on graphs the exporter no longer writes; "
            "measuring them again")  # fmt: skip
    # (pass, job) units of work, weighted by the model's MACs for the ETA
    weight = {m: 1.0 + loaded[m].macs / 2e9 for m in loaded}
    units = 0
    todo = 0.0
    for m, _, _, pending in plans:
        for j in pending:
            have = len(by_key.get(j.key, {}).get("walls", ()))
            n = repeats - have
            units += n
            todo += weight[m] * ((3.0 if have == 0 else 0.0) + n)  # profiling ~3 timings
    spent = 0.0
    n_done = 0
    say(f"{target}: {units} timings to take ({report.skipped} jobs already complete in {d}; "
        f"planned in {time.time() - t_start:.0f}s)")  # fmt: skip
    t_measure = time.time()  # the ETA extrapolates the measuring rate only

    def timed(run: Callable[[], dict[str, Any]]) -> tuple[dict[str, Any], float]:
        """Run a timing after waiting for idle CPUs; once more if it was disturbed."""
        waited = 0.0
        for _ in range(2 if wait_idle_s > 0 else 1):
            waited += wait_for_idle(wait_idle_s)[0] if wait_idle_s > 0 else 0.0
            out = run()
            if not out["busy"]:
                break
        return out, waited

    with reuse_float_graph():
        for pass_no in range(repeats):
            for m, label, kernels, pending in plans:
                todo_now = [
                    j for j in pending if len(by_key.get(j.key, {}).get("walls", ())) <= pass_no
                ]
                if not todo_now:
                    continue
                model = loaded[m]
                try:
                    data, digest = _export(model, label, kernels)
                except Exception as e:  # one config failing must not stop the rest
                    report.failed.extend(f"{j.key}: export failed: {_oneline(e)}" for j in todo_now)
                    continue
                for job in todo_now:
                    ob = by_key.get(job.key)
                    try:
                        if ob is None:
                            ob, waited = timed(partial(measure_job, job, data, model.specs,
                                runs=runs, profile_runs=profile_runs, warmup=warmup))  # fmt: skip
                            ob["waited_s"], ob["graph"] = waited, digest
                            observations.append(ob)
                            by_key[job.key] = ob
                            report.measured += 1
                            spent += 3.0 * weight[m]
                        else:
                            wall, waited = timed(partial(time_wall, data, job.threads,
                                job.batch, runs, warmup))  # fmt: skip
                            add_wall(ob, wall)
                            ob["waited_s"] = ob.get("waited_s", 0.0) + waited
                    except Exception as e:
                        report.failed.append(f"{job.key}: {_oneline(e)}")
                        continue
                    report.tables = write_all(
                        d, observations, _meta(observations, info), not probes
                    )
                    n_done += 1
                    spent += weight[m]
                    elapsed = time.time() - t_start
                    rate = (time.time() - t_measure) / spent if spent else 0.0
                    eta = rate * max(todo - spent, 0.0)
                    last = ob["walls"][-1]["median_us"]
                    say(f"[{n_done}/{units}] pass {pass_no + 1}/{repeats} {m} {label} "
                        f"{job.threads}t: {last / 1e3:.3f} ms (best {ob['wall_us'] / 1e3:.3f}, "
                        f"scale {ob['scale']:.3f}{', busy' if ob['walls'][-1]['busy'] else ''})"
                        f"  elapsed {elapsed:.0f}s  ETA {eta:.0f}s")  # fmt: skip
    report.seconds = time.time() - t_start
    if report.tables is None and observations:  # nothing new: re-derive (the code may have changed)
        report.tables = write_all(d, observations, _meta(observations, info), not probes)
    main_obs = read_observations(main_dir) if probes else observations
    if main_obs:
        write_profile_yaml(profile_yaml or main_dir.parent / f"{target}.yaml", main_dir, main_obs,
                           info)  # fmt: skip
    return report


#: Share of all CPUs other processes may use for the machine to count as idle.
IDLE_THRESHOLD = 0.2


def _cpu_busy(window_s: float) -> float | None:
    """Share of all CPUs busy over ``window_s`` (this process sleeps meanwhile)."""

    def read() -> tuple[int, int] | None:
        try:
            with open("/proc/stat") as f:
                v = [int(x) for x in f.readline().split()[1:]]
        except (OSError, ValueError):
            return None
        return sum(v[:8]), v[3] + v[4]

    a = read()
    time.sleep(window_s)
    b = read()
    if a is None or b is None or b[0] <= a[0]:
        return None
    return 1.0 - (b[1] - a[1]) / (b[0] - a[0])


def wait_for_idle(max_wait_s: float, window_s: float = 1.0) -> tuple[float, float | None]:
    """Wait until the CPUs are idle (or ``max_wait_s`` passed): (seconds waited, last share)."""
    t0 = time.time()
    busy = _cpu_busy(window_s)
    while busy is not None and busy > IDLE_THRESHOLD and time.time() - t0 < max_wait_s:
        busy = _cpu_busy(window_s)
    return round(time.time() - t0, 1), None if busy is None else round(busy, 3)


def _oneline(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return f"{type(e).__name__}: {text[0] if text else ''}"


def _meta(observations: Sequence[dict[str, Any]], info: dict[str, Any]) -> dict[str, Any]:
    loads = [o["loadavg_before"] for o in observations if o.get("loadavg_before") is not None]
    busy = sum(1 for o in observations if o.get("busy"))
    return {
        "target": TARGET,
        "provenance": "measured",
        "machine": {
            k: info.get(k) for k in ("cpu", "family", "model", "flags", "cpus", "platform")
        },
        "runtime": info.get("runtime"),
        "ort_versions": sorted({o["ort_version"] for o in observations}),
        "date_first": min(o["date"] for o in observations),
        "date_last": max(o["date"] for o in observations),
        "jobs": len(observations),
        "models": sorted({o["model"] for o in observations}),
        "threads": sorted({o["threads"] for o in observations}),
        "measuring_seconds": round(sum(o.get("seconds", 0.0) for o in observations), 1),
        "wall_timings_per_job": sorted({len(o["walls"]) for o in observations}),
        "waited_for_idle_seconds": round(sum(o.get("waited_s", 0.0) for o in observations), 1),
        "load": {
            "loadavg_1min_before_jobs": {
                "min": min(loads, default=None),
                "median": statistics.median(loads) if loads else None,
                "max": max(loads, default=None),
            },
            "jobs_flagged_busy": busy,
        },  # fmt: skip
        "method": (
            "whole-model ONNX export per config (haq.export.export_onnx; WeightBiasQuantization "
            "off), wall = median of `runs` timed runs with the profiler off after warm-up, "
            "attribution = ORT profiler node kernel times (median of profile_runs runs) mapped "
            "to layers and boundaries; see haq/hardware/ort_profile.py"
        ),
        "random_weights": "latency does not depend on weight values; --weights none by default",
        "matmulnbits_block_size": GROUP_SIZE,
    }


def write_profile_yaml(
    path: str | Path, tables_dir: Path, observations: Sequence[dict[str, Any]],
    info: dict[str, Any],
) -> None:  # fmt: skip
    """The target's HardwareProfile YAML (field names of `haq.hardware.profile`)."""
    import yaml

    path = Path(path)
    try:
        rel = tables_dir.resolve().relative_to(path.parent.resolve())
    except ValueError:
        rel = tables_dir.resolve()
    threads = sorted({o["threads"] for o in observations})
    doc = {
        "id": TARGET,
        "kind": "cpu",
        "description": (
            "x86 CPU with AVX-512 VNNI running ONNX Runtime's CPU execution provider (QDQ "
            "models, batch 1). Only uint8 x int8 (<= 8 bits both) runs integer kernels; "
            "narrower bits ride in int8 containers at int8 cost; weight-only and 16-bit "
            "activations run dequantize + float kernels, slower than fp32 for convs."
        ),
        "provenance": "measured",
        "provenance_details": {
            "machine": info.get("cpu"),
            "cpu_family": info.get("family"),
            "cpu_model": info.get("model"),
            "cpu_flags": info.get("flags"),
            "cpus": info.get("cpus"),
            "runtime": "onnxruntime",
            "version": (info.get("runtime") or {}).get("version"),
            "provider": "CPUExecutionProvider",
            "date": max(o["date"] for o in observations),
            "models_profiled": sorted({o["model"] for o in observations}),
            "method": "haq profile --target cpu-avx512 (haq/hardware/ort_profile.py)",
            "latency_model": (
                "sum(layers[signature, kernel]) + sum(transitions[k_prev -> k_next, input "
                "tensor of the next layer] where the classes differ, execution order) + "
                "sum(glue[model, boundary index, k_prev, k_next]) for profiled models"
            ),
            "observations": str(rel / OBSERVATIONS),
        },
        "kernels": dict(KERNEL_DESCRIPTIONS),
        "rules": [
            {
                "ops": list(r.ops),
                "w": list(r.w) if r.w else None,
                "a": list(r.a) if r.a else None,
                "kernel": r.kernel,
                **({"granularity": r.granularity} if r.granularity else {}),
            }
            for r in RULES
        ],  # fmt: skip
        "batch": 1,
        "threads": threads,
        "tables": {
            "layers": str(rel / "layers.csv"),
            "transitions": str(rel / "transitions.csv"),
            "glue": str(rel / "glue.csv"),
            "layer_map": str(rel / "layer_map.csv"),
            **(
                {
                    "probes": str(rel / PROBES_DIR / "layers.csv"),
                    "probe_map": str(rel / PROBES_DIR / "layer_map.csv"),
                }
                if (tables_dir / PROBES_DIR / "layers.csv").is_file()
                else {}
            ),  # fmt: skip
        },
        "energy": False,
        "peaks": {},
        # the glue is derived with these stand-ins (`_Lookup.transition`): cost models use them too
        "transition_aliases": dict(TRANSITION_FALLBACK),
        "notes": (
            "Tables: layers (kernel + same-class boundary time), transitions (extra time where "
            "classes differ), glue per model, boundary position and class pair (the lookup "
            "cost model adds it for a profiled model). MatMulNBits measured at block "
            "32 with fp32 convs; its missing transition pairs use fp32's (transition_aliases). "
            "int8 with "
            "activations under 8 bits adds a Clip node the tables do not charge."
        ),
    }
    header = (
        "# Generated by `haq profile --target cpu-avx512`; re-run it to refresh.\n"
        "# Rules: first match wins; w/a = inclusive bit range, null = float on that side.\n"
    )
    atomic_write_text(
        path, header + yaml.safe_dump(doc, sort_keys=False, width=100, default_flow_style=None)
    )


def iter_classes(values: Iterable[str]) -> list[str]:
    """Expand ``matmulnbits`` to its three bit widths; keep order, drop repeats."""
    out: list[str] = []
    for v in values:
        for c in MATMULNBITS_CLASSES if v == "matmulnbits" else (v,):
            if c not in out:
                out.append(c)
    return out
