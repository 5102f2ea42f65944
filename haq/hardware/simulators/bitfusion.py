"""Cycle-level analytic model of Bit Fusion (Sharma et al., "Bit Fusion: Bit-Level Dynamically
Composable Architecture for Accelerating Deep Neural Networks", ISCA 2018).

Architecture: a weight-stationary systolic array of ``rows x cols`` Fusion Units (FU); each FU
holds 16 BitBricks (2-bit x 2-bit multipliers) that fuse spatially into 1, 2, 4, 8 or 16 fused
PEs. A w x a product needs (w/2) * (a/2) bricks, so one FU does
``perf = (8 / w) * (8 / a)`` products per cycle for w, a in {2, 4, 8} (16 at w2a2, 1 at w8a8),
and the products of one FU are summed into one partial sum, i.e. the extra parallelism goes
into the reduction (K) dimension: a K tile is ``rows * perf`` long. Widths are fused in powers
of two: 1-bit runs on a 2-bit brick, 3 -> 4, 5..7 -> 8 bits (the authors' simulator,
``get_perf_factor``: ``int(8 / max(bits, 2))``), and operands are stored at that padded width.
Widths above 8 take ``ceil(w/8) * ceil(a/8)`` temporal iterations at 8-bit speed.

Per layer (see `haq.hardware.simulators.base` for the GEMM mapping and memory model):

- compute cycles = M * passes + (rows + cols) pipeline fill once per layer, where
  passes = `packed_k_tiles(cols, rows * perf)` (same loop as the authors' ``im2col`` compute
  model, plus block-diagonal packing of grouped/depthwise convs, an assumption of ours);
- memory: DRAM bytes / (``dram_bits_per_cycle`` * clock);
- latency = max(compute, memory); no other fixed per-layer overhead (the authors' compute
  model uses ``overhead = 0``);
- energy = compute cycles * array energy per cycle (their model: busy cycles x core dynamic
  energy) + SRAM bits (cheapest of input-/output-/weight-stationary access orders, as in their
  ``optimizer.py``) x CACTI 45 nm per-bit energies + DRAM bits x 15 pJ/bit. Leakage ignored.

Sources: the authors' simulator, github.com/hsharma35/bitfusion (``bf_e_conf.ini``,
``bf_s_conf.ini``, ``results/systolic_array_synth.csv``, ``bitfusion/sram/cacti_sweep.csv``,
``src/simulator/stats.py``) and the paper. The ``cloud`` preset is the repository's
``bf_s_conf.ini`` as written (same 16x32 array, 980 MHz, 128 KB buffers, 4096-bit memory
interface); whether the paper's GPU-comparison configuration also used a larger array was not
verified. Energy figures are the 45 nm ones for both presets (no other node's figures exist).
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

NATIVE_BITS = (2, 4, 8)
_REPO = "github.com/hsharma35/bitfusion"
_CACTI = (
    f"CACTI 45 nm sweep in {_REPO} bitfusion/sram/cacti_sweep.csv (32-bit words), "
    "log-log interpolated at the bank size"
)
# (bank bytes, read pJ, write pJ) per 32-bit access, 45 nm, from the authors' CACTI sweep
# (read/write 'read_energy_nJ'/'write_energy_nJ' columns; the 512 B point is a 1-RW-port bank).
_CACTI_POINTS = (
    (128, 0.6837, 0.9253),
    (512, 1.0610, 2.3387),
    (1024, 1.1332, 3.2960),
    (2048, 1.9032, 3.6385),
    (4096, 3.4295, 4.3101),
    (8192, 6.3916, 5.5627),
    (16384, 9.9817, 8.4209),
)


def cacti_pj_per_bit(bank_bytes: float) -> tuple[float, float]:
    """(read, write) pJ per bit of a 32-bit-word SRAM bank of ``bank_bytes`` (45 nm)."""
    pts = _CACTI_POINTS
    x = min(max(bank_bytes, pts[0][0]), pts[-1][0])
    for (s0, r0, w0), (s1, r1, w1) in zip(pts, pts[1:], strict=False):
        if s0 <= x <= s1:
            t = math.log(x / s0) / math.log(s1 / s0)
            read = math.exp(math.log(r0) + t * (math.log(r1) - math.log(r0)))
            write = math.exp(math.log(w0) + t * (math.log(w1) - math.log(w0)))
            return read / 32, write / 32
    raise AssertionError("unreachable")


@dataclass(frozen=True)
class BitFusionParams:
    """One Bit Fusion configuration; ``sources`` says where each number comes from."""

    name: str
    rows: int = param(16, "fusion units (reduction inputs)")
    cols: int = param(32, "fusion units (outputs)")
    bricks_per_fu: int = param(16, "2-bit BitBricks")
    clock_mhz: float = param(500.0, "MHz")
    ibuf_kb: float = param(32.0, "KiB")
    wbuf_kb: float = param(64.0, "KiB")
    obuf_kb: float = param(16.0, "KiB")
    dram_bits_per_cycle: int = param(192, "bit/cycle")
    fu_pj_per_cycle: float = param(0.4592, "pJ per fusion unit per cycle (dynamic)")
    ibuf_read_pj_bit: float = param(0.0, "pJ/bit")
    wbuf_read_pj_bit: float = param(0.0, "pJ/bit")
    obuf_read_pj_bit: float = param(0.0, "pJ/bit")
    obuf_write_pj_bit: float = param(0.0, "pJ/bit")
    dram_pj_bit: float = param(15.0, "pJ/bit")
    psum_bits: int = param(32, "bit")
    sources: dict[str, str] = sources_field()

    @property
    def bandwidth_gbs(self) -> float:
        return self.dram_bits_per_cycle / 8 * self.clock_mhz * 1e6 / 1e9

    @property
    def label(self) -> str:
        return f"Bit Fusion {self.rows}x{self.cols} FUs @ {self.clock_mhz:g} MHz"

    def peak_gops(self, w_bits: int, a_bits: int) -> float:
        """Peak giga-ops/s (2 ops per MAC) at (w, a)."""
        perf, temporal = fusion(w_bits, a_bits)
        return 2 * self.rows * self.cols * perf * self.clock_mhz * 1e6 / temporal / 1e9


def _with_sram(p: BitFusionParams) -> BitFusionParams:
    """Fill the SRAM per-bit energies from the CACTI sweep at this preset's bank sizes.

    Banking as in the authors' simulator: WBUF rows*cols banks, IBUF rows banks, OBUF cols banks.
    """
    from dataclasses import replace

    wb = p.wbuf_kb * 1024 / (p.rows * p.cols)
    ib = p.ibuf_kb * 1024 / p.rows
    ob = p.obuf_kb * 1024 / p.cols
    srcs = dict(p.sources)
    srcs["wbuf_read_pj_bit"] = f"{_CACTI}, WBUF bank {wb:g} B (wbuf / (rows*cols) banks)"
    srcs["ibuf_read_pj_bit"] = f"{_CACTI}, IBUF bank {ib:g} B (ibuf / rows banks)"
    srcs["obuf_read_pj_bit"] = f"{_CACTI}, OBUF bank {ob:g} B (obuf / cols banks)"
    srcs["obuf_write_pj_bit"] = srcs["obuf_read_pj_bit"]
    return replace(
        p,
        wbuf_read_pj_bit=cacti_pj_per_bit(wb)[0],
        ibuf_read_pj_bit=cacti_pj_per_bit(ib)[0],
        obuf_read_pj_bit=cacti_pj_per_bit(ob)[0],
        obuf_write_pj_bit=cacti_pj_per_bit(ob)[1],
        sources=srcs,
    )


_COMMON_SOURCES = {
    "bricks_per_fu": "Sharma et al. ISCA 2018: a Fusion Unit is 4x4 = 16 BitBricks of 2x2 bits",
    "fu_pj_per_cycle": (
        f"{_REPO} results/systolic_array_synth.csv: 4x4-FU array (8-bit max, 2-bit min), 45 nm, "
        "3,673,500 nW dynamic at 500 MHz = 7.347 pJ/cycle / 16 FUs; scaled linearly with FU "
        "count as the authors' simulator does; used per cycle at any clock (assumed)"
    ),
    "dram_pj_bit": f"{_REPO} src/simulator/stats.py get_energy(dram_cost=15e-3 nJ/bit)",
    "psum_bits": f"{_REPO} src/optimizer/optimizer.py (oprec = 32)",
}

EDGE = _with_sram(
    BitFusionParams(
        name="edge",
        sources={
            **_COMMON_SOURCES,
            "rows": f"{_REPO} bf_e_conf.ini (a = 16); Sharma et al. ISCA 2018 (16x32 FUs)",
            "cols": f"{_REPO} bf_e_conf.ini (c = 32); Sharma et al. ISCA 2018 (16x32 FUs)",
            "clock_mhz": f"{_REPO} bf_e_conf.ini (frequency = 500000000); paper: 500 MHz, 45 nm",
            "ibuf_kb": f"{_REPO} bf_e_conf.ini (Act_SRAM = 32768 B)",
            "wbuf_kb": f"{_REPO} bf_e_conf.ini (Wgt_SRAM = 65536 B)",
            "obuf_kb": f"{_REPO} bf_e_conf.ini (Out_SRAM = 16384 B)",
            "dram_bits_per_cycle": f"{_REPO} bf_e_conf.ini (if_width = 192) -> 12 GB/s at 500 MHz",
        },
    )
)

CLOUD = _with_sram(
    BitFusionParams(
        name="cloud",
        clock_mhz=980.0,
        ibuf_kb=128.0,
        wbuf_kb=128.0,
        obuf_kb=128.0,
        dram_bits_per_cycle=4096,
        sources={
            **_COMMON_SOURCES,
            "rows": f"{_REPO} bf_s_conf.ini (a = 16; array not scaled up in that file)",
            "cols": f"{_REPO} bf_s_conf.ini (c = 32; array not scaled up in that file)",
            "clock_mhz": f"{_REPO} bf_s_conf.ini (frequency = 980000000)",
            "ibuf_kb": f"{_REPO} bf_s_conf.ini (Act_SRAM = 131072 B)",
            "wbuf_kb": f"{_REPO} bf_s_conf.ini (Wgt_SRAM = 131072 B)",
            "obuf_kb": f"{_REPO} bf_s_conf.ini (Out_SRAM = 131072 B)",
            "dram_bits_per_cycle": (
                f"{_REPO} bf_s_conf.ini (if_width = 4096) -> 502 GB/s at 980 MHz"
            ),
            "fu_pj_per_cycle": _COMMON_SOURCES["fu_pj_per_cycle"]
            + "; 45 nm figure reused for this preset (assumed: no figure for another node)",
            "dram_pj_bit": _COMMON_SOURCES["dram_pj_bit"]
            + "; reused for this 4096-bit interface (assumed; an HBM-class link costs less)",
        },
    )
)

PRESETS: dict[str, BitFusionParams] = {"edge": EDGE, "cloud": CLOUD}


def native_bits(bits: int) -> int:
    """The width Bit Fusion executes ``bits`` at: 1-2 -> 2, 3-4 -> 4, 5-8 -> 8, >8 -> 8k."""
    if bits < 1:
        raise ValueError(f"bits must be >= 1, got {bits}")
    for b in NATIVE_BITS:
        if bits <= b:
            return b
    return 8 * math.ceil(bits / 8)


def fusion(w_bits: int, a_bits: int) -> tuple[int, int]:
    """(products per fusion unit per cycle, temporal iterations) for a (w, a) pair."""
    w, a = native_bits(w_bits), native_bits(a_bits)
    if w <= 8 and a <= 8:
        return (8 // w) * (8 // a), 1
    return (8 // min(w, 8)) * (8 // min(a, 8)), math.ceil(w / 8) * math.ceil(a / 8)


def _sram_energy_pj(g: Gemm, p: BitFusionParams, wb: int, ab: int) -> float:
    """On-chip buffer energy: cheapest stationarity order per group, as in the authors' code."""
    m, k, n, ob = g.m, g.k, g.n, p.psum_bits
    orders = {
        "is": (m * k * ab, m * k * n * wb, m * k * n * ob),
        "os": (m * n * k * ab, m * n * k * wb, m * n * ob),
        "ws": (k * n * m * ab, k * n * wb, k * n * m * ob),
    }
    act, wgt, out = min(orders.values(), key=sum)
    per_group = (
        act * p.ibuf_read_pj_bit
        + wgt * p.wbuf_read_pj_bit
        + out * (p.obuf_read_pj_bit + p.obuf_write_pj_bit)
    )
    return per_group * g.groups


