"""ONNX Runtime on the CPU provider: sessions, the map from executed nodes to haq layers, node times.

Shared by the benchmark (`haq.export.bench`) and the profiling harness (`haq.hardware.ort`).
ORT renames the nodes it fuses, so the mapping goes by name first, then by the tensors and
weights the executed node touches (see `LayerMap`). onnxruntime and onnx are imported inside
functions: ``import haq`` stays light.
"""

from __future__ import annotations

import bisect
import json
import os
import re
import statistics
import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from haq.errors import HaqError

if TYPE_CHECKING:
    import numpy as np
    import onnx
    import onnxruntime as ort
    import pandas as pd
    import torch


#: ``metadata_props`` key the exporter writes: JSON {ONNX node name: haq layer name}.
LAYERS_METADATA_KEY = "haq.layers"

#: Load-time optimizer that re-quantizes a float Conv/Gemm sitting between quantized neighbours
#: (measured: a half-float ResNet-18 ran at almost all-int8 speed). Always off: a mixed config
#: must run as exported.
DEFAULT_DISABLED_OPTIMIZERS: tuple[str, ...] = ("WeightBiasQuantization",)

#: Ops of the exported graph that are layers when the model carries no ``haq.layers`` metadata.
_SOURCE_LAYER_OPS = frozenset(
    {"Conv", "ConvTranspose", "Gemm", "MatMul", "MatMulNBits", "QLinearConv", "QLinearMatMul",
     "MatMulInteger", "ConvInteger", "QGemm", "DynamicQuantizeMatMul", "FusedMatMul"}
)  # fmt: skip

#: Executed ops that do a layer's arithmetic; only these are matched by tensors and weights
#: (a Transpose or QuantizeLinear next to a layer is boundary cost, reported as "other").
_COMPUTE_OPS = _SOURCE_LAYER_OPS | {
    "FusedConv", "FusedGemm", "NhwcFusedConv", "NhwcConv", "QLinearConvTranspose",
    "DynamicQuantizeLinearMatMul", "MatMulIntegerToFloat", "QAttention", "Attention",
}  # fmt: skip

#: Ops ORT folds into the producing layer (activation, BN, QDQ of its output): walking back
#: through them from a fused node's output tensor reaches the layer.
_FOLDED_UNARY = frozenset(
    {"Relu", "LeakyRelu", "Clip", "Sigmoid", "HardSigmoid", "HardSwish", "Tanh", "Elu", "Gelu",
     "BatchNormalization", "QuantizeLinear", "DequantizeLinear", "Identity", "Cast"}
)  # fmt: skip
#: Binary ops followed back only when exactly one layer feeds them (bias Add, SiLU Mul,
#: an NCHWc residual Add whose other input is a graph input).
_FOLDED_BINARY = frozenset({"Add", "Mul", "Sum"})
#: Executed ops that belong to a layer when they read ``<layer>.bias``.
_BIAS_OPS = frozenset({"Add"})
#: Ops that reshape a weight on its way into a layer (constant-folded by ORT at load).
_WEIGHT_PATH = frozenset(
    {"DequantizeLinear", "Transpose", "Reshape", "Cast", "Identity", "Unsqueeze", "Squeeze",
     "Flatten"}
)  # fmt: skip

# Names ORT gives to nodes it creates: "<name>_token_<n>" (GenerateNodeName on a clash, e.g.
# QDQ -> QLinearConv), "fused <name>" (FusedConv / FusedGemm), "<output tensor>_nchwc" (NCHWc
# Conv, named after the tensor it writes, i.e. after the last fused activation).
_TOKEN_SUFFIX = re.compile(r"_token_\d+$")
_WEIGHT_NAME = re.compile(r"^(?P<layer>.+)\.(?:weight|bias)(?:_[A-Za-z0-9_]*)?$")

ORT_TYPES = {
    "tensor(float)": "float32", "tensor(float16)": "float16", "tensor(double)": "float64",
    "tensor(int64)": "int64", "tensor(int32)": "int32", "tensor(int16)": "int16",
    "tensor(int8)": "int8", "tensor(uint8)": "uint8", "tensor(uint16)": "uint16",
    "tensor(bool)": "bool",
}  # fmt: skip


