"""Probe networks: deterministic per seed, varied across seeds, bounded in size, reachable by
name through the registry (never listed), and their layers are what `haq profile` measures."""

from __future__ import annotations

from collections import Counter

import pytest
import torch

from haq.errors import HaqError
from haq.models import discover_layers, list_models
from haq.models.probe import GROUP_WIDTHS, MAX_MACS, probe_net
from haq.models.registry import get_entry


def _specs(seed: int) -> list:
    net = probe_net(seed)
    return discover_layers(net, torch.zeros(1, 3, net.resolution, net.resolution))


def test_same_seed_same_network_and_size_bounded() -> None:
    for seed in range(6):
        a, b = _specs(seed), _specs(seed)
        assert a == b
        assert 0 < sum(s.macs for s in a) <= MAX_MACS
        assert a[-1].kind == "linear"  # classifier last


def test_seeds_cover_the_design_space() -> None:
    specs = [s for seed in range(12) for s in _specs(seed)]
    assert {"conv", "dwconv", "linear"} <= {s.kind for s in specs}
    assert {"relu", "relu6", "silu", "hardswish"} <= {s.act for s in specs}
    assert {1, 3} <= {s.kernel[0] for s in specs} and {1, 2} <= {s.stride[0] for s in specs}
    sizes = Counter(s.in_hw[0] for s in specs if s.kind != "linear")
    assert min(sizes) == 1 and max(sizes) >= 56  # squeeze-excite convs and early layers
    assert len({(s.in_channels, s.out_channels) for s in specs}) > 60


def test_bottleneck_probes_cover_grouped_convs() -> None:
    """Some bottleneck probes are ResNeXt / RegNet-like: their 3x3 convs are grouped, with a
    group width of `GROUP_WIDTHS`, so `haq profile --probes` measures rows for that kind."""
    grouped = [s for seed in range(12) for s in _specs(seed) if s.kind == "gconv"]
    assert grouped and {s.in_channels // s.groups for s in grouped} <= set(GROUP_WIDTHS)
    assert len({s.groups for s in grouped}) > 3 and {1, 2} <= {s.stride[0] for s in grouped}


def test_registry_builds_probes_by_name_without_listing_them() -> None:
    entry = get_entry("probe_3")
    net = entry.build("none")
    assert entry.preprocess.input_size == (3, net.resolution, net.resolution)
    assert net(torch.zeros(1, *entry.preprocess.input_size)).shape[1] == entry.num_classes
    assert not any(e.name.startswith("probe_") for e in list_models())
    with pytest.raises(HaqError, match="probe_<seed>"):
        get_entry("probe_x")
    with pytest.raises(HaqError, match="random weights only"):
        entry.build("/some/checkpoint.pt")
