"""Hardware cost of a config: latency, energy, size and BOPs, fast enough for every proposal.

`cost_model_for(target, layers)` picks the right model for a target: table look-ups (with the
learned or roofline model filling rows the tables lack) when the target has latency tables,
else the roofline of its peaks.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from haq.cost.analytic import AnalyticCostModel
from haq.cost.base import CostEstimate, CostModel
from haq.cost.learned import LearnedCostModel
from haq.cost.learned_target import fit_target
from haq.cost.lookup import LookupCostModel
from haq.cost.matrix import MatrixCostModel
from haq.cost.size_bops import SizeBopsModel
from haq.hardware.profile import HardwareProfile, get_target
from haq.models.spec import LayerSpec

__all__ = [
    "AnalyticCostModel", "CostEstimate", "CostModel", "LearnedCostModel", "LookupCostModel",
    "MatrixCostModel", "SizeBopsModel", "cost_model_for", "fit_target",
]  # fmt: skip


def cost_model_for(
    target: str | Path | HardwareProfile,
    layers: list[LayerSpec],
    threads: int | None = None,
    batch: int | None = None,
    granularity: str | None = "channel",
    kernel_map: Mapping[str, str] | None = None,
    weight_only_group: int | None = None,
    activations: str = "static",
    weight_only_zero_points: bool = False,
    calibration: str | dict[str, Any] | None = "auto",
) -> MatrixCostModel:
    """The cost model of ``target`` bound to ``layers``.

    ``kernel_map`` re-routes kernel classes (e.g. ``{"fp32": "bf16"}``: float layers of
    gpu-h100 deployed in bf16); ``threads`` / ``batch`` default to the profile's first values;
    ``calibration``: the table model's scale by measured networks (`LookupCostModel`).
    """
    profile = get_target(target)
    if kernel_map:
        profile = profile.remap(kernel_map)
    if "layers" in profile.tables:
        return LookupCostModel(profile, layers, threads, batch, granularity,
                               weight_only_group=weight_only_group, activations=activations,
                               weight_only_zero_points=weight_only_zero_points,
                               calibration=calibration)  # fmt: skip
    return AnalyticCostModel(profile, layers, threads, batch, granularity, weight_only_group,
                             activations, weight_only_zero_points)  # fmt: skip
