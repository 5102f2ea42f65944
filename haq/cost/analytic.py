"""Roofline latency: the fallback for any layer no table row or learned model covers.

Per layer and kernel class: ``overhead + max(2 * MACs * batch / ops_per_s, bytes / bandwidth)``
with ``bytes`` = weights at the kernel's storage bits + input and output activations at its
activation bits (`HardwareProfile.storage_bits`), so a layer is never credited with speed for
bits its kernel class does not exploit. Peaks (``<kernel>_gops`` in 1e9 ops/s, one MAC = 2 ops;
``bandwidth_gbs`` in 1e9 bytes/s; ``overhead_us`` / ``<kernel>_overhead_us`` per layer call)
come from the profile; where it quotes none for a kernel class but has table rows of that
class, `fitted_peaks` fits them to those rows (the target's own measurements). A kernel class
with neither stays unknown. Answers are labelled ``roofline`` (`haq.cost.matrix`): it knows
nothing about cache effects or kernel efficiency beyond what the peaks say.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd

from haq.cost.matrix import ROOFLINE, MatrixCostModel
from haq.cost.work_model import work_terms
from haq.hardware.profile import HardwareProfile
from haq.models.spec import LayerSpec

#: Quantile of the per-row achieved throughput taken as a fitted peak: the best the target
#: showed, robust to one lucky row (a roofline is a bound, not an average).
PEAK_QUANTILE = 0.9
#: Quantile of the per-row latency taken as a fitted per-call overhead (the floor of a call).
OVERHEAD_QUANTILE = 0.05


def _row_work(profile: HardwareProfile, rows: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """(ops, bytes) of table rows: 2 x MACs x batch, and weights + activations at storage bits."""
    macs, in_el, out_el, weights = work_terms(rows).T[:4]
    bits = np.array([profile.storage_bits(str(k)) for k in rows["precision"]], dtype=np.float64)
    return 2.0 * macs, (weights * bits[:, 0] + (in_el + out_el) * bits[:, 1]) / 8.0


def fitted_peaks(
    profile: HardwareProfile, table: pd.DataFrame, threads: int | None = None
) -> dict[str, float]:
    """Peaks the profile does not quote, fitted to its own table rows (at ``threads``).

    Per kernel class without a ``<kernel>_gops`` peak: the `PEAK_QUANTILE` of its rows'
    achieved ops/s and the `OVERHEAD_QUANTILE` of their latencies as its per-call overhead;
    ``bandwidth_gbs`` (when not quoted) from every row's bytes / latency. Quoted peaks win.
    """
    rows = table
    if threads is not None and "threads" in rows:
        rows = rows[rows["threads"] == threads]
    rows = rows[rows["latency_us"] > 0]
    quoted = profile.peaks
    out: dict[str, float] = {}
    if rows.empty:
        return out
    ops, nbytes = _row_work(profile, rows)
    us = rows["latency_us"].to_numpy(np.float64)
    kernels = rows["precision"].astype(str).to_numpy()
    for kernel in profile.kernels:
        if f"{kernel}_gops" in quoted:
            continue
        mask = kernels == kernel
        if not mask.any():
            continue
        out[f"{kernel}_gops"] = float(np.quantile(ops[mask] / us[mask], PEAK_QUANTILE)) / 1e3
        out[f"{kernel}_overhead_us"] = float(np.quantile(us[mask], OVERHEAD_QUANTILE))
    if "bandwidth_gbs" not in quoted:
        out["bandwidth_gbs"] = float(np.quantile(nbytes / us, PEAK_QUANTILE)) / 1e3
    return out


def roofline_us(
    profile: HardwareProfile,
    layers: list[LayerSpec],
    kernel: str,
    batch: int,
    peaks: Mapping[str, float] | None = None,
) -> np.ndarray | None:
    """Latency (us) of every layer in ``layers`` on ``kernel``; None without a compute peak.

    ``peaks`` (default the profile's own) may add fitted ones (`fitted_peaks`).
    """
    peaks = profile.peaks if peaks is None else peaks
    gops = peaks.get(f"{kernel}_gops")
    if not gops:
        return None
    bandwidth = peaks.get("bandwidth_gbs")
    overhead = peaks.get(f"{kernel}_overhead_us", peaks.get("overhead_us", 0.0))
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


def fill_roofline(
    model: MatrixCostModel, only_missing: bool = True, peaks: Mapping[str, float] | None = None
) -> int:
    """Fill reachable cells (only NaN ones by default) with the roofline; returns cells filled."""
    filled = 0
    cache: dict[str, np.ndarray | None] = {}
    for i, k in model.reachable():
        if only_missing and not np.isnan(model.latency_us[i, k]):
            continue
        kernel = model.kernels[k]
        if kernel not in cache:
            cache[kernel] = roofline_us(model.profile, model.layers, kernel, model.batch, peaks)
        values = cache[kernel]
        if values is not None:
            model.latency_us[i, k] = values[i]
            model.source[i, k] = ROOFLINE
            filled += 1
    return filled


class AnalyticCostModel(MatrixCostModel):
    """Roofline-only cost model (no tables): ``CostEstimate.model`` is ``roofline``."""

    name = "roofline"
    primary = ROOFLINE

    def __init__(
        self,
        profile: HardwareProfile,
        layers: list[LayerSpec],
        threads: int | None = None,
        batch: int | None = None,
        granularity: str | None = "channel",
        weight_only_group: int | None = None,
        activations: str = "static",
        weight_only_zero_points: bool = False,
    ) -> None:
        super().__init__(profile, layers, threads, batch, granularity, weight_only_group,
                         activations, weight_only_zero_points)  # fmt: skip
        fill_roofline(self, only_missing=False)