# --------------------------------------------------------------------------- sessions


def _ort_errors() -> tuple[type[BaseException], ...]:
    """ORT's load errors (pybind classes that derive from Exception directly)."""
    from onnxruntime.capi import onnxruntime_pybind11_state as s

    names = ("Fail", "InvalidArgument", "InvalidGraph", "InvalidProtobuf", "NoModel",
             "NoSuchFile", "NotFound", "NotImplemented", "RuntimeException")  # fmt: skip
    return tuple(getattr(s, n) for n in names if hasattr(s, n))


def _ort_message(e: BaseException) -> str:
    """First line of an ORT error, without the ``[ONNXRuntimeError] : 7 : CODE :`` prefix."""
    msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
    return re.sub(r"^\[ONNXRuntimeError\]\s*:\s*\d+\s*:\s*\w+\s*:\s*", "", msg)


def model_source(model: Any) -> tuple[str | bytes, str]:
    """(what ORT loads, a label for messages); checks a path exists before ORT sees it."""
    if isinstance(model, bytes | bytearray):
        return bytes(model), "<bytes>"
    if hasattr(model, "SerializeToString"):
        return model.SerializeToString(), "<ModelProto>"
    if isinstance(model, str | os.PathLike):
        path = Path(model)
        if not path.exists():
            raise HaqError(f"{path}: no such file; pass the path of an exported .onnx model")
        if not path.is_file():
            raise HaqError(f"{path}: not a file; pass the path of an exported .onnx model")
        return str(path), str(path)
    raise HaqError(f"expected an ONNX model path, bytes or ModelProto, not {type(model).__name__}")


def make_session(
    path_or_bytes: str | os.PathLike[str] | bytes,
    threads: int = 1,
    profile: bool = False,
    optimized_model_path: str | os.PathLike[str] | None = None,
    *,
    disabled_optimizers: Sequence[str] = DEFAULT_DISABLED_OPTIMIZERS,
    profile_prefix: str | None = None,
) -> ort.InferenceSession:
    """A CPU session configured like the deploy target, so the latency is the one shipped.

    Pinned intra-op threads with spinning on (off raised 2-thread latency 12-50%), one inter-op
    thread, sequential execution, all graph optimizations, and ``WeightBiasQuantization`` off.
    ``disabled_optimizers`` goes to ``InferenceSession(..., disabled_optimizers=...)`` (a keyword
    of ORT's Python API; unknown names are silently ignored, so check the optimized graph with
    `executed_ops`). Load errors become one-line `HaqError`s.
    """
    import onnxruntime as ort

    if threads < 1:
        raise HaqError(f"threads must be at least 1, not {threads}")
    src, label = model_source(path_or_bytes)
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.add_session_config_entry("session.intra_op.allow_spinning", "1")
    so.log_severity_level = 3  # the NCHWc "hardware specific" note on every saved graph is noise
    if optimized_model_path is not None:
        so.optimized_model_filepath = str(optimized_model_path)
    if profile:
        so.enable_profiling = True
        if profile_prefix is not None:
            so.profile_file_prefix = profile_prefix
    try:
        return ort.InferenceSession(
            src,
            so,
            providers=["CPUExecutionProvider"],
            disabled_optimizers=list(disabled_optimizers),
        )
    except _ort_errors() as e:
        raise HaqError(f"{label}: not a loadable ONNX model ({_ort_message(e)})") from None


def ort_logits(model: str | os.PathLike[str] | bytes, x: torch.Tensor, batch: int = 1,
               threads: int = 1) -> torch.Tensor:  # fmt: skip
    """Outputs of an exported model with a baked-in ``batch`` on all of ``x`` (a short last
    batch is padded, its padding dropped)."""
    import torch

    sess = make_session(model, threads=threads)
    name = sess.get_inputs()[0].name
    outs = []
    for i in range(0, len(x), batch):
        chunk = x[i : i + batch]
        n = len(chunk)
        if n < batch:
            chunk = torch.cat([chunk, chunk[-1:].expand(batch - n, *chunk.shape[1:])])
        outs.append(torch.from_numpy(sess.run(None, {name: chunk.numpy()})[0][:n]))
    return torch.cat(outs)


