"""Fold BatchNorm into the convolution that feeds it, as deployment does before quantizing.

Pairs are found by running a sample through the model: a BatchNorm2d whose input is exactly
the output tensor of a Conv2d is folded into it, whatever the module layout.
"""

from __future__ import annotations

import torch
from torch import nn


def find_conv_bn_pairs(model: nn.Module, example_input: torch.Tensor) -> list[tuple[str, str]]:
    names = {m: n for n, m in model.named_modules()}
    produced: dict[int, str] = {}
    keep: list[torch.Tensor] = []  # keep outputs alive so their ids are not reused mid-run
    pairs: list[tuple[str, str]] = []
    handles = []

    def conv_hook(mod: nn.Module, _inp: tuple[torch.Tensor, ...], out: torch.Tensor) -> None:
        produced[id(out)] = names[mod]
        keep.append(out)

    def bn_pre_hook(mod: nn.Module, inp: tuple[torch.Tensor, ...]) -> None:
        conv = produced.get(id(inp[0]))
        pair = (conv, names[mod]) if conv is not None else None
        if pair is not None and pair not in pairs:
            pairs.append(pair)

    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            handles.append(m.register_forward_hook(conv_hook))
        elif isinstance(m, nn.BatchNorm2d):
            handles.append(m.register_forward_pre_hook(bn_pre_hook))
    try:
        with torch.no_grad():
            model(example_input[:1])
    finally:
        for h in handles:
            h.remove()
    # A conv feeding two BatchNorms (never seen in practice) cannot be folded.
    convs = [c for c, _ in pairs]
    return [(c, b) for c, b in pairs if convs.count(c) == 1]


@torch.no_grad()
def fold_batchnorm(model: nn.Module, example_input: torch.Tensor) -> list[tuple[str, str]]:
    """Fold in place (call on a copy); returns the folded (conv, bn) name pairs."""
    pairs = find_conv_bn_pairs(model, example_input)
    for conv_name, bn_name in pairs:
        conv = model.get_submodule(conv_name)
        bn = model.get_submodule(bn_name)
        assert isinstance(conv, nn.Conv2d) and isinstance(bn, nn.BatchNorm2d)
        std = torch.sqrt(bn.running_var + bn.eps)
        gamma = bn.weight if bn.weight is not None else torch.ones_like(std)
        beta = bn.bias if bn.bias is not None else torch.zeros_like(std)
        factor = gamma / std
        conv.weight.mul_(factor.reshape(-1, 1, 1, 1))
        bias = conv.bias if conv.bias is not None else torch.zeros_like(bn.running_mean)
        new_bias = (bias - bn.running_mean) * factor + beta
        conv.bias = nn.Parameter(new_bias.to(conv.weight.dtype))
        model.set_submodule(bn_name, nn.Identity())
    return pairs
