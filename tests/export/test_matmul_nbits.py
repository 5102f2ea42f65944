"""Weight-only group-quantized Linear layers export as ORT's MatMulNBits and match haq's
simulation; other bit widths and granularities stay on the QDQ / fake-quant path."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
import torch
from torch import nn

from haq import BitConfig
from haq.errors import HaqError
from haq.evaluate import predict
from haq.export.graph import GraphEditor
from haq.export.matmul_nbits import (
    pack_weights,
    pack_zero_points,
    replace_with_matmul_nbits,
    zero_points,
)
from haq.export.onnx_export import export_float_graph, export_onnx
from haq.quant import Quantizer
from haq.quant.settings import QuantSettings
from haq.runtime.ort import executed_ops, make_session

LAYERS = ["1", "3", "5"]  # K = 64, 128, 48: the last one ends in a partial block of 32


def _mlp() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Flatten(), nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 48), nn.ReLU(),
        nn.Linear(48, 10),
    )  # fmt: skip


@pytest.fixture(scope="module")
def mlp() -> tuple[Quantizer, torch.Tensor]:
    x = torch.randn(8, 1, 8, 8, generator=torch.Generator().manual_seed(1))
    return _mlp_quantizer(x, level=0), x


def _ort(data: bytes, x: torch.Tensor) -> np.ndarray:
    sess = make_session(data, threads=1)
    return np.concatenate(
        [sess.run(None, {"input": x[i : i + 1].numpy()})[0] for i in range(len(x))]
    )


def _rel_err(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a - b).max() / np.abs(b).max())


def _ops_by_layer(data: bytes) -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    for row in executed_ops(data).itertuples():
        if isinstance(row.layer, str):
            out.setdefault(row.layer, set()).add(row.op_type)
    return out


def test_pack_weights_layout() -> None:
    q = np.arange(-7, 9).clip(-7, 7).reshape(1, 16)  # -7..7, 7
    packed = pack_weights(q, 4, 16)
    assert packed.shape == (1, 1, 8) and packed.dtype == np.uint8
    u = q[0] + 8
    assert packed[0, 0, 0] == u[0] | (u[1] << 4)  # low nibble first
    q2 = np.array([[-1, 0, 1, 1] + [0] * 12])
    assert pack_weights(q2, 2, 16)[0, 0, 0] == 1 | (2 << 2) | (3 << 4) | (3 << 6)
    q8 = np.array([[-127, 127] + [0] * 15])  # K = 17: a partial second block, padded with 128
    p8 = pack_weights(q8, 8, 16)
    assert p8.shape == (1, 2, 16) and p8[0, 0, :2].tolist() == [1, 255]
    assert set(p8[0, 1].tolist()) == {128}


@pytest.mark.parametrize("spec", ["w4a32", "w8a32", "w2a32"])
def test_matmul_nbits_matches_simulation(mlp, spec: str) -> None:
    q, x = mlp
    data, report = export_onnx(q, spec, accuracy_level=0)
    assert report.layers == dict.fromkeys(LAYERS, "matmulnbits")
    assert report.counts() == {"matmulnbits": 3}
    assert _rel_err(_ort(data, x), predict(q.apply(spec), x).numpy()) < 1e-4
    by_layer = _ops_by_layer(data)
    assert all(by_layer[name] == {"MatMulNBits"} for name in LAYERS), by_layer
    model = onnx.load_from_string(data)
    nodes = {n.name: n for n in model.graph.node}
    bits = int(spec[1])
    for name in LAYERS:
        n = nodes[name]
        attrs = {a.name: onnx.helper.get_attribute_value(a) for a in n.attribute}
        assert (n.op_type, n.domain) == ("MatMulNBits", "com.microsoft")
        assert attrs["bits"] == bits and attrs["block_size"] == 32 and attrs["accuracy_level"] == 0
    meta = {p.key: p.value for p in model.metadata_props}
    assert json.loads(meta["haq.layers"]) == {name: name for name in LAYERS}


@pytest.mark.parametrize("spec", ["w4a32", "w8a32", "w2a32"])
def test_default_accuracy_level_int8_inputs_are_simulated(mlp, spec: str) -> None:
    """At accuracy_level 4 (the default) ORT quantizes each input row to int8 per block of
    K (scale absmax / 127); the simulation does the same, partial last block included."""
    _, x = mlp
    q = Quantizer(_mlp(), x[:1], QuantSettings(granularity="group", group_size=32))
    data, report = export_onnx(q, spec)
    assert set(report.layers.values()) == {"matmulnbits"}
    nodes = [n for n in onnx.load_from_string(data).graph.node if n.op_type == "MatMulNBits"]
    assert {a.i for n in nodes for a in n.attribute if a.name == "accuracy_level"} == {4}
    sim = predict(q.apply(spec), x).numpy()
    assert _rel_err(_ort(data, x), sim) < 1e-4
    float_inputs = predict(_mlp_quantizer(x, level=0).apply(spec), x).numpy()
    assert _rel_err(float_inputs, sim) > 1e-3  # the int8 input rounding is visible


def _mlp_quantizer(x: torch.Tensor, level: int, mapping: str = "symmetric") -> Quantizer:
    settings = QuantSettings(granularity="group", group_size=32, matmulnbits_accuracy_level=level,
                             weight_only_mapping=mapping)  # fmt: skip
    return Quantizer(_mlp(), x[:1], settings)


def test_zero_points_layout() -> None:
    q = np.array([[0, 15] + [3] * 14 + [-2, 1] + [0] * 14])  # two blocks of 16: 0..15, -2..1
    zp = zero_points(q, 4, 16)
    assert zp is not None and zp.tolist() == [[0, 2]]
    assert pack_zero_points(zp, 4).tolist() == [[0 | (2 << 4)]]
    packed = pack_weights(q, 4, 16, zp)
    assert packed[0, 0, 0] == 0 | (15 << 4) and packed[0, 1, 0] == 0 | (3 << 4)
    assert zero_points(np.array([[-8, 7]]), 4, 16) is None  # fits the default zero point 8
    three = np.array([[5, 0, 0], [0, 0, 0]])  # 3 blocks of 16 at 2 bits: 6 bits a row
    zp2 = zero_points(np.repeat(three - 2, 16, axis=1), 2, 16)
    assert zp2 is not None and pack_zero_points(zp2, 2).shape == (2, 1)


@pytest.mark.parametrize("spec", ["w4a32", "w8a32", "w2a32"])
@pytest.mark.parametrize("level", [0, 4])
def test_asymmetric_weights_match_simulation(spec: str, level: int) -> None:
    """Zero points per group: 2^bits levels on each group's [min, max] (with 0); ORT's
    MatMulNBits with zero_points computes what the simulation does, at both accuracy levels,
    and the grid is finer than the symmetric one on the same weights."""
    x = torch.randn(8, 1, 8, 8, generator=torch.Generator().manual_seed(1))
    q = _mlp_quantizer(x, level, "asymmetric")
    data, report = export_onnx(q, spec)
    assert set(report.layers.values()) == {"matmulnbits"}
    nodes = [n for n in onnx.load_from_string(data).graph.node if n.op_type == "MatMulNBits"]
    assert all(len(n.input) >= 4 and n.input[3] for n in nodes)  # zero points given
    sim = predict(q.apply(spec), x).numpy()
    assert _rel_err(_ort(data, x), sim) < 1e-4
    sym = _mlp_quantizer(x, level)
    assert sym.settings.weight_symmetric(q.resolve(spec)["1"])
    assert not q.settings.weight_symmetric(q.resolve(spec)["1"])
    w = q.base.get_submodule("1").weight
    err = {name: float((qz.apply(spec).get_submodule("1").weight - w).pow(2).mean())
           for name, qz in (("asym", q), ("sym", sym))}  # fmt: skip
    assert err["asym"] < err["sym"]


def test_asymmetric_needs_group_wise_weight_only_layers() -> None:
    with pytest.raises(HaqError, match="asymmetric weights apply to group-wise") as err:
        QuantSettings(weight_only_mapping="asymmetric")
    assert "\n" not in str(err.value)
    s = QuantSettings(weight_only_granularity="group", weight_only_mapping="asymmetric")
    from haq.config import Precision

    assert s.weight_symmetric(Precision.parse("w8a8"))  # int8 kernels take no zero point
    assert s.to_dict()["weight_only_mapping"] == "asymmetric"
    assert "weight_only_mapping" not in QuantSettings().to_dict()  # cache keys unchanged


def test_three_bits_and_mixed_stay_on_fallback(mlp) -> None:
    q, x = mlp
    config = BitConfig({"1": "w3a32", "3": "w4a32", "5": "fp32"})
    data, report = export_onnx(q, config, accuracy_level=0)
    assert report.layers == {"1": "fake-quant-float", "3": "matmulnbits", "5": "float"}
    assert _rel_err(_ort(data, x), predict(q.apply(config), x).numpy()) < 1e-4
    by_layer = _ops_by_layer(data)
    assert "MatMulNBits" not in by_layer["1"] | by_layer["5"]
    assert by_layer["3"] == {"MatMulNBits"}


def test_channel_granularity_keeps_int8_weights() -> None:
    x = torch.randn(1, 1, 8, 8)
    q = Quantizer(_mlp(), x, QuantSettings(granularity="channel"))
    _, report = export_onnx(q, "w4a32")
    assert set(report.layers.values()) == {"int8-weights"}


@pytest.mark.parametrize("group_size", [24, 8])
def test_group_size_must_be_power_of_two_at_least_16(group_size: int) -> None:
    x = torch.randn(1, 1, 8, 8)
    q = Quantizer(_mlp(), x, QuantSettings(granularity="group", group_size=group_size))
    with pytest.raises(HaqError, match="power of two >= 16") as err:
        export_onnx(q, "w4a32")
    assert "\n" not in str(err.value)
    if group_size == 24:  # a width MatMulNBits does not take has no constraint
        _, report = export_onnx(q, "w3a32")
        assert set(report.layers.values()) == {"fake-quant-float"}


class _Tokens(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(2)
        self.a = nn.Linear(64, 96)
        self.b = nn.Linear(96, 16, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.b(torch.relu(self.a(x)))


def test_matmul_node_with_bias_add_is_replaced() -> None:
    """A Linear on 3-D input exports as MatMul (+ Add of the bias): both become one node."""
    x = torch.randn(1, 5, 64)
    q = Quantizer(
        _Tokens(),
        x,
        QuantSettings(granularity="group", group_size=16, matmulnbits_accuracy_level=0),
    )
    qmodel = q.apply("w4a32")
    g = GraphEditor(export_float_graph(q.base, x))
    matmuls = [i for i, n in enumerate(g.graph.node) if n.op_type == "MatMul"]
    assert len(matmuls) == 2
    for name, idx in zip(["a", "b"], matmuls, strict=True):
        node = g.graph.node[idx]
        replace_with_matmul_nbits(g, idx, node, name, qmodel.get_submodule(name), 0)
    g.finish()
    ops = [n.op_type for n in g.graph.node]
    assert ops == ["MatMulNBits", "Relu", "MatMulNBits"]
    onnx.checker.check_model(g.model)
    out = make_session(g.model.SerializeToString()).run(None, {"input": x.numpy()})[0]
    with torch.no_grad():
        sim = qmodel(x).numpy()
    assert _rel_err(out, sim) < 1e-4
