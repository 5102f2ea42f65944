"""Dynamic int8 Linear layers as the ONNX pattern ONNX Runtime fuses into ``DynamicQuantizeMatMul``.

``DynamicQuantizeLinear(A) -> MatMulInteger(A_q, W_q, A_zp, W_zp) -> Cast(float) ->
Mul(., A_scale * W_scale) [-> Add(bias)]`` is what ORT's ``quantize_dynamic`` writes; ORT's
``DynamicQuantizeMatMulFusion`` turns it into one ``com.microsoft.DynamicQuantizeMatMul`` that
finds the input's range, quantizes it to uint8 and runs the uint8 x int8 GEMM (checked against
ORT 1.32.0, per-channel weight scales included: tests/export/test_dynamic_int8.py). The
simulation (`haq.quant.quantizers.fake_quant_dynamic`) computes the same numbers.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from haq.quant.modules import QuantLayer

if TYPE_CHECKING:
    from haq.export.onnx_export import _Graph


def replace_with_dynamic_int8(g: _Graph, idx: int, node: Any, name: str, m: QuantLayer) -> None:
    """Replace node ``idx`` (a Linear's MatMul or Gemm) by the dynamic int8 pattern computing
    ``m``'s simulated output; a MatMul's bias ``Add`` is absorbed (its float bias is kept)."""
    from onnx import TensorProto, helper

    assert m.w_int is not None and m.w_scale is not None
    w_int = m.w_int.detach().reshape(m.w_int.shape[0], -1).numpy()
    n = w_int.shape[0]
    scale = np.broadcast_to(m.w_scale.detach().reshape(-1).numpy(), (n,)).astype(np.float32)
    w_q = g.add_init(
        f"{name}.weight_quantized", np.ascontiguousarray(np.rint(w_int).T).astype(np.int8)
    )
    w_s = g.add_init(f"{name}.weight_scale", scale)
    w_z = g.add_init(f"{name}.weight_zero_point", np.zeros(n, dtype=np.int8))
    output, absorbed = g.absorb_bias_add(node, name)
    with_bias = m.bias is not None and absorbed  # else the graph's own bias path stays
    a, t = node.input[0], f"{name}.input"
    nodes = [
        helper.make_node("DynamicQuantizeLinear", [a], [f"{t}_q", f"{t}_scale", f"{t}_zero_point"],
                         name=f"{t}_DynamicQuantizeLinear"),
        helper.make_node("MatMulInteger", [f"{t}_q", w_q, f"{t}_zero_point", w_z],
                         [f"{name}.int32"], name=name),
        helper.make_node("Cast", [f"{name}.int32"], [f"{name}.int32_float"], name=f"{name}.Cast",
                         to=TensorProto.FLOAT),
        helper.make_node("Mul", [f"{t}_scale", w_s], [f"{name}.multiplier"], name=f"{name}.scale_Mul"),
    ]  # fmt: skip
    product = f"{name}.product" if with_bias else output
    nodes.append(helper.make_node("Mul", [f"{name}.int32_float", f"{name}.multiplier"], [product],
                                  name=f"{name}.Mul"))  # fmt: skip
    if with_bias:
        assert m.bias is not None
        bias = g.add_init(f"{name}.bias_sim", m.bias.detach().numpy().astype(np.float32).reshape(n))
        nodes.append(helper.make_node("Add", [product, bias], [output], name=f"{name}.bias_Add"))
    g.before.setdefault(idx, []).extend(nodes)
    g.removed.add(idx)
