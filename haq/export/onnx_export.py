"""Export a BitConfig applied to a model as an ONNX QDQ graph that ONNX Runtime runs as such.

The float, BN-folded model is exported with ``torch.onnx.export``; then every configured layer
gets exactly the numbers of haq's simulation (`haq.quant`), as Quantize/DequantizeLinear nodes
ORT fuses into integer kernels:

- integer layers (weights and activations at 8 bits or fewer): int8 per-channel weights, int32
  bias, uint8 input activations, uint8 output requantization (an absorbed ReLU is removed, its
  zero point 0 clamps) -> ``QLinearConv`` / ``QGemm``. Fewer than 8 bits ride in the same
  containers on the smaller grid (a Clip before the activation Q keeps the narrower range).
- activations above 8 bits: uint16 Q/DQ (ORT dequantizes and runs the float op).
- weight-only Linear layers with group-wise weights at 2, 4 or 8 bits: ``com.microsoft.
  MatMulNBits`` with block size = group size (`haq.export.matmul_nbits`).
- Linear layers under dynamic activations: the dynamic int8 pattern ORT fuses into
  ``DynamicQuantizeMatMul``, or its per-token form (`haq.export.dynamic_int8`).
- other weight-only group-wise or wider weights: the fake-quantized float weights (exactly the
  simulated values; ORT runs a float kernel, which is also all it could do with them).
- float layers stay float. ORT's ``WeightBiasQuantization`` optimizer would re-quantize them;
  `haq.runtime.ort.make_session` disables it.

Each configured layer's node is renamed to the haq layer name, and the model carries
``metadata_props['haq.layers']`` (node name -> layer) and ``haq.config`` (the resolved config).
"""

from __future__ import annotations

import contextlib
import io
import json
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from haq.config import BitConfig
from haq.errors import HaqError
from haq.export.dynamic_int8 import replace_with_dynamic_int8
from haq.export.graph import GraphEditor, find_layer_nodes
from haq.export.matmul_nbits import (
    replace_with_matmul_nbits,
    uses_matmul_nbits,
)
from haq.io import atomic_write_bytes
from haq.quant import Quantizer
from haq.quant.modules import QuantLayer

OPSET = 21


@dataclass
class ExportReport:
    """How each layer was exported (``int8``, ``int8-weights``, ``matmulnbits``,
    ``dynamic-int8``, ``dynamic-int8-token``, ``fake-quant-float``, ``float``)."""

    layers: dict[str, str] = field(default_factory=dict)

    def counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for how in self.layers.values():
            out[how] = out.get(how, 0) + 1
        return out


#: (id(model), input shape) -> (model, graph) while inside `reuse_float_graph`; the model is
#: kept alive so its id stays unique
_float_graphs: dict[tuple[int, tuple[int, ...]], tuple[nn.Module, Any]] | None = None


@contextlib.contextmanager
def reuse_float_graph() -> Iterator[None]:
    """Export each model's float graph once while inside (torch.onnx.export dominates every
    `export_onnx` call: 2-8 s of ~0.3 s). Copies are handed out: the exporter edits them."""
    global _float_graphs
    outer = _float_graphs
    _float_graphs = {} if outer is None else outer
    try:
        yield
    finally:
        _float_graphs = outer


def export_float_graph(model: nn.Module, example_input: torch.Tensor) -> Any:
    """The float graph (onnx.ModelProto) of ``model`` at opset 21, input ``input``, output
    ``logits`` (a copy of the first export inside `reuse_float_graph`)."""
    if _float_graphs is None:
        return _export_float_graph(model, example_input)
    key = (id(model), tuple(example_input.shape))
    if key not in _float_graphs:
        _float_graphs[key] = (model, _export_float_graph(model, example_input))
    import onnx

    out = onnx.ModelProto()
    out.CopyFrom(_float_graphs[key][1])
    return out


def _export_float_graph(model: nn.Module, example_input: torch.Tensor) -> Any:
    import logging

    for noisy in ("torch.onnx", "onnxscript"):  # constant folding logs what it cannot fold
        logging.getLogger(noisy).setLevel(logging.ERROR)
    with warnings.catch_warnings(), _quiet():
        warnings.simplefilter("ignore")
        try:
            program = torch.onnx.export(
                model, (example_input,), dynamo=True, opset_version=OPSET,
                input_names=["input"], output_names=["logits"], verbose=False,
            )  # fmt: skip
        except Exception as e:  # the exporter's message spans pages: keep the op it names
            raise HaqError(f"{type(model).__name__} does not export to ONNX ({_export_cause(e)}); "
                           "haq exports, profiles and measures models through ONNX Runtime: "
                           "replace that op with one ONNX has, or run it outside the model "
                           "you pass to haq") from None  # fmt: skip
    return program.model_proto


