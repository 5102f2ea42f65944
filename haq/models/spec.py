"""`LayerSpec`: one quantizable layer as the hardware sees it. Torch-free, so the cost models,
latency tables and search space use it without importing torch (`haq.models.layers` builds it).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

#: Names `LayerSpec.act` gives the activation after a layer ("none": anything else, e.g. a
#: residual add, or nothing). Runtimes fuse some into the layer (ORT: Relu, Clip), not others.
ACTIVATION_NAMES = ("relu", "relu6", "hardswish", "silu", "gelu", "sigmoid", "hardsigmoid",
                    "tanh", "leakyrelu")  # fmt: skip


@dataclass(frozen=True)
class LayerSpec:
    """One quantizable layer as the hardware sees it (shapes for batch 1)."""

    name: str  # module path, e.g. "layer1.0.conv1"
    kind: str  # "conv", "dwconv" (depthwise), "gconv" (grouped), "linear"
    index: int  # execution order among quantizable layers
    in_channels: int
    out_channels: int
    kernel: tuple[int, int]
    stride: tuple[int, int]
    groups: int
    in_hw: tuple[int, int]  # conv: input H, W; linear: (tokens, 1)
    out_hw: tuple[int, int]
    macs: int
    params: int
    act: str = (
        "none"  # activation applied to the output (through BN / Identity): `ACTIVATION_NAMES`
    )

    @property
    def in_elements(self) -> int:
        """Input elements per sample (a Linear's: features x tokens)."""
        return elements(self.in_channels, self.in_hw)

    @property
    def out_elements(self) -> int:
        return elements(self.out_channels, self.out_hw)

    @property
    def tokens(self) -> int:
        """Rows a Linear multiplies per sample (1 for a classifier head)."""
        return self.in_hw[0] if self.kind == "linear" else 1


def reduced_in_front(in_elements: Sequence[int], out_elements: Sequence[int]) -> list[int]:
    """Per layer, in execution order: how many more elements the previous layer put out than
    this layer reads (0 for the first layer, and where nothing shrinks).

    What shrinks between two layers is a pool (a squeeze-excite block's global average pool,
    the max pool after a stem, the classifier's pool): it runs in the boundary that the
    latency tables charge to the layer after it, and its cost grows with the tensor it
    reads, which that layer's own shape cannot show (a 1x1 conv on a 1x1 input may sit behind
    a pool over 32x112x112 or over 576x7x7)."""
    return [0] + [max(0, p - i) for p, i in zip(out_elements[:-1], in_elements[1:], strict=True)]


def elements(channels: int, hw: Sequence[int]) -> int:
    """Elements per sample of a (channels, H, W) tensor."""
    return channels * hw[0] * hw[1]


def reduced_elements(layers: Sequence[LayerSpec]) -> list[int]:
    """`reduced_in_front` of a network's layers (anything with LayerSpec's channel and
    spatial fields: a stored spec row's view too)."""
    return reduced_in_front([elements(s.in_channels, s.in_hw) for s in layers],
                            [elements(s.out_channels, s.out_hw) for s in layers])  # fmt: skip
