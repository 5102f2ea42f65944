"""Linear layers under dynamic activations export as the pattern ORT fuses into
DynamicQuantizeMatMul (one grid per input) or as MatMulInteger on per-token grids, and ORT
computes what haq simulates."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from haq import BitConfig
from haq.errors import HaqError
from haq.evaluate import predict
from haq.export.onnx_export import export_onnx
from haq.quant import Quantizer
from haq.quant.settings import QuantSettings
from haq.runtime.machine import has_vnni
from haq.runtime.ort import executed_ops, make_session


class _TokenNet(nn.Module):
    """Linears on token sequences (exported as MatMul + bias Add) and a 2-D head (Gemm)."""

    def __init__(self) -> None:
        super().__init__()
        self.up = nn.Linear(32, 64)
        self.down = nn.Linear(64, 32)
        self.head = nn.Linear(32, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.down(nn.functional.gelu(self.up(x))).mean(dim=1))


def _net(activations: str) -> tuple[Quantizer, torch.Tensor]:
    torch.manual_seed(0)
    x = torch.randn(6, 10, 32)
    x[2] *= 8.0  # inputs of very different ranges: each gets its own grid
    x[4, 3] *= 30.0  # and an outlier token
    settings = QuantSettings(
        activations=activations, weight_only_granularity="group", group_size=16
    )
    return Quantizer(_TokenNet().eval(), x[:1], settings), x


@pytest.fixture(scope="module")
def net() -> tuple[Quantizer, torch.Tensor]:
    return _net("dynamic")


def _ort(data: bytes, x: torch.Tensor) -> np.ndarray:
    sess = make_session(data, threads=1)
    return np.concatenate(
        [sess.run(None, {"input": x[i : i + 1].numpy()})[0] for i in range(len(x))]
    )


# 7-bit weights: uint8 x int7 pair sums stay inside int16, so ORT's AVX2 kernels (no VNNI),
# which saturate pairs of products at int16, compute exactly too
BITS = ["w7a8", "w8a8"] if has_vnni() else ["w7a8"]


# activation mode -> (export kind, the op ORT runs each layer's product with)
MODES = {"dynamic": ("dynamic-int8", "DynamicQuantizeMatMul"),
         "dynamic-token": ("dynamic-int8-token", "MatMulInteger")}  # fmt: skip


@pytest.mark.parametrize("bits", BITS)
@pytest.mark.parametrize("activations", MODES)
def test_dynamic_int8_runs_its_kernel_and_matches_the_simulation(
    activations: str, bits: str
) -> None:
    q, x = _net(activations)
    kind, op = MODES[activations]
    config = BitConfig.uniform(bits, q.layer_names)
    data, report = export_onnx(q, config)
    assert report.layers == dict.fromkeys(q.layer_names, kind)
    ops = executed_ops(data)
    by_layer = {r.layer: r.op_type for r in ops.itertuples() if r.op_type in
                ("DynamicQuantizeMatMul", "MatMulInteger", "MatMul", "Gemm", "FusedMatMul")}  # fmt: skip
    assert by_layer == dict.fromkeys(q.layer_names, op)
    if activations == "dynamic":
        assert not set(ops.op_type) & {"MatMulInteger", "DynamicQuantizeLinear", "Cast"}
    sim = predict(q.apply(config), x, len(x)).numpy()
    np.testing.assert_allclose(_ort(data, x), sim, rtol=0, atol=2e-5 * np.abs(sim).max())
    float_out = predict(q.float_model, x, len(x)).numpy()
    assert np.abs(sim - float_out).max() > 1e-3  # it did quantize


def test_mixed_kernels_in_one_model(net: tuple[Quantizer, torch.Tensor]) -> None:
    q, x = net
    config = BitConfig({"up": "w4a32", "down": "w7a8", "head": "fp32"})
    data, report = export_onnx(q, config)
    assert report.layers == {"up": "matmulnbits", "down": "dynamic-int8", "head": "float"}
    up = q.apply(config).get_submodule("up")
    assert up.granularity == "group" and up.w_scale.numel() == 64 * 2  # weight-only: groups
    assert q.apply(config).get_submodule("down").w_scale.numel() == 32  # int8: per channel
    sim = predict(q.apply(config), x, len(x)).numpy()
    ort = make_session(data, threads=1)
    ref = np.concatenate([ort.run(None, {"input": x[i : i + 1].numpy()})[0] for i in range(len(x))])
    np.testing.assert_allclose(ref, sim, rtol=0, atol=2e-5 * np.abs(sim).max())


def test_dynamic_needs_no_calibration_and_refuses_what_it_cannot_run(
    net: tuple[Quantizer, torch.Tensor],
) -> None:
    q, _ = net
    assert q.calibration is None
    assert not q.settings.calibrates(BitConfig.uniform("w8a8", q.layer_names))
    assert QuantSettings().calibrates(BitConfig.uniform("w8a8", q.layer_names))
    with pytest.raises(HaqError, match="w4a4 under dynamic activations"):
        q.apply(BitConfig.uniform("w4a4", q.layer_names))
    conv = Quantizer(nn.Sequential(nn.Conv2d(3, 4, 3)), torch.zeros(1, 3, 8, 8),
                     QuantSettings(activations="dynamic"))  # fmt: skip
    with pytest.raises(HaqError, match="Linear layers only"):
        conv.apply(BitConfig.uniform("w8a8", conv.layer_names))
    grouped = Quantizer(_TokenNet().eval(), torch.zeros(1, 4, 32),
                        QuantSettings(activations="dynamic", granularity="group", group_size=16))  # fmt: skip
    with pytest.raises(HaqError, match="per-channel or per-tensor"):
        grouped.apply(BitConfig.uniform("w8a8", grouped.layer_names))
    with pytest.raises(HaqError, match="activation quantization"):
        QuantSettings(activations="per-token")
