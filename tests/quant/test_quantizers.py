"""The quantizer math agrees with ONNX Runtime's own quantization tool and kernels."""

import numpy as np
import onnxruntime as ort
import pytest
import torch
from onnx import TensorProto, helper
from onnxruntime.quantization.quant_utils import compute_scale_zp

from haq.quant.quantizers import (
    act_qparams,
    fake_quant_act,
    fake_quant_weight,
    quantize_bias,
    quantize_weight,
    weight_qrange,
)


def _qdq_session(scale: float, zp: int) -> ort.InferenceSession:
    graph = helper.make_graph(
        [
            helper.make_node("QuantizeLinear", ["x", "s", "z"], ["q"]),
            helper.make_node("DequantizeLinear", ["q", "s", "z"], ["y"]),
        ],
        "qdq",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [None])],
        [
            helper.make_tensor("s", TensorProto.FLOAT, [], [scale]),
            helper.make_tensor("z", TensorProto.UINT8, [], [zp]),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 19)])
    model.ir_version = 9
    return ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])


@pytest.mark.parametrize("lo,hi", [(-1.3, 4.7), (0.0, 6.0), (0.5, 2.0), (-3.0, -1.0)])
def test_act_qparams_match_ort(lo: float, hi: float) -> None:
    scale, zp = act_qparams(lo, hi, 8)
    zp_ref, scale_ref = compute_scale_zp(np.float32(lo), np.float32(hi), np.uint8(0), np.uint8(255))
    assert zp == int(zp_ref)
    assert np.float32(scale) == np.float32(scale_ref)


def test_fake_quant_act_matches_ort_kernel() -> None:
    torch.manual_seed(0)
    x = torch.randn(20000) * 3
    # values exactly half-way between grid points exercise round-half-to-even
    scale, zp = act_qparams(-4.0, 5.0, 8)
    halves = (torch.arange(-200, 200) + 0.5) * scale
    x = torch.cat([x, halves, torch.tensor([-1e6, 1e6])]).float()
    ours = fake_quant_act(x, scale, zp, 8)
    ref = _qdq_session(scale, zp).run(None, {"x": x.numpy()})[0]
    np.testing.assert_array_equal(ours.numpy(), ref)


def test_low_bit_activations_stay_on_grid() -> None:
    x = torch.linspace(-2, 10, 1001)
    scale, zp = act_qparams(-2, 10, 4)
    y = fake_quant_act(x, scale, zp, 4)
    levels = torch.unique(torch.round(y / scale) + zp)
    assert levels.min() >= 0 and levels.max() <= 15 and len(levels) >= 15


def test_weight_quant_per_channel_matches_ort_symmetric_int8() -> None:
    torch.manual_seed(0)
    w = torch.randn(16, 8, 3, 3)
    q, scale = quantize_weight(w, 8, "channel")
    for o in range(16):
        data = w[o].numpy().reshape(-1)
        zp_ref, scale_ref, q_ref = quantize_data_ref(data)
        assert float(zp_ref) == 0
        assert np.float32(scale[o, 0]) == np.float32(scale_ref)
        np.testing.assert_array_equal(q[o].numpy().reshape(-1), q_ref)


def quantize_data_ref(data: np.ndarray) -> tuple:
    from onnxruntime.quantization.quant_utils import quantize_data

    return quantize_data(data, TensorProto.INT8, symmetric=True)


@pytest.mark.parametrize("bits", [2, 3, 4, 6, 8, 16])
def test_weight_levels(bits: int) -> None:
    w = torch.randn(4, 300)
    q, _ = quantize_weight(w, bits, "channel")
    qmin, qmax = weight_qrange(bits)
    assert q.min() >= qmin and q.max() <= qmax
    # the largest magnitude of each row maps to the grid's end
    assert torch.all(q.abs().amax(dim=1) == qmax)


def test_granularity_error_ordering() -> None:
    torch.manual_seed(0)
    w = torch.randn(8, 256) * torch.logspace(-2, 0, 8)[:, None]  # rows with very different ranges
    err = {
        g: float((fake_quant_weight(w, 4, g, group_size=32) - w).pow(2).mean())
        for g in ("tensor", "channel", "group")
    }
    assert err["group"] < err["channel"] < err["tensor"]


def test_group_padding_keeps_shape() -> None:
    w = torch.randn(3, 5, 3, 3)  # K = 45, not a multiple of the group size
    assert fake_quant_weight(w, 4, "group", group_size=16).shape == w.shape


def test_zero_weights_are_safe() -> None:
    w = torch.zeros(2, 4)
    assert torch.equal(fake_quant_weight(w, 8), w)


