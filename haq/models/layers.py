"""Layer discovery: the table of quantizable layers (Conv2d incl. grouped/depthwise, Linear).

Found by running one sample input through the model with forward hooks, so spatial sizes,
token counts and MACs are the ones the network really sees, in execution order.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import pandas as pd
import torch
from torch import nn

QUANTIZABLE = (nn.Conv2d, nn.Linear)


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

    @property
    def tokens(self) -> int:
        """Rows a Linear multiplies per sample (1 for a classifier head)."""
        return self.in_hw[0] if self.kind == "linear" else 1


def _kind(m: nn.Module) -> str:
    if isinstance(m, nn.Linear):
        return "linear"
    assert isinstance(m, nn.Conv2d)
    if m.groups == 1:
        return "conv"
    if m.groups == m.in_channels and m.out_channels % m.in_channels == 0:
        return "dwconv"
    return "gconv"


def probe(model: nn.Module, example_input: torch.Tensor, handles: list[Any]) -> None:
    """Run one sample through ``model`` so the hooks behind ``handles`` see it, then remove them."""
    try:
        with torch.no_grad():
            model(example_input[:1])
    finally:
        for h in handles:
            h.remove()


def discover_layers(model: nn.Module, example_input: torch.Tensor) -> list[LayerSpec]:
    """Every Conv2d and Linear that runs on ``example_input``, in execution order.

    A module called twice (weight sharing) is listed once, with the shapes of its first call.
    """
    seen: dict[str, LayerSpec] = {}
    names = {m: n for n, m in model.named_modules()}
    handles = []

    def hook(mod: nn.Module, inputs: tuple[torch.Tensor, ...], output: torch.Tensor) -> None:
        name = names[mod]
        if name in seen:
            return
        x = inputs[0]
        params = sum(p.numel() for p in mod.parameters(recurse=False))
        if isinstance(mod, nn.Conv2d):
            in_hw = (int(x.shape[-2]), int(x.shape[-1]))
            out_hw = (int(output.shape[-2]), int(output.shape[-1]))
            kh, kw = mod.kernel_size
            macs = (
                out_hw[0] * out_hw[1] * mod.out_channels * (mod.in_channels // mod.groups) * kh * kw
            )
            spec = LayerSpec(
                name, _kind(mod), len(seen), mod.in_channels, mod.out_channels,
                (kh, kw), tuple(mod.stride), mod.groups, in_hw, out_hw, int(macs), int(params),
            )  # fmt: skip
        else:
            assert isinstance(mod, nn.Linear)
            tokens = int(x[0].numel() // mod.in_features) if x.dim() > 1 else 1
            spec = LayerSpec(
                name, "linear", len(seen), mod.in_features, mod.out_features, (1, 1), (1, 1), 1,
                (tokens, 1), (tokens, 1), tokens * mod.in_features * mod.out_features, int(params),
            )  # fmt: skip
        seen[name] = spec

    for m in model.modules():
        if isinstance(m, QUANTIZABLE):
            handles.append(m.register_forward_hook(hook))
    probe(model, example_input, handles)
    return list(seen.values())


def layers_frame(layers: list[LayerSpec]) -> pd.DataFrame:
    """The layer table as a DataFrame (one row per layer, tuples kept as 'AxB' strings)."""
    rows = []
    for spec in layers:
        row = asdict(spec)
        for key in ("kernel", "stride", "in_hw", "out_hw"):
            row[key] = "x".join(str(v) for v in row[key])
        rows.append(row)
    cols = [f for f in LayerSpec.__dataclass_fields__]
    return pd.DataFrame(rows, columns=cols)
