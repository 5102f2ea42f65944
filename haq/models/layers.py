"""Layer discovery: the table of quantizable layers (Conv2d incl. grouped/depthwise, Linear).

Found by running one sample input through the model with forward hooks, so spatial sizes,
token counts and MACs are the ones the network really sees, in execution order.
"""

from __future__ import annotations

from dataclasses import asdict, replace
from typing import Any

import pandas as pd
import torch
from torch import nn

from haq.models.spec import ACTIVATION_NAMES, LayerSpec

QUANTIZABLE = (nn.Conv2d, nn.Linear)
#: Activation modules by the name `LayerSpec.act` gives them ("none": anything else, e.g. a
#: residual add, or nothing). Runtimes fuse some into the layer (ORT: Relu, Clip), not others.
ACTIVATIONS: dict[type[nn.Module], str] = dict(zip(
    (nn.ReLU, nn.ReLU6, nn.Hardswish, nn.SiLU, nn.GELU, nn.Sigmoid, nn.Hardsigmoid, nn.Tanh,
     nn.LeakyReLU), ACTIVATION_NAMES, strict=True,
))  # fmt: skip
#: Modules an activation is looked for through (BN folded or not, dropout at inference).
_PASS_THROUGH = (nn.BatchNorm1d, nn.BatchNorm2d, nn.Identity, nn.Dropout)


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

    # activation: the leaf module that consumes a layer's output, through pass-through modules
    outputs: dict[str, int] = {}  # layer -> id of its output tensor
    consumed_by: dict[int, tuple[nn.Module, int]] = {}  # tensor id -> (first consumer, its output)
    keep: list[torch.Tensor] = []  # keep tensors alive so their ids are not reused mid-run

    def record_output(mod: nn.Module, _inputs: tuple[Any, ...], output: Any) -> None:
        if isinstance(output, torch.Tensor):
            keep.append(output)
            if isinstance(mod, QUANTIZABLE) and names[mod] not in outputs:
                outputs[names[mod]] = id(output)

    def record_consumer(mod: nn.Module, inputs: tuple[Any, ...], output: Any) -> None:
        if inputs and isinstance(inputs[0], torch.Tensor) and isinstance(output, torch.Tensor):
            if output is inputs[0] and isinstance(mod, _PASS_THROUGH):
                return  # nn.Identity (a folded BN) hands the same tensor on
            consumed_by.setdefault(id(inputs[0]), (mod, id(output)))
            keep.extend((inputs[0], output))

    for m in model.modules():
        if isinstance(m, QUANTIZABLE):
            handles.append(m.register_forward_hook(hook))
            handles.append(m.register_forward_hook(record_output))
        elif not any(True for _ in m.children()):
            handles.append(m.register_forward_hook(record_consumer))
    probe(model, example_input, handles)

    def activation(tensor: int | None) -> str:
        for _ in range(8):
            mod, out = consumed_by.get(tensor, (None, None)) if tensor is not None else (None, None)
            if mod is None:
                return "none"
            if type(mod) in ACTIVATIONS:
                return ACTIVATIONS[type(mod)]
            if not isinstance(mod, _PASS_THROUGH):
                return "none"
            tensor = out
        return "none"

    return [replace(s, act=activation(outputs.get(name))) for name, s in seen.items()]


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
