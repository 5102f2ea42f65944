"""Cross-layer equalization keeps the function, equalizes channel ranges, and leaves alone
pairs it cannot rescale safely (a hidden reader, a clipping activation)."""

from __future__ import annotations

import torch
from torch import nn

from haq.quant import Quantizer, QuantSettings
from haq.quant.equalize import _in_ranges, _out_ranges, equalization_pairs, equalize


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

    def __init__(self) -> None:
        super().__init__()
        self.conv1, self.conv2, self.relu = (
            nn.Conv2d(4, 4, 3, padding=1),
            nn.Conv2d(4, 4, 1),
            nn.ReLU(),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.relu(self.conv1(x))
        return self.conv2(y) + y


def test_chain_pairs_function_and_ranges() -> None:
    net, x = _chain(), torch.randn(4, 3, 6, 6)
    assert equalization_pairs(net, x[:1]) == [("0", "2"), ("2", "4")]
    before = net(x)
    pairs = equalize(net, x[:1])
    assert pairs == [("0", "2"), ("2", "4")]
    assert _same(net(x), before)
    for a, b in pairs:
        ra, rb = _out_ranges(net.get_submodule(a)), _in_ranges(net.get_submodule(b))
        assert torch.allclose(ra, rb, rtol=0.05)


def test_hidden_reader_is_undone_and_relu6_is_skipped() -> None:
    net, x = _spread(_HiddenReader()), torch.randn(2, 4, 5, 5)
    before = net(x)
    assert equalize(net, x[:1]) == []
    assert _same(net(x), before)
    six = nn.Sequential(nn.Conv2d(3, 4, 1), nn.ReLU6(), nn.Conv2d(4, 4, 1))
    assert equalization_pairs(six, torch.randn(1, 3, 4, 4)) == []


def test_cle_helps_per_tensor_weights() -> None:
    net, x = _chain(), torch.randn(64, 3, 6, 6)
    ref = net(x)
    err = {}
    for ptq in ("none", "cle"):
        q = Quantizer(net, x[:1], QuantSettings(ptq=ptq, granularity="tensor"))
        err[ptq] = float((q.apply("w8a32")(x) - ref).pow(2).mean())
    assert err["cle"] < 0.5 * err["none"]
