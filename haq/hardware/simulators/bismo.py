"""Cycle-level analytic model of BISMO (Umuroglu, Rasnayake, Sjalander, "BISMO: A Scalable
Bit-Serial Matrix Multiplication Overlay for Reconfigurable Computing", FPL 2018; extended in
"Optimizing Bit-Serial Matrix Multiplication for Reconfigurable Computing", ACM TRETS 2019).

Architecture: a ``dm x dn`` array of dot-product units (DPU), each doing one ``dk``-bit binary
dot product (AND + popcount) per cycle; an integer (w x a)-bit matrix product is w * a binary
matrix products of bit planes, shifted and accumulated. Any width 1..8 (and beyond) runs
natively; data is stored bit-serially at exactly w and a bits.

Per layer (GEMM mapping and memory model: `haq.hardware.simulators.base`):

- compute cycles = ceil(M / dm) * `packed_k_tiles(dn, dk)` * w * a (lhs = activations, rhs =
  weights; grouped/depthwise convs packed block-diagonally, an assumption of ours);
- memory: DRAM bytes / (AXI ports * port width * clock); im2col on chip (BISMO v2's sliding
  window unit), so the raw input map is read;
- latency = max(compute, memory); no fixed per-layer overhead (none given in the papers);
- energy = busy cycles * 2 * dm * dn * dk binary ops * ``pj_per_binary_op`` + DRAM bits *
  ``dram_pj_bit``. The per-op figure is board power over peak binary throughput (Ultra96), so it
  already contains BRAM, static and idle board power: BISMO energies are upper bounds, useful
  for ratios between bit widths, not as absolute joules.

HAQ (Wang et al., CVPR 2019) ran BISMO as its "edge" (Xilinx Zynq-7020) and "cloud" (Xilinx
VU9P) latency targets. The array shapes, AXI ports and BRAM counts below are those of HAQ's
hardware table as we recall it (edge 8x8 PEs, 4 x 64-bit AXI, 140 x 36 Kb BRAM, batch 1;
cloud 16x16 PEs, 4 x 256-bit AXI, 2160 x 36 Kb BRAM, batch 16); we could not re-read the PDF
here, so they are marked as recalled. The BRAM counts equal the devices' totals (Xilinx data
sheets). HAQ gives no clock or dk: dk = 256 and 200 MHz are the BISMO repository's PYNQ-Z1
(Zynq-7020) build, assumed for the cloud preset too.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from haq.hardware.simulators.base import (
    Gemm,
    LayerCost,
    dram_traffic_bytes,
    packed_k_tiles,
    param,
    sources_field,
)

_REPO = "github.com/EECS-NTNU/bismo"
_HAQ = "HAQ (Wang et al. CVPR 2019) hardware table, as recalled (not re-read here)"


@dataclass(frozen=True)
class BismoParams:
    """One BISMO overlay configuration; ``sources`` says where each number comes from."""

    name: str
    dm: int = param(8, "DPU rows (lhs / activation rows)")
    dk: int = param(256, "bits per binary dot product")
    dn: int = param(8, "DPU columns (rhs / weight columns)")
    clock_mhz: float = param(200.0, "MHz")
    axi_ports: int = param(4, "ports")
    axi_port_bits: int = param(64, "bit")
    bram_36kb: int = param(140, "36 Kb BRAM blocks on the device")
    buffer_fraction: float = param(0.5, "share of BRAM used as matrix buffers")
    pj_per_binary_op: float = param(0.519, "pJ per binary op (board level)")
    dram_pj_bit: float = param(15.0, "pJ/bit")
    sources: dict[str, str] = sources_field()

    @property
    def bandwidth_gbs(self) -> float:
        return self.axi_ports * self.axi_port_bits / 8 * self.clock_mhz * 1e6 / 1e9

    @property
    def buffer_bytes(self) -> float:
        """On-chip matrix buffer bytes per operand (lhs = activations, rhs = weights)."""
        return self.bram_36kb * 36 * 1024 / 8 * self.buffer_fraction / 2

    @property
    def label(self) -> str:
        return f"BISMO {self.dm}x{self.dk}x{self.dn} @ {self.clock_mhz:g} MHz"

    def peak_gops(self, w_bits: int, a_bits: int) -> float:
        """Peak giga-ops/s (2 ops per MAC) at (w, a): binary peak / (w * a)."""
        return 2 * self.dm * self.dn * self.dk * self.clock_mhz * 1e6 / (w_bits * a_bits) / 1e9


_COMMON_SOURCES = {
    "dk": f"{_REPO} doc/platforms.md: every published build uses dk = 256 (PYNQ-Z1 8x256x8)",
    "buffer_fraction": "assumed: half the device BRAM holds lhs/rhs matrix buffers, split evenly",
    "pj_per_binary_op": (
        f"{_REPO} README: Ultra96 (16 nm UltraScale+) 15.4 binary TOPS at < 8 W board power "
        "-> 8 / 15.4e12 J = 0.519 pJ/op; an upper bound (board power); reused for both presets "
        "(assumed; the 28 nm Zynq-7020 is likely less efficient)"
    ),
    "dram_pj_bit": (
        "assumed: the 15 pJ/bit DRAM figure of the Bit Fusion simulator "
        "(github.com/hsharma35/bitfusion src/simulator/stats.py)"
    ),
}

EDGE = BismoParams(
    name="edge",
    sources={
        **_COMMON_SOURCES,
        "dm": f"{_HAQ}: edge PE array 8x8; {_REPO} doc/platforms.md: PYNQ-Z1 (Zynq-7020) 8x256x8",
        "dn": f"{_HAQ}: edge PE array 8x8; {_REPO} doc/platforms.md: PYNQ-Z1 (Zynq-7020) 8x256x8",
        "clock_mhz": f"{_REPO} doc/platforms.md: PYNQ-Z1 8x256x8 @ 200 MHz = 6.5 binary TOPS",
        "axi_ports": f"{_HAQ}: edge AXI 4 x 64 b (Zynq-7000 has four 64-bit AXI HP ports)",
        "axi_port_bits": f"{_HAQ}: edge AXI 4 x 64 b; ports assumed clocked at the overlay clock",
        "bram_36kb": f"{_HAQ}: edge 140 x 36 Kb = all BRAM of the XC7Z020 (Xilinx DS190)",
    },
)

CLOUD = BismoParams(
    name="cloud",
    dm=16,
    dn=16,
    axi_port_bits=256,
    bram_36kb=2160,
    sources={
        **_COMMON_SOURCES,
        "dm": f"{_HAQ}: cloud (Xilinx VU9P) PE array 16x16",
        "dn": f"{_HAQ}: cloud (Xilinx VU9P) PE array 16x16",
        "clock_mhz": (
            "assumed: 200 MHz as the PYNQ-Z1 build (HAQ gives no clock; BISMO's UltraScale+ "
            f"Ultra96 build ran 10x256x10 @ 300 MHz per {_REPO} doc/platforms.md)"
        ),
        "axi_ports": f"{_HAQ}: cloud AXI 4 x 256 b",
        "axi_port_bits": f"{_HAQ}: cloud AXI 4 x 256 b; ports assumed clocked at the overlay clock",
        "bram_36kb": f"{_HAQ}: cloud 2160 x 36 Kb = all BRAM of the VU9P (Xilinx DS923)",
    },
)

PRESETS: dict[str, BismoParams] = {"edge": EDGE, "cloud": CLOUD}


def simulate(g: Gemm, w_bits: int, a_bits: int, p: BismoParams = EDGE) -> LayerCost:
    """Latency and energy of one layer at (w_bits, a_bits) on BISMO ``p``."""
    if w_bits < 1 or a_bits < 1:
        raise ValueError(f"bits must be >= 1, got w{w_bits}a{a_bits}")
    planes = w_bits * a_bits
    cycles = math.ceil(g.m / p.dm) * packed_k_tiles(g, p.dn, p.dk) * planes
    compute_us = cycles / p.clock_mhz
    dram = dram_traffic_bytes(g, w_bits, a_bits, a_bits, p.buffer_bytes, p.buffer_bytes)
    memory_us = dram / (p.bandwidth_gbs * 1e3)
    energy_pj = cycles * 2 * p.dm * p.dn * p.dk * p.pj_per_binary_op + dram * 8 * p.dram_pj_bit
    return LayerCost(
        latency_us=max(compute_us, memory_us),
        compute_us=compute_us,
        memory_us=memory_us,
        energy_uj=energy_pj * 1e-6,
        dram_bytes=dram,
        compute_cycles=int(cycles),
        kernel=f"{p.label}: w{w_bits}a{a_bits} bit-serial, {planes} binary matrix passes",
    )
