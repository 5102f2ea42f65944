"""Every registered model (and a user factory of odd layer kinds) gets a latency on every target.

Layer tables only (weights none, no accuracy): a layer kind no table row or learned model
covers (grouped, dilated convs) falls back to the roofline and the answer says so.
"""

from __future__ import annotations

import math
import re
import warnings

import pytest
from torch import nn

from haq.config import BitConfig
from haq.cost import cost_model_for
from haq.errors import HaqError
from haq.hardware.profile import target_ids
from haq.models import discover_layers, load_model
from haq.models.registry import list_models
from haq.models.spec import LayerSpec

#: Uniform configs tried on every target; each target must run at least one of them.
UNIFORM = ("fp32", "w8a8", "w4a8", "w4a4")
SOURCES = {"lookup", "learned", "roofline"}
HAQ_NUM_CLASSES = 10


def odd_net() -> nn.Module:
    """A user model of every conv flavour: dense, grouped, depthwise, dilated, then linear."""
    return nn.Sequential(
        nn.Conv2d(3, 32, 3, padding=1), nn.ReLU(),
        nn.Conv2d(32, 64, 3, padding=1, groups=4), nn.ReLU(),
        nn.Conv2d(64, 64, 3, padding=2, dilation=2, groups=64), nn.ReLU(),
        nn.Conv2d(64, 64, 3, padding=2, dilation=2), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(64, 10),
    )  # fmt: skip


@pytest.fixture(scope="module")
def tables() -> dict[str, list[LayerSpec]]:
    names = [e.name for e in list_models()] + [f"{__name__}:odd_net"]
    out = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for name in names:
            loaded = load_model(name, "none")
            out[name] = discover_layers(loaded.model, loaded.example_input())
    return out


def _check_label(model: str, sources: list[str]) -> None:
    """The provenance string names every non-primary source with its layer count."""
    parts = model.split("+")
    assert "unknown" not in model
    for part in parts[1:]:
        if part == "glue":  # "lookup+glue": the profiled model's glue rows are included
            continue
        m = re.fullmatch(r"(\w+)\((\d+) layers?\)", part)
        assert m and m.group(1) in SOURCES, model
        assert sources.count(m.group(1)) == int(m.group(2)), (model, sources)


@pytest.mark.parametrize("target", target_ids())
def test_every_model_gets_a_latency(target: str, tables: dict[str, list[LayerSpec]]) -> None:
    for name, layers in tables.items():
        cm = cost_model_for(target, layers)
        scored = 0
        for bits in UNIFORM:
            config = BitConfig.uniform(bits)
            try:
                cm.check(config)
            except HaqError:
                continue
            detail = cm.breakdown(config)
            lat = detail["latency_ms"]
            assert lat is not None and math.isfinite(lat) and lat > 0, (name, target, bits)
            _check_label(detail["model"], [r["source"] for r in detail["layers"]])
            scored += 1
        assert scored, f"{target} runs none of {UNIFORM} on {name}"


def test_grouped_convs_fall_back_to_an_honest_roofline(tables: dict[str, list[LayerSpec]]) -> None:
    cm = cost_model_for("cpu-avx512", tables["regnet_y_400mf"])
    w8 = cm.breakdown(BitConfig.uniform("w8a8"))
    assert w8["model"] == "lookup+learned(69 layers)+roofline(16 layers)"
    assert {r["kind"] for r in w8["layers"] if r["source"] == "roofline"} == {"gconv"}
    # 4-bit rides in int8 containers on this CPU: no speed credited for the narrower bits
    assert cm.score(BitConfig.uniform("w4a4")).latency_ms == w8["latency_ms"]
    # weight-only int8 dequantizes to float: never faster than the int8 kernels
    assert cm.score(BitConfig.uniform("w8a32")).latency_ms > w8["latency_ms"]
