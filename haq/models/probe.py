"""Probe networks: seeded random CNNs sampled from the design space of today's classifiers.

A learned cost model trained on the layers of a handful of named networks has seen a few
hundred layer signatures; the layers of the next network fall between them. Like nn-Meter's
sampled kernels, ``probe_<seed>`` networks cover that space (input resolutions 32-224, widths
8-1280, 1x1/3x3/5x5/7x7, depthwise and grouped convs at stride 1 and 2, plain, basic,
bottleneck (dense, or grouped as in ResNeXt / RegNet) and inverted-residual blocks,
squeeze-excite, ReLU/ReLU6/SiLU/Hardswish), in the contexts real networks put them in, so
`haq profile --target cpu-avx512 --probes N` measures training rows the same way it measures
any model (into the target's ``probes/`` tables; `haq fit-cost-model` learns from them the op
kinds the named networks lack, with ``--probes all`` from every row). Random weights: latency
does not depend on their values.

Grouped bottlenecks (2026-12-08) draw from a random stream of their own (`_grouping`), so every
other choice of a seed is what it was; the bottleneck probes among the earlier seeds now
build grouped 3x3 convs where they had dense ones. `haq profile --probes` measures such a
probe again (its exported graph changed) and keeps the rows measured before.
"""

from __future__ import annotations

import dataclasses
import random
from dataclasses import dataclass

import torch
from torch import nn

from haq.errors import HaqError
from haq.models.registry import ModelEntry, Preprocess

RESOLUTIONS = (32, 56, 64, 96, 112, 128, 160, 192, 224)
MAX_MACS = 1.5e9  # keeps one profiled config of a probe under a few seconds on one core

_ACTS: dict[str, type[nn.Module]] = {
    "relu": nn.ReLU,
    "relu6": nn.ReLU6,
    "silu": nn.SiLU,
    "hardswish": nn.Hardswish,
}


