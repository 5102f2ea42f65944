"""ZeroQ distilled data: matches BatchNorm statistics, leaves the model alone, is cached."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from haq.data import distilled as D
from haq.data import load_data
from haq.errors import HaqError
from haq.models.registry import Preprocess
from haq.paths import cache_dir

PRE = Preprocess(input_size=(3, 8, 8), mean=(0.5,) * 3, std=(0.5,) * 3)


def _bn_net(seed: int = 0) -> nn.Module:
    """A tiny CNN whose BatchNorm statistics are far from what plain noise produces."""
    torch.manual_seed(seed)
    net = nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1),
        nn.BatchNorm2d(8),
        nn.ReLU(),
        nn.Conv2d(8, 8, 3, padding=1),
        nn.BatchNorm2d(8),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(8, 4),
    )
    # Running statistics of "real" data that plain standard-normal noise does not resemble.
    shift = torch.tensor([1.0, -0.5, 0.2]).view(1, 3, 1, 1)
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.momentum = None  # cumulative average
        for _ in range(4):
            net(0.4 * torch.randn(32, 3, 8, 8) + shift)
    return net.train()  # distillation must not depend on (or change) the caller's mode


def test_gap_shrinks_and_model_is_untouched() -> None:
    net = _bn_net()
    before = copy.deepcopy(net.state_dict())
    noise = torch.randn((16, 3, 8, 8), generator=torch.Generator().manual_seed(0))
    start = D.bn_stat_gap(net, noise)
    x = D.distill(net, 16, (3, 8, 8), seed=0, steps=30)
    assert x.shape == (16, 3, 8, 8) and not x.requires_grad
    assert D.bn_stat_gap(net, x) < 0.1 * start
    assert net.training and all(m.training for m in net.modules())
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())
    assert all(not m._forward_pre_hooks for m in net.modules())
    assert all(p.grad is None for p in net.parameters())


def test_deterministic_per_seed() -> None:
    net = _bn_net()
    with torch.no_grad():  # works inside an evaluation loop's no_grad too
        a = D.distill(net, 4, (3, 8, 8), seed=1, steps=5)
    assert torch.equal(a, D.distill(net, 4, (3, 8, 8), seed=1, steps=5))
    assert not torch.equal(a, D.distill(net, 4, (3, 8, 8), seed=2, steps=5))


def test_load_data_caches_per_model(monkeypatch: pytest.MonkeyPatch) -> None:
    net = _bn_net()
    d = load_data("distilled:8", PRE, model=net, num_classes=4)
    assert d.x.shape == (8, 3, 8, 8) and d.y is None and d.classes == ["0", "1", "2", "3"]
    assert d.source.startswith("distilled:8@")
    key = D.cache_key(net, 8, (3, 8, 8), 0, D.DEFAULT_STEPS, D.DEFAULT_LR)
    assert (cache_dir() / "distilled" / f"{key}.pt").is_file()

    def boom(*args: object, **kwargs: object) -> torch.Tensor:
        raise AssertionError("cache miss")

    monkeypatch.setattr(D, "distill", boom)
    again = load_data("distilled:8", PRE, model=net, num_classes=4)
    assert torch.equal(d.x, again.x) and d.key == again.key
    with pytest.raises(AssertionError, match="cache miss"):
        load_data("distilled:8", PRE, model=_bn_net(seed=1))  # other weights, other images


def test_limits_and_seeds_pick_from_one_distilled_set(monkeypatch: pytest.MonkeyPatch) -> None:
    """Calibration, validation and test subsets (any limit, seed or split) come from the
    one cached set of N images: distilled once, never again for a smaller limit."""
    net = _bn_net()
    calls: list[int] = []
    real = D.distill

    def counted(*args: object, **kwargs: object) -> torch.Tensor:
        calls.append(1)
        return real(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(D, "distill", counted)
    full = load_data("distilled:12", PRE, model=net)
    few = load_data("distilled:12", PRE, model=net, limit=3, seed=5)
    rest = load_data("distilled:12", PRE, model=net, seed=6, exclude=few.indices)
    assert calls == [1] and len(few) == 3 and len(rest) == 9
    assert torch.equal(few.x, full.x[torch.from_numpy(few.indices)])
    assert not set(few.indices) & set(rest.indices) and few.source == full.source


def test_steps_in_the_source_name() -> None:
    net = _bn_net()
    d = load_data("distilled:4:3", PRE, model=net)
    key = D.cache_key(net, 4, (3, 8, 8), 0, 3, D.DEFAULT_LR)
    assert (cache_dir() / "distilled" / f"{key}.pt").is_file() and d.source.startswith(
        "distilled:4:3@"
    )
    noise = load_data("distilled:4:0", PRE, model=net)  # 0 steps: the Gaussian start
    assert torch.equal(
        noise.x, torch.randn((4, 3, 8, 8), generator=torch.Generator().manual_seed(0))
    )
    with pytest.raises(HaqError, match="STEPS >= 0"):
        load_data("distilled:4:many", PRE, model=net)


def test_default_steps_shrink_for_large_networks() -> None:
    """Small networks keep every step; a network whose steps would pass the compute budget
    gets fewer, never under MIN_STEPS."""
    net = _bn_net()
    assert D.default_steps(net, 64, (3, 8, 8)) == D.DEFAULT_STEPS
    macs = D.macs_per_image(net, (3, 8, 8))
    conv = next(m for m in net.modules() if isinstance(m, nn.Conv2d))
    assert macs >= conv.in_channels * conv.out_channels * 9  # at least one output pixel's work
    wide = nn.Sequential(nn.Conv2d(3, 512, 3, padding=1), nn.BatchNorm2d(512),
                         nn.Conv2d(512, 512, 3, padding=1))  # fmt: skip
    assert D.default_steps(wide, 64, (3, 64, 64)) == D.MIN_STEPS  # 9.7 GMACs an image


def test_needs_a_model_with_batchnorm() -> None:
    with pytest.raises(HaqError, match="--calib-data"):
        load_data("distilled", PRE)
    plain = nn.Sequential(nn.Conv2d(3, 4, 3), nn.Flatten(), nn.LazyLinear(2))
    with pytest.raises(HaqError) as e:
        load_data("distilled", PRE, model=plain)
    msg = str(e.value)
    assert "BatchNorm statistics" in msg and "--calib-data DIR" in msg and "\n" not in msg
