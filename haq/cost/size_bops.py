"""Target-independent costs: model size in bytes and bit operations (BOPs).

Size counts each layer's weights at their bit width (float: 32 bits) plus a float32 bias per
output channel and one float32 scale per output channel for quantized weights (per group of
``weight_only_group`` weights along the input for weight-only layers stored so, plus a zero
point of the weights' width per group with ``zero_points``); layers outside
the table (BatchNorm folded away, pooling) are not counted. BOPs weight each MAC by
``w_bits * a_bits``, as HAWQ and AIMET do.
"""

from __future__ import annotations

import numpy as np

from haq.config import FLOAT_BITS, BitConfig
from haq.cost.base import CostEstimate
from haq.models.spec import LayerSpec


class SizeBopsModel:
    """Size and BOPs from the layer table alone; no latency or energy."""

    name = "size-bops"

    def __init__(
        self,
        layers: list[LayerSpec],
        weight_only_group: int | None = None,
        zero_points: bool = False,
    ) -> None:
        self.names = [s.name for s in layers]
        self.macs = np.array([s.macs for s in layers], dtype=np.int64)
        self.out_ch = np.array([s.out_channels for s in layers], dtype=np.int64)
        self.weights = (
            np.array([s.params for s in layers], dtype=np.int64) - self.out_ch
        )  # params less bias
        self.weights = np.maximum(self.weights, 0)
        self._grouped = weight_only_group is not None
        k = -(-self.weights // np.maximum(self.out_ch, 1))  # weights per output channel
        self.k_groups = -(-k // (weight_only_group or 1))  # groups per output channel
        self.group_scales = self.out_ch * self.k_groups
        self.zero_points = zero_points and self._grouped

    def bits(self, config: BitConfig) -> tuple[np.ndarray, np.ndarray]:
        """Weight and activation bits per layer (32 = float), in layer-table order."""
        w = np.fromiter(
            ((config[n].w_bits or FLOAT_BITS) for n in self.names),
            dtype=np.int64,
            count=len(self.names),
        )
        a = np.fromiter(
            ((config[n].a_bits or FLOAT_BITS) for n in self.names),
            dtype=np.int64,
            count=len(self.names),
        )
        return w, a

    def size_bytes(self, w_bits: np.ndarray, a_bits: np.ndarray | None = None) -> int:
        per_layer = self.out_ch
        if self._grouped and a_bits is not None:
            per_layer = np.where(a_bits >= FLOAT_BITS, self.group_scales, self.out_ch)
        scales = np.where(w_bits < FLOAT_BITS, per_layer * 4, 0)
        zps = 0
        if self.zero_points and a_bits is not None:  # packed at the weights' width, per row
            row_bytes = -(-self.k_groups * w_bits // 8)
            zps = int(np.where((a_bits >= FLOAT_BITS) & (w_bits < FLOAT_BITS),
                               self.out_ch * row_bytes, 0).sum())  # fmt: skip
        weights = (self.weights * w_bits).sum() // 8
        return int(weights + (self.out_ch * 4).sum() + scales.sum() + zps)

    def score(self, config: BitConfig) -> CostEstimate:
        w, a = self.bits(config)
        return CostEstimate(
            None, None, self.size_bytes(w, a), int((self.macs * w * a).sum()), self.name
        )
