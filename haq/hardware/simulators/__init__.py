"""Analytic cycle-level simulators of the bit-flexible accelerators HAQ targeted.

- `bitfusion`: Bit Fusion (Sharma et al., ISCA 2018), spatial fusion of 2-bit BitBricks;
  natively 2/4/8-bit operands (1 -> 2, 3 -> 4, 5..7 -> 8 bits, padded).
- `bismo`: BISMO (Umuroglu et al., FPL 2018 / TRETS 2019), bit-serial matrix multiply;
  any width, time proportional to w * a.

Neither has a float unit: float layers cannot run on these targets. Each has ``edge`` and
``cloud`` presets whose every number names its source (`describe_params`). `TARGETS` maps the
hardware-profile ids (``npu-bitfusion-edge`` ...) to (simulator, preset);
`haq.hardware.simulators.files` turns them into latency/energy tables and profile YAMLs (built
through `haq.hardware.builders`; `experiments/simulate_npu.py` regenerates the shipped ones).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from haq.hardware.simulators import bismo, bitfusion
from haq.hardware.simulators.base import Gemm, LayerCost, describe_params

TABLE_BITS = tuple(range(2, 9))  # bits the tables cover (haq's MIN_BITS is 2)


@dataclass(frozen=True)
class SimTarget:
    """A hardware-profile id bound to a simulator and one of its presets."""

    id: str
    family: str  # "bitfusion" | "bismo"
    params: Any
    module: str

    def simulate(self, g: Gemm, w_bits: int, a_bits: int) -> LayerCost:
        fn: Callable[..., LayerCost] = (
            bitfusion.simulate if self.family == "bitfusion" else bismo.simulate
        )
        return fn(g, w_bits, a_bits, self.params)

    def kernel_class(self, w_bits: int, a_bits: int) -> str:
        """The ``w{w}a{a}`` class that really executes (w, a): Bit Fusion pads to 2/4/8."""
        if self.family == "bitfusion":
            w_bits, a_bits = bitfusion.native_bits(w_bits), bitfusion.native_bits(a_bits)
        return f"w{w_bits}a{a_bits}"

    def kernel_bits(self) -> tuple[int, ...]:
        """The widths that are kernel classes of their own on this target (within 2..8)."""
        if self.family == "bitfusion":
            return bitfusion.NATIVE_BITS
        return TABLE_BITS

    def describe(self) -> dict[str, dict[str, Any]]:
        return describe_params(self.params)


TARGETS: dict[str, SimTarget] = {
    f"npu-{fam}-{name}": SimTarget(
        f"npu-{fam}-{name}", fam, params, f"haq.hardware.simulators.{fam}"
    )
    for fam, mod in (("bitfusion", bitfusion), ("bismo", bismo))
    for name, params in mod.PRESETS.items()
}

__all__ = ["TABLE_BITS", "TARGETS", "Gemm", "LayerCost", "SimTarget", "bismo", "bitfusion"]
