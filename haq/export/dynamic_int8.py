"""Dynamic int8 Linear layers: each input quantized on the uint8 grid of its own range at run time.

Per tensor (``activations="dynamic"``): ``DynamicQuantizeLinear(A) -> MatMulInteger(A_q, W_q,
A_zp, W_zp) -> Cast(float) -> Mul(., A_scale * W_scale) [-> Add(bias)]`` is what ORT's
``quantize_dynamic`` writes; ORT's ``DynamicQuantizeMatMulFusion`` turns it into one
``com.microsoft.DynamicQuantizeMatMul`` that finds the input's range, quantizes it to uint8 and
runs the uint8 x int8 GEMM (checked against ORT 1.32.0, per-channel weight scales included:
tests/export/test_dynamic_int8.py).

Per token (``activations="dynamic-token"``): one grid per row of the input. ORT has no fused
kernel for it (``DynamicQuantizeLinear`` and ``MatMulIntegerToFloat`` take one scale and zero
point, and the CPU ``MatMulInteger`` takes a scalar input zero point), so the grid is computed
with plain ops (``ReduceMin``/``ReduceMax`` over the last axis, the same scale and zero-point
arithmetic as ``DynamicQuantizeLinear``, on the per-row values only), one blocked
``QuantizeLinear`` (opset 21, one block per row: ORT's vectorised kernel, bit-identical to the
elementwise ops and a third of their time on a 128 x 1536 input) makes the rows uint8 with
their zero points, and ``MatMulInteger`` runs them against the int8 weights with no zero point; the zero point comes
back out as ``zp_row * sum_k W[k, n]`` (a constant per output column) before the per-row and
per-column scales. ORT's common-subexpression pass quantizes an input read by several Linears
(q, k, v) once.

The simulation (`haq.quant.quantizers.fake_quant_dynamic`) computes the same grids.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from haq.export.graph import GraphEditor
from haq.quant.modules import QuantLayer


def replace_with_dynamic_int8(g: GraphEditor, idx: int, node: Any, name: str, m: QuantLayer) -> str:
    """Replace node ``idx`` (a Linear's MatMul or Gemm) by the dynamic int8 pattern of ``m``'s
    grid computing its simulated output; a MatMul's bias ``Add`` is absorbed (its float bias is
    kept). Returns the export kind (``dynamic-int8`` or ``dynamic-int8-token``)."""
    from onnx import TensorProto, helper

    assert m.w_int is not None and m.w_scale is not None
    w_int = m.w_int.detach().reshape(m.w_int.shape[0], -1).numpy()
    n = w_int.shape[0]
    scale = np.broadcast_to(m.w_scale.detach().reshape(-1).numpy(), (n,)).astype(np.float32)
    w_int8 = np.ascontiguousarray(np.rint(w_int).T).astype(np.int8)
    w_q = g.add_init(f"{name}.weight_quantized", w_int8)
    w_s = g.add_init(f"{name}.weight_scale", scale)
    output, absorbed = g.absorb_bias_add(node, name)
    with_bias = m.bias is not None and absorbed  # else the graph's own bias path stays
    a, t = node.input[0], f"{name}.input"
    if m.dynamic == "token":
        colsum = g.add_init(
            f"{name}.weight_colsum", w_int8.sum(0, dtype=np.int64).astype(np.float32)
        )
        nodes, accumulator = _per_token(g, a, t, w_q, colsum, name, w_int8.shape[0])
        row_scale: list[str] = [f"{t}_scale"]
        kind = "dynamic-int8-token"
    else:
        w_z = g.add_init(f"{name}.weight_zero_point", np.zeros(n, dtype=np.int8))
        nodes = [
            helper.make_node("DynamicQuantizeLinear", [a], [f"{t}_q", f"{t}_scale", f"{t}_zero_point"],
                             name=f"{t}_DynamicQuantizeLinear"),
            helper.make_node("MatMulInteger", [f"{t}_q", w_q, f"{t}_zero_point", w_z],
                             [f"{name}.int32"], name=name),
            helper.make_node("Cast", [f"{name}.int32"], [f"{name}.int32_float"], name=f"{name}.Cast",
                             to=TensorProto.FLOAT),
            helper.make_node("Mul", [f"{t}_scale", w_s], [f"{name}.multiplier"], name=f"{name}.scale_Mul"),
        ]  # fmt: skip
        accumulator, row_scale, w_s = f"{name}.int32_float", [], f"{name}.multiplier"
        kind = "dynamic-int8"
    if row_scale:
        nodes.append(helper.make_node("Mul", [accumulator, *row_scale], [f"{name}.row_scaled"],
                                      name=f"{name}.row_Mul"))  # fmt: skip
        accumulator = f"{name}.row_scaled"
    product = f"{name}.product" if with_bias else output
    nodes.append(helper.make_node("Mul", [accumulator, w_s], [product], name=f"{name}.Mul"))
    if with_bias:
        assert m.bias is not None
        bias = g.add_init(f"{name}.bias_sim", m.bias.detach().numpy().astype(np.float32).reshape(n))
        nodes.append(helper.make_node("Add", [product, bias], [output], name=f"{name}.bias_Add"))
    g.before.setdefault(idx, []).extend(nodes)
    g.removed.add(idx)
    return kind


def _per_token(
    g: GraphEditor, a: str, t: str, w_q: str, colsum: str, name: str, k: int
) -> tuple[list[Any], str]:
    """Nodes quantizing each row (``k`` values) of ``a`` on the uint8 grid of its own range
    (with 0) and the float accumulator ``sum_k (a_q[k] - zp) W[k, n]`` they end in;
    ``{t}_scale`` holds the rows' scales."""
    from onnx import TensorProto, helper

    zero = g.add_init(f"{t}.zero", np.array(0.0, np.float32))
    top = g.add_init(f"{t}.q255", np.array(255.0, np.float32))
    # an all-zero row: any positive scale quantizes it to 0 with zero point 0, as scale 1 does
    tiny = g.add_init(f"{t}.tiny", np.array(np.finfo(np.float32).tiny, np.float32))
    axes = g.add_init(f"{t}.axes", np.array([-1], np.int64))

    def op(op_type: str, inputs: list[str], out: str, **attrs: Any) -> Any:
        return helper.make_node(
            op_type, inputs, [f"{t}_{out}"], name=f"{t}_{out}_{op_type}", **attrs
        )

    nodes = [
        op("ReduceMin", [a, axes], "min", keepdims=1),
        op("ReduceMax", [a, axes], "max", keepdims=1),
        op("Min", [f"{t}_min", zero], "lo"),
        op("Max", [f"{t}_max", zero], "hi"),
        op("Sub", [f"{t}_hi", f"{t}_lo"], "range"),
        op("Div", [f"{t}_range", top], "step"),
        op("Max", [f"{t}_step", tiny], "scale"),
        op("Neg", [f"{t}_lo"], "neg_lo"),
        op("Div", [f"{t}_neg_lo", f"{t}_scale"], "zp_float"),
        op("Clip", [f"{t}_zp_float", zero, top], "zp_clipped"),
        op("Round", [f"{t}_zp_clipped"], "zero_point"),
        op("Cast", [f"{t}_zero_point"], "zero_point_u8", to=TensorProto.UINT8),
        # saturate(round(a / scale) + zp) per row: the elementwise ops' result, one pass
        op("QuantizeLinear", [a, f"{t}_scale", f"{t}_zero_point_u8"], "q", axis=-1, block_size=k),
        helper.make_node("MatMulInteger", [f"{t}_q", w_q], [f"{name}.int32"], name=name),
        helper.make_node("Cast", [f"{name}.int32"], [f"{name}.int32_float"], name=f"{name}.Cast",
                         to=TensorProto.FLOAT),
        helper.make_node("Mul", [f"{t}_zero_point", colsum], [f"{name}.zp_sum"],
                         name=f"{name}.zp_Mul"),
        helper.make_node("Sub", [f"{name}.int32_float", f"{name}.zp_sum"], [f"{name}.accumulated"],
                         name=f"{name}.zp_Sub"),
    ]  # fmt: skip
    return nodes, f"{name}.accumulated"
