"""Simulated-quantization layers that replace Conv2d / Linear in a quantized copy.

Each holds its already fake-quantized weight (computed once per (layer, bits)), so an
evaluation pass costs the float pass plus one cheap elementwise quantize-dequantize per layer
input (and output, for integer-kernel layers). The integer view (``w_int``, ``w_scale``,
``a_scale``/``a_zero_point``, ``out_scale``/``out_zero_point``) is kept for exporters that
must reproduce exactly these numbers.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from haq.config import Precision
from haq.quant.quantizers import fake_quant_act, fake_quant_dynamic, fake_quant_input_blocks

OUTPUT_BITS = 8  # int8 kernels write 8-bit outputs


_GRID = "_haq_grid"


def _tag(t: torch.Tensor, grid: tuple[float, int, int]) -> torch.Tensor:
    """Remember that ``t`` lies on ``grid`` (valid until ``t`` is modified in place; inference
    tensors have no version counter, so they are never tagged)."""
    if not t.is_inference():
        setattr(t, _GRID, (*grid, t._version))
    return t


def _on_grid(t: torch.Tensor, grid: tuple[float, int, int]) -> bool:
    return not t.is_inference() and getattr(t, _GRID, None) == (*grid, t._version)


def quantize_output_hook(grid: tuple[float, int, int]):  # noqa: ANN201 - a torch hook
    """A forward hook that puts a module's output on ``grid`` (scale, zero point, bits)."""
    scale, zp, bits = grid

    def hook(_m: nn.Module, _inp: tuple[torch.Tensor, ...], out: torch.Tensor) -> torch.Tensor:
        if _on_grid(out, grid):
            return out
        return _tag(fake_quant_act(out, scale, zp, bits), grid)

    return hook


class QuantLayer(nn.Module):
    """Common state: precision, integer weights and scales, input activation qparams."""

    def __init__(
        self,
        float_module: nn.Conv2d | nn.Linear,
        precision: Precision,
        weight: torch.Tensor,
        bias: torch.Tensor | None,
        w_int: torch.Tensor | None,
        w_scale: torch.Tensor | None,
        act: tuple[float, int] | None,
        out_act: tuple[float, int] | None,
        granularity: str,
        group_size: int,
        dynamic: str | None = None,
        input_blocks: int | None = None,
    ) -> None:
        super().__init__()
        self.float_module = float_module  # kept for geometry (stride, padding, ...) and export
        self.precision = precision
        self.register_buffer("weight", weight, persistent=False)
        self.register_buffer("bias", bias, persistent=False)
        self.w_int = w_int
        self.w_scale = w_scale
        self.granularity = granularity
        self.group_size = group_size
        self.a_scale, self.a_zero_point = act if act is not None else (None, None)
        self.out_scale, self.out_zero_point = out_act if out_act is not None else (None, None)
        self.input_shared = (
            False  # True: the input is quantized where it is produced, for all readers
        )
        # None, or what one run-time grid of the input covers (its own range): tensor / token
        self.dynamic = dynamic
        self.input_blocks = input_blocks  # MatMulNBits (accuracy_level 4): int8 input blocks

    def quantize_input(self, x: torch.Tensor) -> torch.Tensor:
        bits = self.precision.a_bits
        if self.input_blocks is not None:
            return fake_quant_input_blocks(x, self.input_blocks)
        if bits is not None and self.dynamic is not None:
            return fake_quant_dynamic(x, self.dynamic)
        if bits is None or self.a_scale is None or self.a_zero_point is None:
            return x
        if _on_grid(x, (self.a_scale, self.a_zero_point, bits)):
            return x  # already exactly on this grid: quantizing again is the identity
        return fake_quant_act(x, self.a_scale, self.a_zero_point, bits)

    def requantize_output(self, y: torch.Tensor) -> torch.Tensor:
        if self.out_scale is None or self.out_zero_point is None:
            return y
        return _tag(fake_quant_act(y, self.out_scale, self.out_zero_point, OUTPUT_BITS),
                    (self.out_scale, self.out_zero_point, OUTPUT_BITS))  # fmt: skip

    def extra_repr(self) -> str:
        act = f", a_scale={self.a_scale:.4g}, a_zp={self.a_zero_point}" if self.a_scale else ""
        act = f", dynamic per {self.dynamic}" if self.dynamic else act
        out = (
            f", out_scale={self.out_scale:.4g}, out_zp={self.out_zero_point}"
            if self.out_scale
            else ""
        )
        return f"{self.precision}{act}{out}"


class QuantConv2d(QuantLayer):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        m = self.float_module
        assert isinstance(m, nn.Conv2d)
        x = self.quantize_input(x)
        if m.padding_mode != "zeros":
            x = F.pad(x, m._reversed_padding_repeated_twice, mode=m.padding_mode)
            y = F.conv2d(x, self.weight, self.bias, m.stride, 0, m.dilation, m.groups)
        else:
            y = F.conv2d(x, self.weight, self.bias, m.stride, m.padding, m.dilation, m.groups)
        return self.requantize_output(y)


class QuantLinear(QuantLayer):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.requantize_output(F.linear(self.quantize_input(x), self.weight, self.bias))