def test_bias_on_int32_grid() -> None:
    b = torch.tensor([0.1234, -2.5, 0.0])
    w_scale = torch.tensor([[0.01], [0.02], [0.03]])
    qb = quantize_bias(b, 0.05, w_scale)
    grid = (0.05 * w_scale.reshape(-1)).float()
    k = qb / grid
    assert torch.allclose(k, torch.round(k), atol=1e-3)
    assert torch.allclose(qb, b, atol=float(grid.max()) / 2 + 1e-7)


def _dynamic_qdq_session() -> ort.InferenceSession:
    graph = helper.make_graph(
        [
            helper.make_node("DynamicQuantizeLinear", ["x"], ["q", "s", "z"]),
            helper.make_node("DequantizeLinear", ["q", "s", "z"], ["y"]),
        ],
        "dqdq",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, None])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, None])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 21)])
    return ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])


@pytest.mark.parametrize("shift", [0.0, 3.0, -3.0])
def test_fake_quant_dynamic_is_dynamic_quantize_linear_per_input(shift: float) -> None:
    from haq.quant.quantizers import fake_quant_dynamic

    sess = _dynamic_qdq_session()
    x = torch.randn(4, 6, 32) * torch.tensor([0.1, 1.0, 5.0, 20.0]).reshape(4, 1, 1) + shift
    x[3] = 0.0  # an empty range: scale 1, every value 0
    sim = fake_quant_dynamic(x)
    for i in range(len(x)):  # ORT at batch 1: each input's own grid
        ref = sess.run(None, {"x": x[i].numpy()})[0]
        np.testing.assert_array_equal(sim[i].numpy(), ref)


@pytest.mark.parametrize("shift", [0.0, 3.0, -3.0])
def test_fake_quant_dynamic_per_token_is_dynamic_quantize_linear_per_row(shift: float) -> None:
    from haq.quant.quantizers import fake_quant_dynamic

    sess = _dynamic_qdq_session()
    x = torch.randn(2, 6, 32) + shift
    x[0, 2] *= 50.0  # an outlier token coarsens its own grid only
    x[1, 4] = 0.0  # an empty row: every value 0
    sim = fake_quant_dynamic(x, "token")
    for i in range(len(x)):
        for t in range(x.shape[1]):
            ref = sess.run(None, {"x": x[i, t : t + 1].numpy()})[0]
            np.testing.assert_array_equal(sim[i, t : t + 1].numpy(), ref)
    per_tensor = fake_quant_dynamic(x, "tensor")
    rest = [t for t in range(6) if t != 2]
    err = {g: float((y[0, rest] - x[0, rest]).abs().max()) for g, y in
           (("token", sim), ("tensor", per_tensor))}  # fmt: skip
    assert err["token"] < err["tensor"] / 10


def test_asymmetric_weights_match_ort_uint8_per_group() -> None:
    """Asymmetric weights are ORT's asymmetric uint8 quantization of each group (range
    widened to 0, zero point round(-min / scale)), stored centred: q - zero point."""
    from onnxruntime.quantization.quant_utils import quantize_data

    torch.manual_seed(3)
    w = torch.randn(6, 64) + torch.linspace(-1.5, 1.5, 6)[:, None]  # skewed rows
    q, scale = quantize_weight(w, 8, "group", group_size=32, symmetric=False)
    for o in range(6):
        for g in range(2):
            data = w[o, 32 * g : 32 * (g + 1)].numpy()
            zp_ref, scale_ref, q_ref = quantize_data(data, TensorProto.UINT8, symmetric=False)
            assert np.float32(scale[o, g, 0]) == pytest.approx(np.float32(scale_ref), rel=1e-6)
            got = q[o, 32 * g : 32 * (g + 1)].numpy() + float(zp_ref)
            np.testing.assert_array_equal(got, q_ref)


@pytest.mark.parametrize("bits", [2, 4, 8])
def test_asymmetric_grid_uses_every_level_and_beats_symmetric_on_skewed_groups(bits: int) -> None:
    torch.manual_seed(4)
    w = torch.rand(8, 128) * 2 - 0.3  # mostly positive: a symmetric grid wastes its lower half
    q, scale = quantize_weight(w, bits, "group", group_size=32, symmetric=False)
    per = q.reshape(8, 4, 32).amax(dim=2) - q.reshape(8, 4, 32).amin(dim=2)
    assert int(per.max()) == 2**bits - 1  # min and max of a group land on the grid's ends
    err = {
        sym: float((fake_quant_weight(w, bits, "group", 32, sym) - w).pow(2).mean())
        for sym in (True, False)
    }
    assert err[False] < 0.6 * err[True]
