"""AdaRound: learned roundings beat round-to-nearest on the layer's output, stay on the
nearest grid's floor/ceil, and are learned once per (layer, bits) then loaded from disk."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from haq import HaqError
from haq.quant import Quantizer, QuantSettings
from haq.quant.adaround import adaround
from haq.quant.input_moments import input_moments
from haq.quant.quantizers import per_weight, weight_qrange, weight_scales


def _net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 16, 3, padding=1), nn.ReLU(),
        nn.Conv2d(16, 16, 3, stride=2, padding=1, groups=4), nn.ReLU(),
        nn.Conv2d(16, 16, 3, padding=1, groups=16), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, 10),
    ).eval()  # fmt: skip


def _images(n: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    base = torch.randn(n, 3, 1, 1, generator=g)  # correlated channels: H far from diagonal
    return base + 0.3 * torch.randn(n, 3, 10, 10, generator=g)


@pytest.mark.parametrize("layer", ["0", "2", "4", "8"])
def test_moments_give_the_output_error(layer: str) -> None:
    """d H d^T equals the measured mean squared output change of a weight change d."""
    net, x = _net(), _images(8)
    module = net.get_submodule(layer)
    moments = input_moments(net, [layer], x)[layer]
    seen: list[torch.Tensor] = []
    h = module.register_forward_pre_hook(lambda _m, inp: seen.append(inp[0]))
    net(x)
    h.remove()
    d = 0.01 * torch.randn_like(module.weight)
    if isinstance(module, nn.Linear):
        change = F.linear(seen[0], d)
    else:
        change = F.conv2d(
            seen[0], d, None, module.stride, module.padding, module.dilation, module.groups
        )
    measured = float(change.detach().pow(2).sum(dim=1).mean())  # sum over channels, mean elsewhere
    rows = d.reshape(d.shape[0], -1)
    dg = rows.reshape(moments.shape[0], -1, rows.shape[1])
    predicted = float(((dg @ moments) * dg).sum())
    assert predicted == pytest.approx(measured, rel=1e-3)


def test_adaround_beats_nearest_and_stays_on_floor_or_ceil() -> None:
    net, x = _net(), _images(64)
    w = net[2].weight
    moments = input_moments(net, ["2"], x)["2"]
    r = adaround(w, moments, bits=3, iterations=300)
    assert r.error < 0.9 * r.nearest_error
    scale = weight_scales(w, 3)
    ratio = w.reshape(w.shape[0], -1) / per_weight(w, scale, "channel", 128)
    q = r.w_int.reshape(ratio.shape)
    lo, hi = weight_qrange(3)
    assert torch.equal(q, q.round()) and q.min() >= lo and q.max() <= hi
    assert bool(((q == ratio.floor()) | (q == ratio.floor() + 1) | (q == lo) | (q == hi)).all())


def test_quantizer_adaround_is_closer_to_float_on_held_out_images() -> None:
    net, calib, held = _net(), _images(64), _images(64, seed=1)
    ref = net(held)
    err = {}
    for ptq in ("none", "adaround"):
        q = Quantizer(
            net,
            calib[:1],
            QuantSettings(ptq=ptq, adaround_iterations=300),
            calibration_images=calib,
        )
        err[ptq] = float((q.apply("w3a32")(held) - ref).pow(2).mean())
    assert err["adaround"] < 0.8 * err["none"]


def test_roundings_are_learned_once_and_keyed_by_the_images() -> None:
    net, x = _net(), _images(32)
    settings = QuantSettings(ptq="adaround", adaround_iterations=50)
    first = Quantizer(net, x[:1], settings, calibration_images=x)
    assert first.learn_roundings("w4a32") == 4 and first.rounding is not None
    again = Quantizer(net, x[:1], settings, calibration_images=x)
    assert again.learn_roundings("w4a32") == 0
    y = _images(8, seed=5)
    assert torch.equal(first.apply("w4a32")(y), again.apply("w4a32")(y))
    assert again.rounding is not None and again.rounding.learned == 0
    other = Quantizer(net, x[:1], settings, calibration_images=_images(32, seed=3))
    assert other.rounding is not None and other.rounding.key != first.rounding.key


def test_adaround_without_calibration_is_refused() -> None:
    net, x = _net(), _images(4)
    q = Quantizer(net, x[:1], QuantSettings(ptq="adaround"))
    with pytest.raises(HaqError, match="calib-data"):
        q.apply("w4a32")


def test_ptq_spelling_is_canonical_and_checked() -> None:
    assert QuantSettings(ptq="adaround+cle").ptq == "cle+adaround"
    assert QuantSettings(ptq="none").ptq_steps == ()
    assert QuantSettings(ptq="bias-correction+adaround").bias_correction
    with pytest.raises(HaqError, match="unknown PTQ method 'adaroud'"):
        QuantSettings(ptq="adaroud")


def test_adaround_on_an_asymmetric_group_grid() -> None:
    """With zero points AdaRound learns on the same grid as round-to-nearest's: each weight
    rounds down or up within its group's [lowest, highest] integer."""
    from haq.quant.quantizers import weight_grid

    net, x = _net(), _images(64)
    w = net[2].weight
    moments = input_moments(net, ["2"], x)["2"]
    r = adaround(w, moments, bits=3, granularity="group", group_size=9, iterations=300,
                 symmetric=False)  # fmt: skip
    assert r.error < 0.9 * r.nearest_error
    s, lo, hi = (per_weight(w, t, "group", 9) for t in weight_grid(w, 3, "group", 9, False))
    ratio = w.reshape(w.shape[0], -1) / s
    q = r.w_int.reshape(ratio.shape)
    assert bool((q >= lo).all()) and bool((q <= hi).all())
    assert bool(((q == ratio.floor()) | (q == ratio.floor() + 1) | (q == lo) | (q == hi)).all())