def _divisible(v: float, by: int = 8) -> int:
    """Round a width to a multiple of ``by`` (at least ``by``), as MobileNets do."""
    return max(by, int(v + by / 2) // by * by)


def _conv(cin: int, cout: int, k: int, s: int, groups: int, act: str | None) -> nn.Sequential:
    mods: list[nn.Module] = [
        nn.Conv2d(cin, cout, k, s, k // 2, groups=groups, bias=False),
        nn.BatchNorm2d(cout),
    ]
    if act is not None:
        mods.append(_ACTS[act]())
    return nn.Sequential(*mods)


class SqueezeExcite(nn.Module):
    """Global pool, 1x1 reduce + activation, 1x1 expand + gate, channel-wise multiply."""

    def __init__(self, channels: int, reduced: int, act: str, gate: str) -> None:
        super().__init__()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc1 = nn.Conv2d(channels, reduced, 1)
        self.act = _ACTS[act]()
        self.fc2 = nn.Conv2d(reduced, channels, 1)
        self.gate = nn.Sigmoid() if gate == "sigmoid" else nn.Hardsigmoid()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gate(self.fc2(self.act(self.fc1(self.pool(x)))))


class Residual(nn.Module):
    """``body(x) + shortcut(x)``, then an optional activation (ResNet style)."""

    def __init__(self, body: nn.Module, shortcut: nn.Module, act: str | None) -> None:
        super().__init__()
        self.body = body
        self.shortcut = shortcut
        self.act = _ACTS[act]() if act is not None else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.body(x) + self.shortcut(x))


@dataclass(frozen=True)
class _Style:
    """Per-network choices, so each probe looks like one family rather than a mix of all."""

    block: str  # plain | basic | bottleneck | inverted
    acts: tuple[str, str]  # early stages, late stages
    se: float  # probability of squeeze-excite in an inverted block
    se_gate: str  # sigmoid | hardsigmoid
    expand: tuple[int, ...]  # inverted-residual expansion ratios
    dw_kernels: tuple[int, ...]
    group_width: int | None = None  # channels per group of a bottleneck's 3x3 (None: dense)


#: Channels per group of grouped bottlenecks: ResNeXt-50 32x4d's 4-32, RegNet's 8-64 and more.
GROUP_WIDTHS = (4, 8, 16, 24, 32, 48, 64)


def _grouping(seed: int) -> random.Random:
    """The random stream of a probe's grouped convs, apart from its other choices."""
    return random.Random(f"probe-groups-{seed}")


def _style(rng: random.Random) -> _Style:
    block = rng.choice(["plain", "basic", "bottleneck", "inverted", "inverted"])
    early = rng.choice(list(_ACTS))
    late = rng.choice([early, early, "hardswish", "silu"])
    return _Style(
        block=block,
        acts=(early, late),
        se=rng.choice([0.0, 0.0, 0.5, 1.0]),
        se_gate=rng.choice(["sigmoid", "hardsigmoid"]),
        expand=rng.choice([(6,), (3, 6), (1, 4, 6), (3, 4, 6)]),
        dw_kernels=rng.choice([(3,), (3, 5), (5,), (3, 5, 7)]),
    )


def _block(
    rng: random.Random, grng: random.Random, st: _Style, cin: int, cout: int, s: int, act: str
) -> nn.Module:
    if st.block == "plain":
        return _conv(cin, cout, rng.choice([1, 3, 3, 5]), s, 1, act)
    shortcut: nn.Module = (
        nn.Identity() if s == 1 and cin == cout else _conv(cin, cout, 1, s, 1, None)
    )
    if st.block == "basic":
        body = nn.Sequential(_conv(cin, cout, 3, s, 1, act), _conv(cout, cout, 3, 1, 1, None))
        return Residual(body, shortcut, act)
    if st.block == "bottleneck":
        mid = _divisible(cout / rng.choice([2, 4, 4]))
        groups, se = 1, []
        if st.group_width is not None:  # ResNeXt (ratio 2-4) / RegNet (ratio 1, SE) style
            mid = _divisible(cout / grng.choice([1, 1, 2, 4]), st.group_width)
            groups = mid // st.group_width
            if grng.random() < st.se:
                se = [SqueezeExcite(mid, max(4, _divisible(cin / 4, 4)), "relu", "sigmoid")]
        body = nn.Sequential(_conv(cin, mid, 1, 1, 1, act), _conv(mid, mid, 3, s, groups, act),
                             *se, _conv(mid, cout, 1, 1, 1, None))  # fmt: skip
        return Residual(body, shortcut, act)
    t = rng.choice(st.expand)
    mid = _divisible(cin * t)
    mods: list[nn.Module] = [] if t == 1 else [_conv(cin, mid, 1, 1, 1, act)]
    mods.append(_conv(mid, mid, rng.choice(st.dw_kernels), s, mid, act))
    if rng.random() < st.se:
        base = cin if st.se_gate == "sigmoid" else mid  # EfficientNet vs MobileNetV3 rule
        mods.append(SqueezeExcite(mid, max(4, _divisible(base / 4, 4 if base < 64 else 8)),
                                  "silu" if st.se_gate == "sigmoid" else "relu", st.se_gate))  # fmt: skip
    mods.append(_conv(mid, cout, 1, 1, 1, None))
    body = nn.Sequential(*mods)
    if s == 1 and cin == cout:
        return Residual(body, nn.Identity(), None)
    return body


class ProbeNet(nn.Module):
    """Stem, 3-5 stages of one block style, optional 1x1 head conv, pool, classifier."""

    def __init__(self, seed: int, shrink: float = 1.0) -> None:
        super().__init__()
        rng, grng = random.Random(seed), _grouping(seed)
        self.resolution = rng.choice(RESOLUTIONS)
        st = _style(rng)
        if st.block == "bottleneck" and grng.random() < 0.5:
            st = dataclasses.replace(st, group_width=grng.choice(GROUP_WIDTHS))
        width = shrink * (rng.choice([0.25, 0.5, 0.75, 1.0, 1.5]) if st.block != "plain" else 1.0)
        hw = self.resolution
        c = _divisible(rng.choice([16, 24, 32, 48, 64]) * width)
        stem_s = 2 if hw >= 96 else rng.choice([1, 1, 2])
        layers: list[nn.Module] = [_conv(3, c, rng.choice([3, 3, 5, 7]), stem_s, 1, st.acts[0])]
        hw //= stem_s
        if hw >= 112 and st.block in ("basic", "bottleneck"):
            layers.append(nn.MaxPool2d(3, 2, 1))
            hw //= 2
        n_stages = rng.randint(3, 5)
        for i in range(n_stages):
            act = st.acts[0] if i < n_stages // 2 else st.acts[1]
            grow = (
                rng.choice([1.5, 2.0, 2.0])
                if st.block != "inverted"
                else rng.choice([1.25, 1.5, 2.0])
            )
            cout = _divisible(c * grow)
            for j in range(rng.randint(1, 3)):
                s = 2 if j == 0 and hw >= 4 and (i > 0 or stem_s == 1) else 1
                layers.append(_block(rng, grng, st, c, cout, s, act))
                c, hw = cout, hw // s
        if rng.random() < 0.5:
            head = _divisible(c * rng.choice([2, 4, 6]))
            layers.append(_conv(c, head, 1, 1, 1, st.acts[1]))
            c = head
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.num_classes = classes = rng.choice([10, 100, 1000])
        hidden = rng.choice([None, None, 1024, 1280])
        if hidden is None:
            self.classifier: nn.Module = nn.Linear(c, classes)
        else:
            self.classifier = nn.Sequential(nn.Linear(c, hidden), _ACTS[st.acts[1]](),
                                            nn.Linear(hidden, classes))  # fmt: skip

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.pool(self.features(x)), 1))


def _macs(net: ProbeNet) -> int:
    from haq.models.layers import discover_layers

    x = torch.zeros(1, 3, net.resolution, net.resolution)
    return sum(s.macs for s in discover_layers(net, x))


def probe_net(seed: int) -> ProbeNet:
    """The probe network of ``seed`` (deterministic): the same structure with narrower widths
    while it exceeds `MAX_MACS`."""
    for attempt in range(12):
        net = ProbeNet(seed, shrink=0.8**attempt)
        if _macs(net) <= MAX_MACS:
            return net.eval()
    raise HaqError(f"probe_{seed}: no network under {MAX_MACS:.0e} MACs")


def probe_entry(name: str) -> ModelEntry:
    """Registry entry of ``probe_<seed>`` (built on demand, never listed: not a user model)."""
    seed_text = name.removeprefix("probe_")
    if not seed_text.isdigit():
        raise HaqError(f"probe networks are named probe_<seed>, e.g. probe_0, not {name!r}")
    seed = int(seed_text)
    net = ProbeNet(seed)  # resolution and classes; narrower re-draws keep both (same draws)

    def build(weights: str) -> nn.Module:
        if weights not in ("none", "default"):
            raise HaqError(f"{name} has random weights only; drop --weights {weights}")
        torch.manual_seed(seed)
        return probe_net(seed)

    res = net.resolution
    return ModelEntry(
        name=name,
        build=build,
        preprocess=Preprocess(input_size=(3, res, res), mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5)),
        num_classes=net.num_classes,
        description="random design-space CNN for cost-model training (random weights)",
        family="probe",
        tags=("probe",),
    )
