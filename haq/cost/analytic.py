"""Roofline latency from a profile's ``peaks``: the fallback when nothing was measured.

Per layer and kernel class: ``overhead + max(2 * MACs * batch / ops_per_s, bytes / bandwidth)``
with ``bytes`` = weights at the kernel's storage bits + input and output activations at its
activation bits (`HardwareProfile.storage_bits`). Peaks (``<kernel>_gops`` in 1e9 ops/s, one
MAC = 2 ops; ``bandwidth_gbs`` in 1e9 bytes/s; ``overhead_us`` / ``<kernel>_overhead_us`` per
layer call) come from the profile; a kernel class without a ``_gops`` peak stays unknown.
It knows nothing about cache effects or kernel efficiency: an optimistic bound unless the
profile quotes effective (achieved) throughputs.
"""

from __future__ import annotations

import numpy as np

from haq.cost.matrix import ANALYTIC, MatrixCostModel
from haq.hardware.profile import HardwareProfile
from haq.models.layers import LayerSpec


def roofline_us(
    profile: HardwareProfile, layers: list[LayerSpec], kernel: str, batch: int
) -> np.ndarray | None:
    """Latency (us) of every layer in ``layers`` on ``kernel``; None without a compute peak."""
    gops = profile.peaks.get(f"{kernel}_gops")
    if not gops:
        return None
    bandwidth = profile.peaks.get("bandwidth_gbs")
    overhead = profile.peaks.get(f"{kernel}_overhead_us", profile.peaks.get("overhead_us", 0.0))
    w_bits, a_bits = profile.storage_bits(kernel)
    macs = np.array([s.macs for s in layers], dtype=np.float64) * batch
    compute_us = 2.0 * macs / (gops * 1e3)
    if not bandwidth:
        return overhead + compute_us
    weights = np.array([s.params for s in layers], dtype=np.float64)
    acts = np.array(
        [s.in_channels * s.in_hw[0] * s.in_hw[1] + s.out_channels * s.out_hw[0] * s.out_hw[1]
         for s in layers], dtype=np.float64,
    ) * batch  # fmt: skip
    memory_us = (weights * w_bits + acts * a_bits) / 8.0 / (bandwidth * 1e3)
    return overhead + np.maximum(compute_us, memory_us)


def fill_analytic(model: MatrixCostModel, only_missing: bool = True) -> int:
    """Fill reachable cells (only NaN ones by default) with the roofline; returns cells filled."""
    filled = 0
    cache: dict[str, np.ndarray | None] = {}
    for i, k in model.reachable():
        if only_missing and not np.isnan(model.latency_us[i, k]):
            continue
        kernel = model.kernels[k]
        if kernel not in cache:
            cache[kernel] = roofline_us(model.profile, model.layers, kernel, model.batch)
        values = cache[kernel]
        if values is not None:
            model.latency_us[i, k] = values[i]
            model.source[i, k] = ANALYTIC
            filled += 1
    return filled


class AnalyticCostModel(MatrixCostModel):
    """Roofline-only cost model (no tables): ``CostEstimate.model`` is ``analytic``."""

    name = "analytic"
    primary = ANALYTIC

    def __init__(
        self,
        profile: HardwareProfile,
        layers: list[LayerSpec],
        threads: int | None = None,
        batch: int | None = None,
        granularity: str | None = "channel",
    ) -> None:
        super().__init__(profile, layers, threads, batch, granularity)
        fill_analytic(self, only_missing=False)