def load_graph(model: Any, label: str) -> onnx.ModelProto:
    """The exported graph (without external weights) for layer mapping."""
    import onnx
    from google.protobuf.message import DecodeError

    if hasattr(model, "graph"):
        return model
    try:
        if isinstance(model, bytes | bytearray):
            return onnx.load_model_from_string(bytes(model))
        return onnx.load(str(model), load_external_data=False)
    except (DecodeError, OSError, ValueError) as e:
        raise HaqError(f"{label}: not a readable ONNX model ({e})") from None


# --------------------------------------------------------------------------- layer mapping


@dataclass(frozen=True)
class LayerMatch:
    """The haq layer an executed node belongs to, and which rule found it (for debugging)."""

    layer: str | None
    match: str | None  # "name", "renamed", "bias", "output", "weight", or None


class LayerMap:
    """Maps ORT's executed node names back to haq layers of the exported graph.

    Rules, first hit wins: (1) ``name``: the node kept its exported name; (2) ``renamed``: the
    name minus ORT's ``_token_<n>`` suffix, ``fused `` prefix or ``_nchwc`` suffix is a layer
    node; then, only for compute ops (Conv/Gemm/MatMul and their fused/quantized forms):
    (3) ``output``: the stripped name or an output of the node is a tensor of the exported graph
    that a layer produced, possibly through ops ORT folds into it (activation, BN, Q/DQ); this
    is what identifies NCHWc convs, named ``<output tensor>_nchwc`` with re-laid-out weights;
    (4) ``weight``: an input is a weight tensor that feeds exactly one layer (initializer names
    survive QDQ -> QLinearConv), or is named ``<layer>.weight`` / ``<layer>.bias`` plus a suffix.
    An ``Add`` reading ``<layer>.bias`` (MatMul + Add export of a Linear) is that layer's too.
    """

    def __init__(self, model: onnx.ModelProto) -> None:
        graph = model.graph
        self.node_layer = self._node_layers(model)
        seen: dict[str, None] = {}
        for n in graph.node:
            if n.name in self.node_layer:
                seen.setdefault(self.node_layer[n.name])
        self.layers: list[str] = list(seen)
        self._known = set(self.layers)
        self._producer = {out: n for n in graph.node for out in n.output if out}
        self._initializers = {t.name for t in graph.initializer}
        const = set(self._initializers)
        for n in graph.node:  # nodes are topologically sorted in a valid model
            if n.op_type == "Constant" or (n.input and all(i in const for i in n.input if i)):
                const.update(o for o in n.output if o)
        self._const = const
        self.weight_layer = self._weight_layers(graph)

    @staticmethod
    def _node_layers(model: onnx.ModelProto) -> dict[str, str]:
        for prop in model.metadata_props:
            if prop.key == LAYERS_METADATA_KEY:
                try:
                    mapping = json.loads(prop.value)
                except json.JSONDecodeError as e:
                    raise HaqError(f"model metadata {LAYERS_METADATA_KEY!r} is not JSON ({e}); "
                                   "re-export the model") from None  # fmt: skip
                if not isinstance(mapping, dict) or not all(
                    isinstance(k, str) and isinstance(v, str) for k, v in mapping.items()
                ):
                    raise HaqError(f"model metadata {LAYERS_METADATA_KEY!r} must map ONNX node "
                                   "names to layer names; re-export the model")  # fmt: skip
                return mapping
        # Not a haq export: every Conv/Gemm/MatMul node is its own layer.
        return {
            n.name: n.name for n in model.graph.node if n.name and n.op_type in _SOURCE_LAYER_OPS
        }

    def _weight_layers(self, graph: onnx.GraphProto) -> dict[str, str | None]:
        """Constant tensors on the way into exactly one layer (None: shared by several)."""
        out: dict[str, str | None] = {}
        for n in graph.node:
            layer = self.node_layer.get(n.name)
            if layer is None:
                continue
            stack = [t for t in n.input[1:] if t] if n.op_type != "MatMul" else list(n.input)
            while stack:
                t = stack.pop()
                if t not in self._const:
                    continue
                out[t] = layer if out.get(t, layer) == layer else None
                p = self._producer.get(t)
                if p is not None and p.op_type in _WEIGHT_PATH and p.input:
                    stack.append(p.input[0])
        return out

    def _layer_of_tensor(self, tensor: str, depth: int = 0) -> str | None:
        """The layer that writes ``tensor``, looking through ops ORT folds into a layer."""
        node = self._producer.get(tensor)
        if node is None or depth > 8:
            return None
        if node.name in self.node_layer:
            return self.node_layer[node.name]
        if node.op_type in _FOLDED_UNARY and node.input:
            return self._layer_of_tensor(node.input[0], depth + 1)
        if node.op_type in _FOLDED_BINARY:
            found = {
                self._layer_of_tensor(t, depth + 1)
                for t in node.input
                if t and t not in self._const and t in self._producer
            }
            if len(found) == 1:
                return found.pop()
        return None

    def _layer_of_weight_name(self, tensor: str) -> str | None:
        """``<layer>.weight`` / ``<layer>.bias`` + any suffix (``_quantized``, ``_scale``...),
        where ``<layer>`` is a haq layer or a layer node's name."""
        m = _WEIGHT_NAME.match(tensor)
        if m is None:
            return None
        prefix = m.group("layer")
        return prefix if prefix in self._known else self.node_layer.get(prefix)

    @staticmethod
    def _strip(name: str) -> list[str]:
        """Candidate exported names for an ORT-generated node name, most specific first."""
        out: list[str] = []
        cur = name
        for _ in range(4):
            nxt = _TOKEN_SUFFIX.sub("", cur)
            nxt = nxt.removeprefix("fused ")
            nxt = nxt.removesuffix("_nchwc")
            if nxt == cur:
                break
            out.append(nxt)
            cur = nxt
        return out

    def match(
        self,
        name: str,
        op_type: str | None,
        inputs: Sequence[str] = (),
        outputs: Sequence[str] = (),
    ) -> LayerMatch:
        """The layer of executed node ``name`` (op as executed, its optimized-graph I/O)."""
        if name in self.node_layer:
            return LayerMatch(self.node_layer[name], "name")
        stripped = self._strip(name)
        for cand in stripped:
            if cand in self.node_layer:
                return LayerMatch(self.node_layer[cand], "renamed")
        if op_type in _BIAS_OPS:  # MatMul + Add of a Linear on 3-D input: the Add is the layer's
            for t in inputs:
                layer = self._layer_of_weight_name(t)
                if layer is not None:
                    return LayerMatch(layer, "bias")
        if op_type not in _COMPUTE_OPS:
            return LayerMatch(None, None)
        for tensor in [*stripped, *outputs]:
            layer = self._layer_of_tensor(tensor)
            if layer is not None:
                return LayerMatch(layer, "output")
        found: set[str] = set()
        for t in inputs:
            layer = self.weight_layer.get(t)
            if layer is None and t not in self.weight_layer:
                layer = self._layer_of_weight_name(t)
            if layer is not None:
                found.add(layer)
        if len(found) == 1:
            return LayerMatch(found.pop(), "weight")
        return LayerMatch(None, None)


