"""Conformance suite for cost models: every kind of cost model haq ships must pass it.

A cost model implements the `CostModel` protocol, scores the same config the same way every
time, agrees with `SizeBopsModel` on size and BOPs (they depend on bits, not on hardware),
never shrinks a model by widening its weights, names itself in ``CostEstimate.model``, and,
where it has a ``breakdown``, its per-layer and boundary costs add up to its latency. Built on
the synthetic layers of `haq.testing.targets` (no torch); `COST_MODELS` maps a name to a
factory, so a new kind of cost model enrols by adding one line there.
`tests/testing/test_cost_model_conformance.py` runs every check on every entry.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from haq.config import FLOAT_BITS, BitConfig, Precision
from haq.cost.base import CostEstimate, CostModel
from haq.models.spec import LayerSpec
from haq.testing.targets import LAYERS


def _layers(kinds: tuple[str, ...] = tuple(LAYERS)) -> list[LayerSpec]:
    from dataclasses import replace

    return [replace(LAYERS[k], index=i) for i, k in enumerate(kinds)]


def _lookup() -> Any:
    from haq.cost import LookupCostModel
    from haq.hardware.profile import get_target

    return LookupCostModel(get_target("cpu-avx512"), _layers())


def _lookup_simulated() -> Any:
    from haq.cost import LookupCostModel
    from haq.hardware.profile import get_target

    return LookupCostModel(get_target("npu-bitfusion-edge"), _layers())


def _roofline() -> Any:
    from haq.cost import AnalyticCostModel
    from haq.hardware.profile import get_target

    return AnalyticCostModel(get_target("gpu-t4"), _layers(ROOFLINE_KINDS))


#: gpu-t4 runs its depthwise convs in float only: the roofline is checked on dense layers.
ROOFLINE_KINDS = ("conv", "linear")


def _size_bops() -> Any:
    from haq.cost import SizeBopsModel

    return SizeBopsModel(_layers())


#: name -> (factory, uniform configs it must score).
COST_MODELS: dict[str, tuple[Callable[[], Any], tuple[str, ...]]] = {
    "lookup": (_lookup, ("fp32", "w8a8", "w4a8", "w8a32")),
    "lookup-simulated": (_lookup_simulated, ("w8a8", "w4a4", "w2a8")),
    "roofline": (_roofline, ("fp32", "w8a8", "w4a4")),
    "size-bops": (_size_bops, ("fp32", "w8a8", "w4a4")),
}


def conformance_cost_models() -> list[str]:
    return sorted(COST_MODELS)


def _scores(name: str) -> tuple[Any, dict[str, CostEstimate]]:
    factory, configs = COST_MODELS[name]
    model = factory()
    return model, {c: model.score(BitConfig.uniform(c)) for c in configs}


def check_protocol_and_label(name: str) -> None:
    """A `CostModel` whose estimates are `CostEstimate`s labelled with its own name first."""
    model, scores = _scores(name)
    assert isinstance(model, CostModel), f"{name}: not a CostModel"
    for config, est in scores.items():
        assert isinstance(est, CostEstimate), f"{name}: {config} gave {type(est).__name__}"
        assert est.model.split("+")[0] == model.name.split("+")[0], f"{name}: label {est.model}"
        assert est.latency_ms is None or est.latency_ms > 0, f"{name}: {config} {est.latency_ms}"


def check_deterministic(name: str) -> None:
    """The same config scores the same, in a fresh model too."""
    _, first = _scores(name)
    _, again = _scores(name)
    assert first == again, f"{name}: scores differ between two builds"


def check_size_and_bops_follow_bits(name: str) -> None:
    """Size and BOPs are SizeBopsModel's; wider weights never make the model smaller."""
    from haq.cost import SizeBopsModel

    model, scores = _scores(name)
    reference = SizeBopsModel(model.layers if hasattr(model, "layers") else _layers())
    for config, est in scores.items():
        ref = reference.score(BitConfig.uniform(config))
        assert (est.size_bytes, est.bops) == (ref.size_bytes, ref.bops), f"{name}: {config}"
    by_w = sorted(scores, key=lambda c: Precision.parse(c).w_bits or FLOAT_BITS)
    sizes = [scores[c].size_bytes for c in by_w]
    assert sizes == sorted(sizes), f"{name}: sizes {dict(zip(by_w, sizes, strict=True))}"


def check_breakdown_adds_up(name: str) -> None:
    """Per-layer latencies plus boundary costs equal the latency (models with a breakdown)."""
    model, scores = _scores(name)
    if not hasattr(model, "breakdown"):
        return
    for config, est in scores.items():
        detail = model.breakdown(BitConfig.uniform(config))
        if est.latency_ms is None:
            continue
        layers = sum(r["latency_us"] for r in detail["layers"])
        bounds = sum(b["latency_us"] for b in detail["boundaries"])
        glue = detail.get("same_class_glue_us", 0.0)
        total = (layers + bounds + glue) / 1000.0
        assert abs(total - est.latency_ms) <= 1e-9 + 1e-9 * est.latency_ms, (name, config)


CHECKS: dict[str, Callable[[str], None]] = {
    "protocol_and_label": check_protocol_and_label,
    "deterministic": check_deterministic,
    "size_and_bops_follow_bits": check_size_and_bops_follow_bits,
    "breakdown_adds_up": check_breakdown_adds_up,
}
