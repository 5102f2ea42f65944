"""Fold BatchNorm into the convolution that feeds it, as deployment does before quantizing.

Pairs are found by running a sample through the model: a BatchNorm2d whose input is exactly
the output tensor of a Conv2d is folded into it, whatever the module layout. The same dataflow
probe finds the ReLUs that an integer kernel's output requantization absorbs.

Folding returns each BatchNorm's shift and scale: they are the only data-free estimate of the
conv's pre-activation distribution, which cross-layer equalization's high-bias absorption uses.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from haq.models.layers import probe


def find_followers(
    model: nn.Module,
    example_input: torch.Tensor,
    producers: type[nn.Module] | tuple[type[nn.Module], ...],
    consumers: type[nn.Module] | tuple[type[nn.Module], ...],
) -> list[tuple[str, str]]:
    """(producer, consumer) module pairs where the consumer's input IS the producer's output.

    Identity modules pass the tensor object through, so after folding a ReLU still counts as
    following its conv. A producer feeding two consumers (never seen in practice) is dropped.
    """
    names = {m: n for n, m in model.named_modules()}
    produced: dict[int, str] = {}
    keep: list[torch.Tensor] = []  # keep outputs alive so their ids are not reused mid-run
    pairs: list[tuple[str, str]] = []
    handles = []

    def producer_hook(mod: nn.Module, _inp: tuple[torch.Tensor, ...], out: torch.Tensor) -> None:
        produced[id(out)] = names[mod]
        keep.append(out)

    def consumer_pre_hook(mod: nn.Module, inp: tuple[torch.Tensor, ...]) -> None:
        source = produced.get(id(inp[0])) if inp else None
        if source is not None and (source, names[mod]) not in pairs:
            pairs.append((source, names[mod]))

    for m in model.modules():
        if isinstance(m, producers):
            handles.append(m.register_forward_hook(producer_hook))
        if isinstance(m, consumers):
            handles.append(m.register_forward_pre_hook(consumer_pre_hook))
    probe(model, example_input, handles)
    sources = [p for p, _ in pairs]
    return [(p, c) for p, c in pairs if sources.count(p) == 1]


def call_counts(
    model: nn.Module, example_input: torch.Tensor, kind: type[nn.Module]
) -> dict[str, int]:
    """How often each ``kind`` module runs in one forward pass (shared modules run twice)."""
    names = {m: n for n, m in model.named_modules()}
    counts: dict[str, int] = {}

    def hook(mod: nn.Module, _inp: tuple[torch.Tensor, ...]) -> None:
        counts[names[mod]] = counts.get(names[mod], 0) + 1

    handles = [m.register_forward_pre_hook(hook) for m in model.modules() if isinstance(m, kind)]
    probe(model, example_input, handles)
    return counts


def input_producers(
    model: nn.Module, example_input: torch.Tensor, layers: list[str]
) -> dict[str, str]:
    """For each layer, the module that returns its input tensor, if that module runs once.

    Containers return their last child's tensor, so the outermost finished module is named.
    Inputs made by functional code (``torch.flatten``) or by modules called more than once
    (a shared ReLU) have no entry: they can only be quantized at the layer itself.
    """
    names = {m: n for n, m in model.named_modules()}
    wanted = set(layers)
    calls: dict[str, int] = {}
    last: dict[int, str] = {}
    keep: list[torch.Tensor] = []
    found: dict[str, str] = {}
    handles = []

    def post(mod: nn.Module, _inp: tuple[torch.Tensor, ...], out: torch.Tensor) -> None:
        name = names[mod]
        calls[name] = calls.get(name, 0) + 1
        if isinstance(out, torch.Tensor) and name:
            last[id(out)] = name
            keep.append(out)

    def pre(mod: nn.Module, inp: tuple[torch.Tensor, ...]) -> None:
        name = names[mod]
        if name in wanted and name not in found and inp and isinstance(inp[0], torch.Tensor):
            producer = last.get(id(inp[0]))
            if producer is not None:
                found[name] = producer

    for m in model.modules():
        handles += [m.register_forward_hook(post), m.register_forward_pre_hook(pre)]
    probe(model, example_input, handles)
    return {layer: p for layer, p in found.items() if calls.get(p) == 1}


def find_conv_bn_pairs(model: nn.Module, example_input: torch.Tensor) -> list[tuple[str, str]]:
    return find_followers(model, example_input, nn.Conv2d, nn.BatchNorm2d)


@dataclass(frozen=True)
class FoldedBN:
    """A BatchNorm folded into ``conv``: per output channel, the conv's (folded) output is
    about N(beta, gamma) on the data the BatchNorm was trained on."""

    conv: str
    bn: str
    beta: torch.Tensor  # the BatchNorm's shift
    gamma: torch.Tensor  # |the BatchNorm's scale|: the output's standard deviation


@torch.no_grad()
def fold_batchnorm(model: nn.Module, example_input: torch.Tensor) -> list[FoldedBN]:
    """Fold in place (call on a copy); returns what was folded, with the BatchNorm's stats."""
    folded: list[FoldedBN] = []
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
        folded.append(FoldedBN(conv_name, bn_name, beta.detach().clone(), gamma.detach().abs()))
    return folded
