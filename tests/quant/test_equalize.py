"""Cross-layer equalization keeps the function (of the model with its ReLU6s made ReLUs),
equalizes channel ranges, leaves alone pairs it cannot rescale safely (a hidden reader, a
shared ReLU6), and high-bias absorption moves exactly W_B c from A's bias into B's."""

from __future__ import annotations

import copy

import pytest
import torch
import torchvision
from torch import nn

from haq.quant import Quantizer, QuantSettings
from haq.quant.equalize import (
    Pair,
    _in_ranges,
    _out_ranges,
    absorb_high_bias,
    equalization_pairs,
    equalize,
)
from haq.quant.fold import fold_batchnorm


def _same(a: torch.Tensor, b: torch.Tensor) -> bool:
    return bool((a - b).abs().max() <= 1e-5 * b.abs().max())


def _spread(net: nn.Module) -> nn.Module:
    net.requires_grad_(False)
    """Give conv output channels very different ranges (what CLE exists for)."""
    torch.manual_seed(0)
    for m in net.modules():
        if isinstance(m, nn.Conv2d):
            m.weight.data *= torch.logspace(-1.5, 1.5, m.out_channels).reshape(-1, 1, 1, 1)
    return net.eval()


def _chain() -> nn.Module:
    return _spread(nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(inplace=True),
        nn.Conv2d(8, 8, 3, padding=1, groups=8), nn.ReLU(),
        nn.Conv2d(8, 12, 1), nn.Flatten(), nn.Linear(12 * 36, 5),
    ))  # fmt: skip


class _HiddenReader(nn.Module):
    """conv1's output is also added functionally: rescaling it would change the function."""

    def __init__(self, act: nn.Module) -> None:
        super().__init__()
        self.conv1, self.conv2, self.relu = nn.Conv2d(4, 4, 3, padding=1), nn.Conv2d(4, 4, 1), act

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.relu(self.conv1(x))
        return self.conv2(y) + y


def _relu6_chain() -> nn.Module:
    return _spread(nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1), nn.ReLU6(inplace=True),
        nn.Conv2d(8, 8, 3, padding=1, groups=8), nn.Hardtanh(0.0, 6.0),
        nn.Conv2d(8, 12, 1), nn.Flatten(), nn.Linear(12 * 36, 5),
    ))  # fmt: skip


def _assert_equal_ranges(net: nn.Module, pairs: list[tuple[str, str]]) -> None:
    for a, b in pairs:
        ra, rb = _out_ranges(net.get_submodule(a)), _in_ranges(net.get_submodule(b))
        assert torch.allclose(ra, rb, rtol=0.05)


def test_chain_pairs_function_and_ranges() -> None:
    net, x = _chain(), torch.randn(4, 3, 6, 6)
    assert equalization_pairs(net, x[:1]) == [Pair("0", "2", relu=True), Pair("2", "4", relu=True)]
    before = net(x)
    pairs = equalize(net, x[:1])
    assert pairs == [("0", "2"), ("2", "4")]
    assert _same(net(x), before)
    _assert_equal_ranges(net, pairs)


def test_relu6_becomes_relu_then_is_equalized() -> None:
    net, x = _relu6_chain(), torch.randn(4, 3, 6, 6)
    assert equalization_pairs(net, x[:1]) == [
        Pair("0", "2", relu=True, relu6=("1",)),
        Pair("2", "4", relu=True, relu6=("3",)),
    ]
    relu = copy.deepcopy(net)
    relu[1], relu[3] = nn.ReLU(), nn.ReLU()
    before = relu(x)
    assert not _same(net(x), before)  # the outputs clip at 6: the replacement is visible
    assert equalize(net, x[:1]) == [("0", "2"), ("2", "4")]
    assert type(net[1]) is nn.ReLU and net[1].inplace and type(net[3]) is nn.ReLU
    assert _same(net(x), before)
    _assert_equal_ranges(net, [("0", "2"), ("2", "4")])


@pytest.mark.parametrize("act", [nn.ReLU, nn.ReLU6])
def test_hidden_reader_is_undone(act: type[nn.Module]) -> None:
    net, x = _spread(_HiddenReader(act())), torch.randn(2, 4, 5, 5)
    before = net(x)
    assert len(equalization_pairs(net, x[:1])) == 1
    assert equalize(net, x[:1]) == []
    assert type(net.relu) is act  # an undone pair's ReLU6 is put back
    assert _same(net(x), before)


def test_shared_relu6_is_skipped() -> None:
    six = nn.ReLU6()  # also clips the second conv's output: replacing it would change that too
    net = nn.Sequential(nn.Conv2d(3, 4, 1), six, nn.Conv2d(4, 4, 1), six, nn.Conv2d(4, 4, 1))
    assert equalization_pairs(net, torch.randn(1, 3, 4, 4)) == []


def _high_bias(groups: int = 1) -> nn.Module:
    """conv -> BN (large shift on two channels) -> ReLU -> conv without padding."""
    torch.manual_seed(0)
    net = nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(),
        nn.Conv2d(4, 8, 3, groups=groups),
    )  # fmt: skip
    bn = net[1]
    bn.running_mean.uniform_(-0.2, 0.2)
    bn.running_var.uniform_(0.5, 1.5)
    bn.weight.data = torch.tensor([0.5, -1.0, 1.0, 2.0])
    bn.bias.data = torch.tensor([6.0, 8.0, 0.5, -1.0])
    net[0].weight.data *= torch.tensor([1.0, 0.1, 3.0, 1.0]).reshape(-1, 1, 1, 1)
    return net.eval().requires_grad_(False)


