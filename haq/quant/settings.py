"""How a BitConfig is turned into numbers: a plain, typed dataclass (torchao style)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from typing import Any

from haq.config import ACTIVATION_MODES, GRANULARITIES, BitConfig, Precision
from haq.errors import HaqError
from haq.ptq import ROUNDING_METHODS, canonical_ptq
from haq.quant.observers import OBSERVERS
from haq.quant.quantizers import MATMULNBITS_BITS

#: How weight-only group-wise layers map weights to integers: a grid symmetric about 0, or
#: ``[min, max]`` of each group with a zero point (MatMulNBits' ``zero_points``).
WEIGHT_MAPPINGS = ("symmetric", "asymmetric")
#: Dynamic activation mode -> what one input's grid covers (`fake_quant_dynamic`).
DYNAMIC_GRIDS = {"dynamic": "tensor", "dynamic-token": "token"}


@dataclass(frozen=True)
class QuantSettings:
    """Quantization scheme shared by every layer of a config.

    granularity: weight scales per output ``channel`` (default), per ``tensor``, or per
        ``group`` of ``group_size`` along the reduction axis.
    observer: activation range from ``minmax``, ``percentile`` (``percentile``) or ``mse``.
    ptq: post-training refinements, ``none`` or methods joined by ``+`` (applied as
        cle -> adaround or gptq -> bias-correction):
        ``cle`` cross-layer equalization of conv/linear pairs (`haq.quant.equalize`);
        ``adaround`` learned up/down rounding per (layer, bits) on calibration data
        (`haq.quant.adaround`); ``gptq`` column-by-column rounding with the error spread onto
        the columns left (`haq.quant.gptq`; both cached on disk, `haq.quant.rounding`);
        ``bias-correction`` removes the mean output shift the weight error causes
        (per-channel input means of the calibration data).
    adaround_iterations: optimisation steps per (layer, bits) rounding.
    activations: ``static`` (default): one calibrated grid per layer input; ``dynamic``: each
        input quantized on the uint8 grid of its own range at run time (8 bits, Linear layers
        only, no calibration): ORT's dynamic int8 (``DynamicQuantizeMatMul``), the CPU kernel
        for transformers, whose activations no static grid fits; ``dynamic-token``: the same
        with one grid per token (row), so an outlier token no longer coarsens every other
        token's grid (`haq.export.dynamic_int8`: MatMulInteger with per-row scales; the text
        models' default).
    weight_only_granularity: weight scales of weight-only layers (``w4a32``), when they differ
        from ``granularity``: ``group`` for text models, whose weight-only Linears run as
        MatMulNBits while their int8 ones need per-channel scales.
    weight_only_mapping: ``symmetric`` (default) or ``asymmetric``: group-wise weight-only
        layers (MatMulNBits) get ``2^bits`` levels on each group's ``[min, max]`` (with 0) and
        a zero point per group, which uses the one level symmetric grids leave out and fits
        skewed groups; other layers stay symmetric (their int8 kernels take none).
    matmulnbits_accuracy_level: the ``accuracy_level`` group-wise weight-only Linears (2, 4
        or 8 bits) export with: 4 (default, fast) has ORT quantize their input to int8 per
        block of ``group_size``, which the simulation does too; 0 keeps it float.
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
    activations: str = "static"
    weight_only_granularity: str | None = None
    weight_only_mapping: str = "symmetric"
    matmulnbits_accuracy_level: int = 4

    def __post_init__(self) -> None:
        object.__setattr__(self, "ptq", canonical_ptq(self.ptq))
        if self.adaround_iterations < 1:
            raise HaqError(f"AdaRound iterations {self.adaround_iterations} must be positive")
        if self.granularity not in GRANULARITIES:
            raise HaqError(
                f"unknown weight granularity {self.granularity!r}; use one of {', '.join(GRANULARITIES)}"
            )
        if self.weight_only_granularity not in (None, *GRANULARITIES):
            raise HaqError(f"unknown weight-only granularity {self.weight_only_granularity!r}; "
                           f"use one of {', '.join(GRANULARITIES)}")  # fmt: skip
        if self.activations not in ACTIVATION_MODES:
            raise HaqError(f"unknown activation quantization {self.activations!r}; use one of "
                           f"{', '.join(ACTIVATION_MODES)}")  # fmt: skip
        if self.weight_only_mapping not in WEIGHT_MAPPINGS:
            raise HaqError(f"unknown weight-only mapping {self.weight_only_mapping!r}; use one "
                           f"of {', '.join(WEIGHT_MAPPINGS)}")  # fmt: skip
        if self.weight_only_mapping == "asymmetric" and self.weight_only_group is None:
            raise HaqError("asymmetric weights apply to group-wise weight-only layers "
                           "(MatMulNBits: a text model's, or --granularity group); drop "
                           "--weight-only-mapping asymmetric")  # fmt: skip
        if self.matmulnbits_accuracy_level not in (0, 1, 2, 3, 4):
            raise HaqError(f"MatMulNBits accuracy_level must be 0..4, not "
                           f"{self.matmulnbits_accuracy_level}")  # fmt: skip
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
    def learned_rounding(self) -> str | None:
        """The method choosing the integer weights on calibration data (adaround, gptq), or
        None for round-to-nearest."""
        return next((m for m in self.ptq_steps if m in ROUNDING_METHODS), None)

    @property
    def bias_correction(self) -> bool:
        return "bias-correction" in self.ptq_steps

    @property
    def weight_only_group(self) -> int | None:
        """Weights per scale of weight-only layers when those are group-wise (else None)."""
        grouped = (self.weight_only_granularity or self.granularity) == "group"
        return self.group_size if grouped else None

    @property
    def dynamic(self) -> bool:
        return self.activations in DYNAMIC_GRIDS

    @property
    def dynamic_grid(self) -> str | None:
        """What one dynamic grid covers: ``tensor`` (a whole input), ``token`` (one row of
        it), or None (static grids)."""
        return DYNAMIC_GRIDS.get(self.activations)

    def weight_granularity(self, precision: Precision) -> str:
        """The weight scale granularity a layer at ``precision`` uses."""
        if precision.weight_only and self.weight_only_granularity is not None:
            return self.weight_only_granularity
        return self.granularity

    def weight_symmetric(self, precision: Precision) -> bool:
        """Whether a layer at ``precision`` has a symmetric weight grid (no zero points):
        asymmetric settings have group-wise weight-only layers (checked at construction)."""
        return not (self.weight_only_mapping == "asymmetric" and precision.weight_only)

    def kernel_args(self, precision: Precision) -> tuple[str, str]:
        """(weight granularity, activation mode) of a layer at ``precision``: what a target's
        kernel rules (`HardwareProfile.can_run`) need besides the bits."""
        return self.weight_granularity(precision), self.activations

    @property
    def cost_options(self) -> dict[str, Any]:
        """What a cost model needs of these settings besides ``granularity`` (`cost_model_for`)."""
        return {"weight_only_group": self.weight_only_group, "activations": self.activations,
                "weight_only_zero_points": self.weight_only_mapping == "asymmetric"}  # fmt: skip

    def calibrates(self, config: BitConfig) -> bool:
        """Whether applying ``config`` needs calibration images (static activation grids, or
        a refinement that learns on them)."""
        return self.needs_calibration or (config.quantizes_activations and not self.dynamic)

    @property
    def needs_calibration(self) -> bool:
        """Whether weights alone need calibration images (activations always do)."""
        return self.learned_rounding is not None or self.bias_correction

    def to_dict(self) -> dict[str, Any]:
        """The fields; the text-model ones only when set, so the cache keys of every other
        setting stay what they were before those fields existed."""
        d = asdict(self)
        for key, default in (("activations", "static"), ("weight_only_granularity", None),
                             ("weight_only_mapping", "symmetric")):  # fmt: skip
            if d[key] == default:
                del d[key]
        if "group" not in (self.granularity, self.weight_only_granularity):
            del d["matmulnbits_accuracy_level"]  # no MatMulNBits layer: no effect
        return d

    def int8_input_blocks(self, precision: Precision, linear: bool) -> int | None:
        """The block size a layer's input is quantized in by ORT's MatMulNBits at
        accuracy_level 4 (None: the input stays float)."""
        grouped = self.weight_granularity(precision) == "group"
        nbits = precision.weight_only and precision.w_bits in MATMULNBITS_BITS
        if linear and grouped and nbits and self.matmulnbits_accuracy_level == 4:
            return self.group_size
        return None


def text_settings(settings: QuantSettings) -> QuantSettings:
    """``settings`` for a text model on ONNX Runtime's CPU kernels: dynamic int8 Linears with
    a grid per token and group-wise weight-only ones (``MatMulNBits``)."""
    return replace(settings, activations="dynamic-token", weight_only_granularity="group")
