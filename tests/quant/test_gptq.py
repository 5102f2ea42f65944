"""GPTQ: on round-to-nearest's grid, a lower output error than round-to-nearest and the
optimal rounding of one column given the others; learned once per (layer, bits, granularity),
group-wise weight-only layers of a token model included, and exported as simulated."""

from __future__ import annotations

import itertools
from dataclasses import replace

import numpy as np
import onnx
import pytest
import torch
from torch import nn

from haq import BitConfig, HaqError
from haq.quant import Quantizer, QuantSettings
from haq.quant.adaround import output_error
from haq.quant.gptq import gptq
from haq.quant.input_moments import input_moments
from haq.quant.quantizers import (
    per_weight,
    quantize_weight,
    weight_grid,
    weight_qrange,
    weight_scales,
)
from tests.quant.test_adaround import _images, _net


@pytest.mark.parametrize(("layer", "granularity", "symmetric"),
                         [("0", "channel", True), ("2", "channel", True), ("8", "channel", True),
                          ("0", "group", True), ("0", "group", False), ("8", "group", False)])  # fmt: skip
def test_gptq_beats_nearest_on_the_same_grid(layer: str, granularity: str, symmetric: bool) -> None:
    net, x = _net(), _images(64)
    w = net.get_submodule(layer).weight.detach()
    moments = input_moments(net, [layer], x)[layer]
    r = gptq(w, moments, bits=3, granularity=granularity, group_size=9, symmetric=symmetric)
    assert r.error < 0.9 * r.nearest_error
    rows = w.reshape(w.shape[0], -1)
    scale, lo, hi = (per_weight(w, t, granularity, 9)
                     for t in weight_grid(w, 3, granularity, 9, symmetric))  # fmt: skip
    s = per_weight(w, weight_scales(w, 3, granularity, 9, symmetric), granularity, 9)
    assert torch.equal(s, scale)
    q = r.w_int.reshape(rows.shape)
    assert torch.equal(q, q.round()) and bool((q >= lo).all()) and bool((q <= hi).all())
    if symmetric:
        assert torch.equal(lo, torch.full_like(lo, weight_qrange(3)[0]))
    else:  # a zero point per group: 8 levels, ends where the group's min and max are
        assert torch.equal(hi - lo, torch.full_like(lo, 7))
    d = rows - q * s
    assert float(output_error(d, moments)) == pytest.approx(r.error, rel=1e-4)


def test_gptq_is_the_best_rounding_of_a_two_column_layer() -> None:
    """With two input columns GPTQ rounds the first to nearest and the second optimally given
    the first: no other pair of grid values within a step does better."""
    torch.manual_seed(1)
    w = torch.randn(1, 2)
    x = torch.randn(200, 1) @ torch.ones(1, 2) + 0.2 * torch.randn(200, 2)  # correlated
    h = (x.T @ x / len(x)).unsqueeze(0)
    r = gptq(w, h, bits=2, damp=0.0)
    s = float(weight_scales(w, 2).reshape(()))
    lo, hi = weight_qrange(2)
    best = min(
        float(output_error(w - torch.tensor([[a, b]]) * s, h))
        for a, b in itertools.product(range(lo, hi + 1), repeat=2)
        if a == round(float(w[0, 0]) / s)  # the first column is rounded to nearest
    )
    assert r.error == pytest.approx(best, rel=1e-5)


class _Tokens(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.up = nn.Linear(64, 128)
        self.down = nn.Linear(128, 64)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down(torch.relu(self.up(x)))


def _token_inputs(n: int, seed: int) -> torch.Tensor:
    """Tokens near an 8-dimensional subspace: correlated inputs, as real activations are."""
    g = torch.Generator().manual_seed(seed)
    basis = torch.randn(8, 64, generator=torch.Generator().manual_seed(99))
    return torch.randn(n, 12, 8, generator=g) @ basis + 0.1 * torch.randn(n, 12, 64, generator=g)


@pytest.mark.parametrize("mapping", ["symmetric", "asymmetric"])
def test_quantizer_gptq_on_group_wise_weight_only_token_layers(
    mapping: str, tmp_path, monkeypatch
) -> None:
    """A text model's weight-only Linears are group-wise while its int8 ones are per channel:
    GPTQ learns on the group grid (symmetric, or with zero points), once, and ORT runs the
    learned integers (MatMulNBits)."""
    from haq.evaluate import predict
    from haq.export.onnx_export import export_onnx
    from haq.runtime.ort import make_session

    monkeypatch.setenv("HAQ_CACHE_DIR", str(tmp_path))  # each mapping learns its own
    torch.manual_seed(0)
    net = _Tokens().eval()
    calib, held = _token_inputs(64, 0), _token_inputs(32, 1)
    ref = net(held).detach()
    settings = QuantSettings(weight_only_granularity="group", group_size=32,
                             activations="dynamic-token", weight_only_mapping=mapping)  # fmt: skip
    err, quantizers = {}, {}
    for ptq in ("none", "gptq"):
        q = Quantizer(net, calib[:1], replace(settings, ptq=ptq), calibration_images=calib)
        quantizers[ptq] = q
        err[ptq] = float((q.apply("w4a32")(held) - ref).pow(2).mean())
    assert err["gptq"] < 0.8 * err["none"]
    q = quantizers["gptq"]
    rtn, _ = quantize_weight(q.base.up.weight, 4, "group", 32, mapping == "symmetric")
    assert not torch.equal(q.apply("w4a32").up.w_int, rtn)  # learned, not nearest
    again = Quantizer(net, calib[:1], q.settings, calibration_images=calib)
    assert again.learn_roundings("w4a32") == 0  # cached per (layer, bits, granularity)
    assert again.learn_roundings(BitConfig({"up": "w4a8", "down": "w8a8"})) == 2  # per channel
    files = sorted(p.name for p in again.rounding.dir.iterdir())
    suffix = "-group-asym.pt" if mapping == "asymmetric" else "-group.pt"
    assert files == ["down-w4" + suffix, "down-w8.pt", "up-w4" + suffix, "up-w4.pt"]
    config = BitConfig.uniform("w4a32", q.layer_names)
    data, report = export_onnx(q, config)
    assert set(report.layers.values()) == {"matmulnbits"}
    nodes = [n for n in onnx.load_from_string(data).graph.node if n.op_type == "MatMulNBits"]
    assert all((len(n.input) > 3 and n.input[3] != "") == (mapping == "asymmetric") for n in nodes)
    sess = make_session(data, threads=1)
    ort = np.concatenate([sess.run(None, {"input": held[i : i + 1].numpy()})[0] for i in range(4)])
    sim = predict(q.apply(config), held[:4], 4).numpy()
    np.testing.assert_allclose(ort, sim, rtol=0, atol=1e-3 * np.abs(sim).max())


def test_gptq_and_adaround_do_not_combine() -> None:
    assert QuantSettings(ptq="gptq+bias-correction").learned_rounding == "gptq"
    assert QuantSettings(ptq="cle+adaround").learned_rounding == "adaround"
    assert QuantSettings().learned_rounding is None
    with pytest.raises(HaqError, match="adaround and gptq both choose"):
        QuantSettings(ptq="adaround+gptq")
    net, x = _net(), _images(4)
    with pytest.raises(HaqError, match="gptq learns roundings on calibration data"):
        Quantizer(net, x[:1], QuantSettings(ptq="gptq")).apply("w4a32")