# --------------------------------------------------------------------------- executed graph


def optimized_nodes(path: str | os.PathLike[str]) -> dict[str, Any]:
    """name -> NodeProto of the graph ORT saved after optimization."""
    import onnx

    graph = onnx.load(str(path), load_external_data=False).graph
    return {n.name: n for n in graph.node}


def executed_ops(
    model: Any,
    threads: int = 1,
    *,
    disabled_optimizers: Sequence[str] = DEFAULT_DISABLED_OPTIMIZERS,
) -> pd.DataFrame:
    """What each node became after ORT's load-time optimization, with its haq layer.

    Columns: node, op_type, domain, layer, match. Use it to check a mixed config runs as
    exported, e.g. that a layer left float is a ``Conv`` (domain ``com.microsoft.nchwc``) and
    not a ``QLinearConv``.
    """
    import pandas as pd

    src, label = model_source(model)
    layer_map = LayerMap(load_graph(model if hasattr(model, "graph") else src, label))
    with tempfile.TemporaryDirectory(prefix="haq-bench-") as tmp:
        opt = Path(tmp) / "optimized.onnx"
        make_session(src, threads=threads, optimized_model_path=opt,
                     disabled_optimizers=disabled_optimizers)  # fmt: skip
        nodes = optimized_nodes(opt)
    rows = []
    for name, n in nodes.items():
        m = layer_map.match(name, n.op_type, list(n.input), list(n.output))
        rows.append({"node": name, "op_type": n.op_type, "domain": n.domain or "ai.onnx",
                     "layer": m.layer, "match": m.match})  # fmt: skip
    return pd.DataFrame(rows, columns=["node", "op_type", "domain", "layer", "match"])


