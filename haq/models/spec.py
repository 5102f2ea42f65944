"""`LayerSpec`: one quantizable layer as the hardware sees it. Torch-free, so the cost models,
latency tables and search space use it without importing torch (`haq.models.layers` builds it).
"""

from __future__ import annotations

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
    def tokens(self) -> int:
        """Rows a Linear multiplies per sample (1 for a classifier head)."""
        return self.in_hw[0] if self.kind == "linear" else 1
