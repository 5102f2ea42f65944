"""Activation statistics per layer and the observers that turn them into a clipping range.

Statistics (min, max, a histogram, per-channel means) are gathered once per layer; an observer
then picks [lo, hi] for any bit width from them without touching data again, so a new config
never needs re-calibration.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from haq.quant.quantizers import act_qparams

OBSERVERS = ("minmax", "percentile", "mse")
HIST_BINS = 2048


@dataclass
class TensorStats:
    """Range, histogram and per-channel mean of one activation tensor over calibration data."""

    lo: float
    hi: float
    hist: np.ndarray  # HIST_BINS counts over [lo, hi]
    channel_mean: np.ndarray  # mean per channel (dim 1), for analytic bias correction

    def bin_centers(self) -> np.ndarray:
        edges = np.linspace(self.lo, self.hi, len(self.hist) + 1)
        return (edges[:-1] + edges[1:]) / 2


def observe_range(
    stats: TensorStats, bits: int, observer: str, percentile: float = 99.99
) -> tuple[float, float]:
    """The [lo, hi] an observer chooses for ``bits``."""
    if observer == "minmax":
        return stats.lo, stats.hi
    if observer == "percentile":
        return _percentile_range(stats, percentile)
    if observer == "mse":
        return _mse_range(stats, bits)
    raise ValueError(f"unknown observer {observer!r}; one of {OBSERVERS}")


def _percentile_range(stats: TensorStats, percentile: float) -> tuple[float, float]:
    total = stats.hist.sum()
    if total == 0:
        return stats.lo, stats.hi
    cdf = np.cumsum(stats.hist) / total
    edges = np.linspace(stats.lo, stats.hi, len(stats.hist) + 1)
    tail = (100.0 - percentile) / 100.0
    lo = edges[int(np.searchsorted(cdf, tail))] if stats.lo < 0 else stats.lo
    hi = edges[min(int(np.searchsorted(cdf, 1.0 - tail)) + 1, len(edges) - 1)]
    return float(lo), float(hi)


def _mse_range(stats: TensorStats, bits: int, candidates: int = 64) -> tuple[float, float]:
    """Shrink the min-max range by a common factor; keep the factor with least expected MSE."""
    x = stats.bin_centers()
    w = stats.hist.astype(np.float64)
    if w.sum() == 0:
        return stats.lo, stats.hi
    best, best_err = (stats.lo, stats.hi), np.inf
    qmax = 2**bits - 1
    for t in np.linspace(1.0 / candidates, 1.0, candidates):
        lo, hi = stats.lo * t, stats.hi * t
        scale, zp = act_qparams(lo, hi, bits)
        q = np.clip(np.round(x / scale) + zp, 0, qmax)
        err = float(np.sum(w * ((q - zp) * scale - x) ** 2))
        if err <= best_err:
            best, best_err = (float(lo), float(hi)), err
    return best


class StatsCollector:
    """Accumulates `TensorStats` for one tensor over batches: pass 1 range, pass 2 histogram."""

    def __init__(self, channel_dim: int = 1) -> None:
        self.channel_dim = channel_dim  # 1 for conv (NCHW), -1 for linear (..., C)
        self.lo = float("inf")
        self.hi = float("-inf")
        self.hist = np.zeros(HIST_BINS, dtype=np.int64)
        self._chan_sum: torch.Tensor | None = None
        self._chan_count = 0

    def update_range(self, x: torch.Tensor) -> None:
        x = x.detach().float()
        self.lo = min(self.lo, float(x.min()))
        self.hi = max(self.hi, float(x.max()))
        flat = x.movedim(self.channel_dim, 0).reshape(x.shape[self.channel_dim], -1)
        s = flat.sum(dim=1)
        self._chan_sum = s if self._chan_sum is None else self._chan_sum + s
        self._chan_count += flat.shape[1]

    def update_hist(self, x: torch.Tensor) -> None:
        if self.hi <= self.lo:
            return
        h = torch.histc(x.detach().float(), bins=HIST_BINS, min=self.lo, max=self.hi)
        self.hist += h.to(torch.int64).numpy()

    def finish(self) -> TensorStats:
        mean = (
            (self._chan_sum / max(self._chan_count, 1)).numpy()
            if self._chan_sum is not None
            else np.zeros(0)
        )
        lo = self.lo if np.isfinite(self.lo) else 0.0
        hi = self.hi if np.isfinite(self.hi) else 0.0
        return TensorStats(lo, hi, self.hist.copy(), mean.astype(np.float32))