@pytest.mark.parametrize("groups", [1, 4])  # 4: depthwise (channel multiplier 2)
def test_high_bias_absorption_moves_w_b_c(groups: int) -> None:
    plain, absorbed = _high_bias(groups), _high_bias(groups)
    x = 0.05 * torch.randn(4, 3, 6, 6)  # keeps the pre-activations near beta, above c
    ref = plain(x)
    fold_batchnorm(plain, x[:1])
    folded = fold_batchnorm(absorbed, x[:1])
    folded_range = _out_ranges(plain[0])
    equalize(plain, x[:1])  # the same scaling, without statistics: no absorption
    assert equalize(absorbed, x[:1], folded) == [("0", "3")]
    a, b = plain[0], plain[3]
    torch.testing.assert_close(absorbed[0].weight, a.weight)
    torch.testing.assert_close(absorbed[3].weight, b.weight)
    s = folded_range / _out_ranges(a)  # the CLE scale A's outputs were divided by
    c = ((folded[0].beta - 3 * folded[0].gamma) / s).clamp(min=0)
    assert (c[:2] > 0).all() and (c[2:] == 0).all()
    torch.testing.assert_close(a.bias - absorbed[0].bias, c)
    w_b_c = nn.functional.conv2d(c.reshape(1, 4, 1, 1).expand(1, 4, 3, 3), b.weight, groups=groups)
    torch.testing.assert_close(absorbed[3].bias - b.bias, w_b_c.reshape(-1))
    assert (plain[0](x)[:, :2] >= c[:2].reshape(1, 2, 1, 1)).all()  # x >= c where c > 0
    torch.testing.assert_close(absorbed(x), plain(x))
    torch.testing.assert_close(absorbed(x), ref, rtol=1e-4, atol=1e-4)
    ranges = [torch.relu(m[0](x)).amax(dim=(0, 2, 3)) for m in (plain, absorbed)]
    torch.testing.assert_close(ranges[0] - ranges[1], c)  # A's activation range shrank by c


def test_absorption_needs_a_folded_bn_and_an_activation() -> None:
    """A has no BatchNorm (B has): only (B, C) absorbs; C -> D has no activation: none."""
    torch.manual_seed(0)
    net = nn.Sequential(
        nn.Conv2d(3, 4, 1), nn.ReLU(), nn.Conv2d(4, 4, 1), nn.BatchNorm2d(4), nn.ReLU(),
        nn.Conv2d(4, 4, 1), nn.BatchNorm2d(4), nn.Conv2d(4, 2, 1),
    ).eval()  # fmt: skip
    for i in (3, 6):
        net[i].bias.data.fill_(5.0)
    net[0].bias.data.fill_(5.0)
    x = torch.randn(1, 3, 4, 4)
    folded = fold_batchnorm(net, x)
    plain = copy.deepcopy(net)
    assert equalize(plain, x) == equalize(net, x, folded) == [("0", "2"), ("2", "5"), ("5", "7")]
    assert torch.equal(net[0].bias, plain[0].bias)  # A has no BatchNorm statistics
    c = plain[2].bias - net[2].bias
    assert (c > 0).all()
    w_c = plain[5].weight.sum(dim=(2, 3)) @ c  # 5 receives W c from (2, 5) and gives none:
    torch.testing.assert_close(net[5].bias - plain[5].bias, w_c)
    assert torch.equal(net[7].bias, plain[7].bias)  # (5, 7) has no activation


def test_absorb_high_bias_linear() -> None:
    torch.manual_seed(0)
    a, b = nn.Linear(3, 4), nn.Linear(4, 2, bias=False)
    a.bias.data = torch.tensor([4.0, 3.0, 0.0, 5.0])
    x = 0.1 * torch.randn(8, 3)
    ref = b(torch.relu(a(x)))
    c = absorb_high_bias(a, b, a.bias.detach().clone(), torch.full((4,), 0.5))
    torch.testing.assert_close(c, torch.tensor([2.5, 1.5, 0.0, 3.5]))
    torch.testing.assert_close(b.bias, b.weight @ c)
    torch.testing.assert_close(b(torch.relu(a(x))), ref)


def test_cle_builds_and_applies_on_mobilenet_v2() -> None:
    """BatchNorm + ReLU6 everywhere: the ReLU6s between pairs become ReLUs, w8a8 runs."""
    torch.manual_seed(0)
    net = torchvision.models.mobilenet_v2(weights=None, num_classes=10).eval()
    x = torch.randn(8, 3, 32, 32)
    q = Quantizer(net, x[:1], QuantSettings(ptq="cle"), calibration_images=x)
    assert len(q.equalized) > 30
    assert sum(isinstance(m, nn.ReLU6) for m in q.base.modules()) == 1  # feeds the pooling
    assert q.apply("w8a8")(x[:2]).shape == (2, 10)


def test_cle_helps_per_tensor_weights() -> None:
    net, x = _chain(), torch.randn(64, 3, 6, 6)
    ref = net(x)
    err = {}
    for ptq in ("none", "cle"):
        q = Quantizer(net, x[:1], QuantSettings(ptq=ptq, granularity="tensor"))
        err[ptq] = float((q.apply("w8a32")(x) - ref).pow(2).mean())
    assert err["cle"] < 0.5 * err["none"]