# --------------------------------------------------------------------------- inputs


def random_feeds(sess: ort.InferenceSession, batch: int, seed: int = 0) -> dict[str, np.ndarray]:
    """Random inputs of the model's input shapes with the batch axis set to ``batch``."""
    import numpy as np

    rng = np.random.default_rng(seed)
    feeds: dict[str, np.ndarray] = {}
    for inp in sess.get_inputs():
        dtype = ORT_TYPES.get(inp.type)
        if dtype is None:
            raise HaqError(f"input {inp.name!r} has type {inp.type}; bench feeds tensors of "
                           f"{', '.join(sorted(set(ORT_TYPES.values())))} only")  # fmt: skip
        shape: list[int] = []
        for axis, dim in enumerate(inp.shape):
            if axis == 0:
                if isinstance(dim, int) and dim != batch:
                    raise HaqError(f"input {inp.name!r} has a fixed batch size of {dim}; "
                                   f"re-export the model with batch {batch} or a dynamic batch "
                                   f"axis, or pass --batch {dim}")  # fmt: skip
                shape.append(batch)
            elif isinstance(dim, int) and dim >= 0:
                shape.append(dim)
            else:
                raise HaqError(f"input {inp.name!r} has a dynamic size {dim!r} at axis {axis}; "
                               "re-export the model with fixed input sizes (only the batch "
                               "axis may be dynamic)")  # fmt: skip
        if dtype.startswith("float"):
            feeds[inp.name] = rng.standard_normal(shape).astype(dtype)
        else:
            feeds[inp.name] = np.zeros(shape, dtype=dtype)
    return feeds


# --------------------------------------------------------------------------- node times


def per_run_node_times(
    events: Iterable[dict[str, Any]], runs: int
) -> tuple[int, dict[str, list[float]], dict[str, dict[str, Any]]]:
    """Kernel µs of every node in each of the last ``runs`` profiled ``model_run``s.

    Events of the warm-up runs in the same profile are dropped by assigning every node event to
    the ``model_run`` window that contains it. Returns (number of runs, node -> µs per run,
    node -> {op_type, provider, order}).
    """
    events = list(events)
    windows = sorted(
        (e["ts"], e["ts"] + e["dur"])
        for e in events
        if e.get("cat") == "Session" and e.get("name") == "model_run"
    )[-runs:]
    starts = [w[0] for w in windows]
    per_run: dict[str, list[float]] = {}
    info: dict[str, dict[str, Any]] = {}
    for e in events:
        name = e.get("name", "")
        if e.get("cat") != "Node" or not name.endswith("_kernel_time"):
            continue
        i = bisect.bisect_right(starts, e["ts"]) - 1
        if i < 0 or e["ts"] > windows[i][1]:
            continue
        node = name.removesuffix("_kernel_time")
        args = e.get("args", {})
        if node not in info:
            info[node] = {"op_type": args.get("op_name"), "provider": args.get("provider"),
                          "order": len(info)}  # fmt: skip
            per_run[node] = [0.0] * len(windows)
        per_run[node][i] += float(e["dur"])
    return len(windows), per_run, info


def node_times(events: Iterable[dict[str, Any]], runs: int) -> dict[str, dict[str, Any]]:
    """Median per-run kernel µs of each node (see `per_run_node_times`)."""
    _, per_run, info = per_run_node_times(events, runs)
    for node, values in per_run.items():
        info[node]["kernel_us"] = statistics.median(values) if values else 0.0
    return info


def runtime_info() -> dict[str, Any] | None:
    """Name, version and provider of the runtime these sessions use (None if not installed)."""
    try:
        import onnxruntime as ort
    except ImportError:  # pragma: no cover - a dependency
        return None
    return {"name": "onnxruntime", "version": ort.__version__, "provider": "CPUExecutionProvider"}