def _export_cause(e: BaseException) -> str:
    """The op the exporter failed on (``aten._linalg_svd.default``), else its first line."""
    import re

    text = str(e)
    for cause in (e.__cause__, e.__context__):
        if cause is not None:
            text += "\n" + str(cause)
    m = re.search(r"target=(torch\.ops\.)?([\w.]+)", text)
    if m:
        return f"no ONNX conversion for {m.group(2)}"
    lines = [ln.strip() for ln in re.sub(r"\x1b\[[0-9;]*m", "", text).splitlines() if ln.strip()]
    return lines[0][:200] if lines else type(e).__name__


class _quiet:
    """Silence the exporter's progress prints (it writes to stdout)."""

    def __enter__(self) -> None:
        import contextlib
        import sys

        self._redirect = contextlib.redirect_stdout(io.StringIO())
        self._redirect.__enter__()
        self._sys = sys

    def __exit__(self, *exc: object) -> None:
        self._redirect.__exit__(*exc)


def export_onnx(
    quantizer: Quantizer,
    config: BitConfig | str,
    path: str | Path | None = None,
    batch: int = 1,
    accuracy_level: int | None = None,
) -> tuple[bytes, ExportReport]:
    """Serialized ONNX of ``config`` on ``quantizer``'s model (written atomically to ``path``).

    ``accuracy_level`` goes to every MatMulNBits node (default: the settings'
    ``matmulnbits_accuracy_level``, which the simulation models): 4 lets ORT quantize its
    input to int8 per block (fast), 0 computes in float. Another level than the settings'
    makes ORT differ from the simulation by that input rounding (~0.5 % relative).
    """
    from onnx import checker

    if accuracy_level is None:
        accuracy_level = quantizer.settings.matmulnbits_accuracy_level
    resolved = quantizer.resolve(config)
    quantizer = quantizer.for_config(resolved)  # the refinement the config names, if any
    qmodel = quantizer.apply(resolved)
    example = torch.zeros((batch, *quantizer.example_shape))
    model = export_float_graph(quantizer.base, example)
    g = GraphEditor(model)
    nodes = find_layer_nodes(g, quantizer.layer_names)
    report = ExportReport()
    layer_of_node: dict[str, str] = {}
    for name in quantizer.layer_names:
        precision = resolved[name]
        if name not in nodes:
            if not precision.is_float:
                raise HaqError(
                    f"layer {name} has no Conv/Gemm/MatMul node with weight '{name}.weight' in the exported graph; "
                    "keep it fp32 in the config or report the model to haq"
                )
            report.layers[name] = "float"
            continue
        idx = nodes[name]
        node = g.graph.node[idx]
        node.name = name
        layer_of_node[name] = name
        module = qmodel.get_submodule(name)
        if not isinstance(module, QuantLayer):
            report.layers[name] = "float"
            continue
        report.layers[name] = _export_layer(g, idx, node, name, module, accuracy_level)
    g.finish()
    meta = {"haq.layers": json.dumps(layer_of_node), "haq.config": resolved.to_json()}
    for k, v in meta.items():
        entry = model.metadata_props.add()
        entry.key, entry.value = k, v
    model.producer_name = "haq"
    checker.check_model(model)
    data = model.SerializeToString(deterministic=True)
    if path is not None:
        atomic_write_bytes(path, data)
    return data, report


