"""Shared pieces of the analytic accelerator simulators: a layer as a grouped GEMM, the
tiling/roofline memory model, and sourced parameters.

Every layer (conv, depthwise/grouped conv, linear) is an im2col GEMM per group::

    (M x K) @ (K x N),  M = out_h * out_w * batch (linear: tokens * batch),
                        K = in_channels / groups * kh * kw,  N = out_channels / groups

Grouped and depthwise convs are mapped as one dense GEMM with a block-diagonal weight matrix
whose all-zero tiles are skipped (`packed_k_tiles`): each array column tile covers some output
channels, and only the K range of the groups those channels belong to is streamed.

Memory model (`dram_traffic_bytes`): weights at w bits, input activations at a bits, outputs
written at a bits (assumed: requantized on the way out to the layer's own activation width; the
table cannot know the consumer's width), bias 32 bit per output channel (assumed: BN folded
into a bias). The input feature map is read raw (im2col on chip). Half of each on-chip buffer
is usable (double buffering). The cheaper of two loop orders is taken: weights resident
(inputs re-streamed once per weight chunk) or inputs resident (weights re-streamed once per
input chunk). Grouped convs chunk by channel group, so each operand is read once.
Compute and DRAM transfers overlap perfectly: latency = max(compute, memory).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from haq.models.spec import LayerSpec

BIAS_BITS = 32


def param(default: Any, unit: str) -> Any:
    """A simulator parameter field; its source is given per preset in ``sources``."""
    return field(default=default, metadata={"unit": unit})


def sources_field() -> Any:
    """``sources``: parameter name -> where the number comes from (not part of eq/hash)."""
    return field(default_factory=dict, compare=False, hash=False, repr=False)


def describe_params(params: Any) -> dict[str, dict[str, Any]]:
    """``{name: {value, unit, source}}`` for every numeric parameter of a preset."""
    out: dict[str, dict[str, Any]] = {}
    srcs: Mapping[str, str] = params.sources
    for f in dataclasses.fields(params):
        if "unit" not in f.metadata:
            continue
        value = getattr(params, f.name)
        out[f.name] = {
            "value": round(value, 6) if isinstance(value, float) else value,
            "unit": f.metadata["unit"],
            "source": srcs.get(f.name, ""),
        }
    return out


@dataclass(frozen=True)
class Gemm:
    """One layer as ``groups`` independent (m x k) @ (k x n) GEMMs, plus its tensor sizes."""

    m: int
    k: int
    n: int
    groups: int
    in_elems: int  # input feature map elements (raw, before im2col), whole batch
    out_elems: int
    weight_elems: int
    bias_elems: int

    @property
    def macs(self) -> int:
        return self.m * self.k * self.n * self.groups

    @classmethod
    def from_signature(cls, sig: Mapping[str, Any]) -> Gemm:
        """From a latency-table signature (`haq.hardware.tables.signature`)."""
        batch = int(sig["batch"])
        cin, cout = int(sig["in_channels"]), int(sig["out_channels"])
        if sig["kind"] == "linear":
            m = int(sig["in_h"]) * batch  # tokens x batch
            return cls(m, cin, cout, 1, m * cin, m * cout, cin * cout, cout)
        groups = int(sig["groups"])
        k = cin // groups * int(sig["kernel_h"]) * int(sig["kernel_w"])
        m = int(sig["out_h"]) * int(sig["out_w"]) * batch
        return cls(
            m, k, cout // groups, groups,
            cin * int(sig["in_h"]) * int(sig["in_w"]) * batch, cout * m, cout * k, cout,
        )  # fmt: skip

    @classmethod
    def from_spec(cls, spec: LayerSpec, batch: int = 1) -> Gemm:
        from haq.hardware.tables import signature

        return cls.from_signature(signature(spec, batch))


def packed_k_tiles(g: Gemm, cols: int, k_tile: int) -> int:
    """Array passes (column tile x K tile) with block-diagonal packing of groups.

    Column tile j holds output channels [j*cols, (j+1)*cols); it needs the K rows of every
    group those channels belong to, streamed ``k_tile`` at a time. For groups == 1 this is
    ``ceil(n / cols) * ceil(k / k_tile)``.
    """
    if g.groups == 1:
        return math.ceil(g.n / cols) * math.ceil(g.k / k_tile)
    total_n = g.n * g.groups
    tiles = 0
    for lo in range(0, total_n, cols):
        hi = min(lo + cols, total_n) - 1
        covered = hi // g.n - lo // g.n + 1
        tiles += math.ceil(covered * g.k / k_tile)
    return tiles


def dram_traffic_bytes(
    g: Gemm, w_bits: int, a_bits: int, out_bits: int, wbuf_bytes: float, abuf_bytes: float
) -> float:
    """DRAM bytes moved for one layer under the module's tiling model (see module doc)."""
    w = g.weight_elems * w_bits / 8 + g.bias_elems * BIAS_BITS / 8
    i = g.in_elems * a_bits / 8
    o = g.out_elems * out_bits / 8
    if g.groups > 1:
        return w + i + o
    wbuf, abuf = max(wbuf_bytes / 2, 1.0), max(abuf_bytes / 2, 1.0)
    weights_resident = w + i * math.ceil(w / wbuf)
    inputs_resident = i + w * math.ceil(i / abuf)
    return min(weights_resident, inputs_resident) + o


@dataclass(frozen=True)
class LayerCost:
    """What a simulator says about one layer at one (w, a) pair."""

    latency_us: float
    compute_us: float
    memory_us: float
    energy_uj: float
    dram_bytes: float
    compute_cycles: int
    kernel: str  # what executes it, for humans

    @property
    def bound(self) -> str:
        return "compute" if self.compute_us >= self.memory_us else "memory"
