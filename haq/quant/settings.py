"""How a BitConfig is turned into numbers: a plain, typed dataclass (torchao style)."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from haq.errors import HaqError
from haq.quant.observers import OBSERVERS

GRANULARITIES = ("channel", "tensor", "group")


@dataclass(frozen=True)
class QuantSettings:
    """Quantization scheme shared by every layer of a config.

    granularity: weight scales per output ``channel`` (default), per ``tensor``, or per
        ``group`` of ``group_size`` along the reduction axis.
    observer: activation range from ``minmax``, ``percentile`` (``percentile``) or ``mse``.
    bias_correction: remove the mean output shift the weight error causes (analytic, from
        calibration per-channel input means; no extra data pass).
    fold_bn: fold BatchNorm into the preceding conv before quantizing weights (as deployed).
    requantize_outputs: integer-kernel layers (weights and activations at 8 bits or fewer)
        write 8-bit outputs, as int8 kernels (QLinearConv, QGemm) do; a ReLU that directly
        follows is absorbed into that output range (zero point 0), as ORT's quantizer does.
    """

    granularity: str = "channel"
    group_size: int = 128
    observer: str = "minmax"
    percentile: float = 99.99
    bias_correction: bool = False
    fold_bn: bool = True
    requantize_outputs: bool = True

    def __post_init__(self) -> None:
        if self.granularity not in GRANULARITIES:
            raise HaqError(
                f"unknown weight granularity {self.granularity!r}; use one of {', '.join(GRANULARITIES)}"
            )
        if self.observer not in OBSERVERS:
            raise HaqError(f"unknown observer {self.observer!r}; use one of {', '.join(OBSERVERS)}")
        if self.group_size < 1:
            raise HaqError(f"group size {self.group_size} must be positive")
        if not 50.0 < self.percentile <= 100.0:
            raise HaqError(f"percentile {self.percentile} must be in (50, 100]")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
