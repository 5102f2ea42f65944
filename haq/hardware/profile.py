"""Hardware profiles: what a target is, where its numbers come from, and which kernel really
runs each (weight bits, activation bits) pair on each op kind.

One YAML per target in ``hardware_profiles/<id>.yaml`` (see ``hardware_profiles/README.md``).
Latency tables are keyed by *kernel class* (e.g. ``fp32``, ``int8``), not by bit pair: W6A8 on
an int8-only CPU runs the int8 kernel and costs exactly that, and a 4-bit conv weight on ORT's
CPU provider costs its dequantize-then-float fallback. That is how no speed is ever credited
for bits the hardware does not exploit.

Contract (implementation in progress; field names are fixed):
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

Provenance = Literal["measured", "simulated", "published"]
OP_KINDS = ("conv", "dwconv", "gconv", "linear")


@dataclass(frozen=True)
class KernelRule:
    """First matching rule decides the kernel class of (op kind, w_bits, a_bits, granularity).

    ``w`` / ``a``: inclusive [lo, hi] bit range, or None meaning float on that side.
    ``granularity``: None matches any.
    """

    ops: tuple[str, ...]
    w: tuple[int, int] | None
    a: tuple[int, int] | None
    kernel: str
    granularity: str | None = None


@dataclass(frozen=True)
class HardwareProfile:
    id: str
    kind: Literal["cpu", "gpu", "npu"]
    description: str
    provenance: Provenance
    provenance_details: dict[str, Any]  # measured: machine, cpu_flags, runtime, version, date;
    # simulated: simulator + parameters with sources; published: source citation
    kernels: dict[str, str]  # kernel class -> what really executes it (for humans)
    rules: tuple[KernelRule, ...]
    batch: int
    threads: tuple[int, ...]
    tables: dict[str, Path]  # "layers" (required), "transitions" (optional) -> resolved paths
    energy: bool = False  # whether tables carry energy_uj
    peaks: dict[str, float] = field(
        default_factory=dict
    )  # e.g. {"int8_gops": ..., "fp32_gflops": ..., "bandwidth_gbs": ...}
    path: Path | None = None
