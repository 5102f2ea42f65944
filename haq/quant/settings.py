"""How a BitConfig is turned into numbers: a plain, typed dataclass (torchao style)."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from haq.errors import HaqError
from haq.ptq import canonical_ptq
from haq.quant.observers import OBSERVERS

GRANULARITIES = ("channel", "tensor", "group")


@dataclass(frozen=True)
class QuantSettings:
    """Quantization scheme shared by every layer of a config.

    granularity: weight scales per output ``channel`` (default), per ``tensor``, or per
        ``group`` of ``group_size`` along the reduction axis.
    observer: activation range from ``minmax``, ``percentile`` (``percentile``) or ``mse``.
    ptq: post-training refinements, ``none`` or methods joined by ``+`` (applied as
        cle -> adaround -> bias-correction):
        ``cle`` cross-layer equalization of conv/linear pairs (`haq.quant.equalize`);
        ``adaround`` learned up/down rounding per (layer, bits) on calibration data
        (`haq.quant.adaround`, cached on disk); ``bias-correction`` removes the mean output
        shift the weight error causes (per-channel input means of the calibration data).
    adaround_iterations: optimisation steps per (layer, bits) rounding.
    fold_bn: fold BatchNorm into the preceding conv before quantizing weights (as deployed).
    requantize_outputs: integer-kernel layers (weights and activations at 8 bits or fewer)
        write 8-bit outputs, as int8 kernels (QLinearConv, QGemm) do; a ReLU that directly
        follows is absorbed into that output range (zero point 0), as ORT's quantizer does.
    """

    granularity: str = "channel"
    group_size: int = 128
    observer: str = "minmax"
    percentile: float = 99.99
    ptq: str = "none"
    adaround_iterations: int = 1000
    fold_bn: bool = True
    requantize_outputs: bool = True

    def __post_init__(self) -> None:
        object.__setattr__(self, "ptq", canonical_ptq(self.ptq))
        if self.adaround_iterations < 1:
            raise HaqError(f"AdaRound iterations {self.adaround_iterations} must be positive")
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

    @property
    def ptq_steps(self) -> tuple[str, ...]:
        return () if self.ptq == "none" else tuple(self.ptq.split("+"))

    @property
    def cle(self) -> bool:
        return "cle" in self.ptq_steps

    @property
    def adaround(self) -> bool:
        return "adaround" in self.ptq_steps

    @property
    def bias_correction(self) -> bool:
        return "bias-correction" in self.ptq_steps

    @property
    def needs_calibration(self) -> bool:
        """Whether weights alone need calibration images (activations always do)."""
        return self.adaround or self.bias_correction

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
