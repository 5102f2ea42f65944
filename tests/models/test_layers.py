"""Layer discovery: the activation each layer's output goes through (`LayerSpec.act`)."""

from __future__ import annotations

import torch
from torch import nn

from haq.models import discover_layers
from haq.quant import Quantizer


class _Block(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU6())
        self.b = nn.Sequential(nn.Conv2d(8, 8, 3, padding=1, groups=8), nn.SiLU())
        self.c = nn.Conv2d(8, 8, 1)
        self.relu = nn.ReLU(inplace=True)
        self.head = nn.Linear(8, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.b(self.a(x))
        y = self.relu(self.c(y) + y)  # a residual add between c and its ReLU: no activation
        return self.head(y.mean((2, 3)))


def test_activation_after_each_layer_through_bn_and_folding() -> None:
    model, x = _Block().eval(), torch.zeros(1, 3, 8, 8)
    acts = {s.name: s.act for s in discover_layers(model, x)}
    assert acts == {"a.0": "relu6", "b.0": "silu", "c": "none", "head": "none"}
    # BN folded into the conv (the module becomes Identity): the same answer
    assert {s.name: s.act for s in Quantizer(model, x).layers} == acts


def test_reduced_elements_count_the_pool_in_front_of_a_layer() -> None:
    """The head reads the pooled 8x8x8 output of ``c``: 512 - 8 elements were pooled away in
    front of it; nothing shrinks between the convs."""
    from haq.models.spec import reduced_elements

    specs = discover_layers(_Block().eval(), torch.zeros(1, 3, 8, 8))
    assert reduced_elements(specs) == [0, 0, 0, 8 * 8 * 8 - 8]