def simulate(g: Gemm, w_bits: int, a_bits: int, p: BitFusionParams = EDGE) -> LayerCost:
    """Latency and energy of one layer at (w_bits, a_bits) on Bit Fusion ``p``."""
    perf, temporal = fusion(w_bits, a_bits)
    wb, ab = native_bits(w_bits), native_bits(a_bits)
    passes = packed_k_tiles(g, p.cols, p.rows * perf)
    cycles = (g.m * passes * temporal) + p.rows + p.cols
    compute_us = cycles / p.clock_mhz
    dram = dram_traffic_bytes(g, wb, ab, ab, p.wbuf_kb * 1024, p.ibuf_kb * 1024)
    memory_us = dram / (p.bandwidth_gbs * 1e3)
    energy_pj = (
        cycles * p.rows * p.cols * p.fu_pj_per_cycle
        + _sram_energy_pj(g, p, wb, ab)
        + dram * 8 * p.dram_pj_bit
    )
    fused = 16 // perf if temporal == 1 else 16
    kernel = f"{p.label}: w{wb}a{ab} on {fused}-brick fused PEs, {perf} products/FU/cycle" + (
        f", {temporal} temporal iterations" if temporal > 1 else ""
    )
    return LayerCost(
        latency_us=max(compute_us, memory_us),
        compute_us=compute_us,
        memory_us=memory_us,
        energy_uj=energy_pj * 1e-6,
        dram_bytes=dram,
        compute_cycles=int(cycles),
        kernel=kernel,
    )