def _export_layer(
    g: GraphEditor,
    idx: int,
    node: Any,
    name: str,
    m: QuantLayer,
    accuracy_level: int,
) -> str:
    from onnx import helper

    if uses_matmul_nbits(node, m):
        replace_with_matmul_nbits(g, idx, node, name, m, accuracy_level)
        return "matmulnbits"
    if m.dynamic is not None:
        return replace_with_dynamic_int8(g, idx, node, name, m)
    p = m.precision
    if node.op_type == "MatMul":  # a Linear on 3-D input: its bias is a separate Add
        raise HaqError(
            f"layer {name}: {p} on a MatMul (a Linear on token sequences) does not export yet; "
            "weight-only bits with group-wise weights export as MatMulNBits, w8a8 with dynamic "
            "activations (--activations dynamic) as dynamic int8, or keep it fp32"
        )
    transposed = node.op_type == "Gemm" and not any(
        a.name == "transB" and a.i == 1 for a in node.attribute
    )
    integer_weights = (
        p.w_bits is not None and p.w_bits <= 8 and m.granularity != "group" and m.w_int is not None
    )
    # Weights ------------------------------------------------------------------------------
    if integer_weights:
        assert m.w_int is not None and m.w_scale is not None
        w_int = m.w_int.numpy().astype(np.int8)
        scale = m.w_scale.reshape(-1).numpy().astype(np.float32)
        if transposed:
            w_int = w_int.T.copy()
        q = g.add_init(f"{name}.weight_quantized", w_int)
        axis_attrs: dict[str, int] = {}
        if scale.size > 1:
            axis_attrs["axis"] = 1 if transposed else 0
            s = g.add_init(f"{name}.weight_scale", scale)
            z = g.add_init(f"{name}.weight_zero_point", np.zeros(scale.shape, dtype=np.int8))
        else:
            s = g.add_init(f"{name}.weight_scale", scale.reshape(()))
            z = g.add_init(f"{name}.weight_zero_point", np.array(0, dtype=np.int8))
        dq = helper.make_node(
            "DequantizeLinear",
            [q, s, z],
            [f"{name}.weight_dq"],
            name=f"{name}.weight_DequantizeLinear",
            **axis_attrs,
        )
        g.before.setdefault(idx, []).append(dq)
        node.input[1] = f"{name}.weight_dq"
    else:  # the simulated (possibly fake-quantized) float weights, exactly
        w = m.weight.detach().numpy().astype(np.float32)
        node.input[1] = g.add_init(f"{name}.weight_sim", w.T.copy() if transposed else w)
    # Bias ---------------------------------------------------------------------------------
    integer = integer_weights and p.a_bits is not None and p.a_bits <= 8
    if m.bias is not None:
        bias = m.bias.detach().numpy().astype(np.float32)
        if integer:
            assert m.a_scale is not None and m.w_scale is not None
            b_scale = (
                np.float32(m.a_scale) * m.w_scale.reshape(-1).numpy().astype(np.float32)
            ).astype(np.float32)
            b_scale = np.broadcast_to(b_scale, bias.shape).copy()
            # saturate like the simulation (`quantize_bias`): a near-empty activation range
            # (a dead ReLU) makes the grid so fine that the bias leaves int32
            b_int = np.clip(np.round(bias / b_scale.astype(np.float64)), -(2**31), 2**31 - 1)
            b_int = b_int.astype(np.int32)
            bq = g.add_init(f"{name}.bias_quantized", b_int)
            bs = g.add_init(f"{name}.bias_scale", b_scale)
            bz = g.add_init(f"{name}.bias_zero_point", np.zeros(b_scale.shape, dtype=np.int32))
            dq = helper.make_node(
                "DequantizeLinear",
                [bq, bs, bz],
                [f"{name}.bias_dq"],
                name=f"{name}.bias_DequantizeLinear",
                axis=0,
            )
            g.before.setdefault(idx, []).append(dq)
            bias_name = f"{name}.bias_dq"
        else:
            bias_name = g.add_init(f"{name}.bias_sim", bias)
        if len(node.input) > 2:
            node.input[2] = bias_name
        else:
            node.input.append(bias_name)
    # Input activation ---------------------------------------------------------------------
    if p.a_bits is not None and m.a_scale is not None and m.a_zero_point is not None:
        source = node.input[0]
        node.input[0] = g.qdq(source, m.a_scale, m.a_zero_point, p.a_bits, idx, f"{name}.input")
        if m.input_shared:  # the simulation quantized this tensor for every reader
            g.rewire(source, node.input[0])
    # Output requantization ----------------------------------------------------------------
    if m.out_scale is not None and m.out_zero_point is not None:
        _requantize_output(g, idx, node, name, m.out_scale, m.out_zero_point)
    if integer:
        return "int8"
    return "int8-weights" if integer_weights else "fake-quant-float"


def _requantize_output(
    g: GraphEditor, idx: int, node: Any, name: str, scale: float, zp: int
) -> None:
    """uint8 Q/DQ right after the layer; a following ReLU is dropped when the zero point is 0."""
    from onnx import helper

    out = node.output[0]
    raw = f"{name}.output_raw"
    node.output[0] = raw
    s = g.add_init(f"{name}.output_scale", np.array(scale, dtype=np.float32))
    z = g.add_init(f"{name}.output_zero_point", np.array(zp, dtype=np.uint8))
    g.after.setdefault(idx, []).extend([
        helper.make_node("QuantizeLinear", [raw, s, z], [f"{name}.output_q"], name=f"{name}.output_QuantizeLinear"),
        helper.make_node("DequantizeLinear", [f"{name}.output_q", s, z], [out], name=f"{name}.output_DequantizeLinear"),
    ])  # fmt: skip
    if zp != 0:
        return
    for j, consumer in g.consumers(out):
        if consumer.op_type == "Relu" and consumer.output[0] not in g.outputs:
            relu_out = consumer.output[0]
            for _, c2 in g.consumers(relu_out):
                for k, inp in enumerate(c2.input):
                    if inp == relu_out:
                        c2.input[k] = out
            g.removed.add(j)
