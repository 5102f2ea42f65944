"""Quantizer math, written to match what ONNX Runtime's integer kernels compute.

- Weights: symmetric, signed, narrow range ``[-(2^(b-1)-1), 2^(b-1)-1]`` (int8: -127..127, as
  ORT's quantizer writes symmetric int8 weights), scale ``absmax / qmax`` per output channel,
  per tensor, or per group of ``group_size`` along the reduction axis. Asymmetric weights
  (``symmetric=False``, MatMulNBits' zero points) put ``2^b`` levels on ``[min, max]`` of each
  scale's weights (widened to hold 0), scale ``(max - min) / (2^b - 1)``, zero point
  ``round(-min / scale)``; the integers are kept centred (``q - zero point``, in
  ``[-zp, 2^b - 1 - zp]``), so ``q * scale`` dequantizes both kinds.
- Activations: asymmetric, unsigned ``[0, 2^b-1]``, per tensor; the range is widened to hold 0
  and the zero point is ``round(qmin - lo / scale)``, as ORT's ``compute_scale_zp`` does.
- Rounding is half-to-even of ``x / scale`` (``QuantizeLinear``); a scale below float32's tiny
  becomes 1.0. Bias is quantized to int32 with scale ``s_act * s_weight`` like ORT's static
  quantizer, so the simulated accumulation is the integer one.
Lower bit widths use the same formulas on a smaller grid (an int8 container holding a 4-bit grid
computes exactly this).
- Dynamic activations (`fake_quant_dynamic`): the uint8 grid of each input's (or each
  token's) own range, computed at run time as ORT's ``DynamicQuantizeLinear`` /
  ``DynamicQuantizeMatMul`` (or haq's per-token pattern) do.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

_TINY = torch.finfo(torch.float32).tiny


def weight_qrange(bits: int) -> tuple[int, int]:
    q = 2 ** (bits - 1) - 1
    return -q, q


def act_qrange(bits: int) -> tuple[int, int]:
    return 0, 2**bits - 1


def _safe_scale(scale: torch.Tensor) -> torch.Tensor:
    return torch.where(scale < _TINY, torch.ones_like(scale), scale)


def _weight_rows(w: torch.Tensor) -> torch.Tensor:
    """(out, rest...) -> (out, K): the reduction axis flattened (conv: in/groups * kh * kw)."""
    return w.reshape(w.shape[0], -1)


def weight_grid(
    w: torch.Tensor,
    bits: int,
    granularity: str = "channel",
    group_size: int = 128,
    symmetric: bool = True,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(scales, lowest, highest centred integer), each shaped to broadcast over
    ``_weight_rows(w)``, or (out, n_groups, 1) for groups."""
    rows = _weight_rows(w.detach().float())
    if granularity == "tensor":
        per = rows.reshape(1, 1, -1)
    elif granularity == "channel":
        per = rows.unsqueeze(1)
    elif granularity == "group":
        per = _grouped(rows, group_size)
    else:
        raise ValueError(f"unknown weight granularity {granularity!r}")
    if symmetric:
        qmin, qmax = weight_qrange(bits)
        scale = _safe_scale(per.abs().amax(dim=2, keepdim=True) / qmax)
        lo, hi = torch.full_like(scale, qmin), torch.full_like(scale, qmax)
    else:
        levels = 2**bits - 1
        mn = per.amin(dim=2, keepdim=True).clamp(max=0.0)
        mx = per.amax(dim=2, keepdim=True).clamp(min=0.0)
        scale = _safe_scale((mx - mn) / levels)
        zp = torch.round(-mn / scale).clamp(0, levels)
        lo, hi = -zp, levels - zp
    if granularity != "group":
        scale, lo, hi = (t.reshape(t.shape[0], 1) for t in (scale, lo, hi))
    return scale, lo, hi


def weight_scales(
    w: torch.Tensor,
    bits: int,
    granularity: str = "channel",
    group_size: int = 128,
    symmetric: bool = True,
) -> torch.Tensor:
    """Scales shaped to broadcast over ``_weight_rows(w)``, or (out, n_groups, 1) for groups."""
    return weight_grid(w, bits, granularity, group_size, symmetric)[0]


def _grouped(rows: torch.Tensor, group_size: int) -> torch.Tensor:
    out, k = rows.shape
    pad = (-k) % group_size
    if pad:
        rows = torch.nn.functional.pad(rows, (0, pad))
    return rows.reshape(out, -1, group_size)


def _by_scale(
    rows: torch.Tensor,
    granularity: str,
    group_size: int,
    fn: Callable[[torch.Tensor], torch.Tensor],
) -> torch.Tensor:
    """``fn`` of ``rows`` seen as their scales are shaped (groups of ``group_size`` for
    ``group``: `weight_grid`'s layout), back in the shape of ``rows``."""
    if granularity != "group":
        return fn(rows)
    return fn(_grouped(rows, group_size)).reshape(rows.shape[0], -1)[:, : rows.shape[1]]


def quantize_weight(
    w: torch.Tensor,
    bits: int,
    granularity: str = "channel",
    group_size: int = 128,
    symmetric: bool = True,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Integer weights (same shape as ``w``, float dtype holding integers, centred) and their
    scales."""
    scale, lo, hi = weight_grid(w, bits, granularity, group_size, symmetric)
    rows = _weight_rows(w.detach().float())
    q = _by_scale(rows, granularity, group_size,
                  lambda r: torch.clamp(torch.round(r / scale), lo, hi))  # fmt: skip
    return q.reshape(w.shape), scale


def dequantize_weight(
    q: torch.Tensor, scale: torch.Tensor, granularity: str, group_size: int
) -> torch.Tensor:
    deq = _by_scale(_weight_rows(q), granularity, group_size, lambda r: r * scale)
    return deq.reshape(q.shape)


def per_weight(
    w: torch.Tensor, scale: torch.Tensor, granularity: str, group_size: int
) -> torch.Tensor:
    """Each weight's own value of a per-scale tensor (its scale, or its grid's integer bounds),
    shaped like ``_weight_rows(w)`` (for elementwise rounding)."""
    out, k = w.shape[0], _weight_rows(w).shape[1]
    if granularity == "group":
        n_groups = scale.shape[1]
        return scale.expand(out, n_groups, group_size).reshape(out, -1)[:, :k]
    return scale.expand(out, k)


def fake_quant_weight(
    w: torch.Tensor,
    bits: int,
    granularity: str = "channel",
    group_size: int = 128,
    symmetric: bool = True,
) -> torch.Tensor:
    q, scale = quantize_weight(w, bits, granularity, group_size, symmetric)
    return dequantize_weight(q, scale, granularity, group_size).to(w.dtype)


def act_qparams(lo: float, hi: float, bits: int) -> tuple[float, int]:
    """(scale, zero_point) of an unsigned ``bits`` grid covering [lo, hi] and 0.

    Computed as ORT's ``compute_scale_zp`` does (float32 range, float64 arithmetic, float32
    stored scale), so the scale is the same float32 value an exported QuantizeLinear carries.
    """
    qmin, qmax = act_qrange(bits)
    lo64 = np.float64(np.minimum(np.float32(lo), np.float32(0.0)))
    hi64 = np.float64(np.maximum(np.float32(hi), np.float32(0.0)))
    scale = (hi64 - lo64) / np.float64(qmax - qmin)
    if scale < np.finfo(np.float32).tiny:
        return 1.0, 0
    zp = int(np.clip(np.round(qmin - lo64 / scale), qmin, qmax))
    return float(np.float32(scale)), zp


def fake_quant_act(x: torch.Tensor, scale: float, zero_point: int, bits: int) -> torch.Tensor:
    """Quantize-dequantize with ``QuantizeLinear`` semantics (``round(x / s) + zp``, saturate).

    Written as ``clamp(round(x / s), qmin - zp, qmax - zp) * s``: the same integers, 4 passes.
    A tensor that requires grad (QAT) gets the same values with a straight-through gradient.
    """
    qmin, qmax = act_qrange(bits)
    if x.requires_grad:  # QAT: straight-through inside the grid's range, zero outside
        with torch.no_grad():
            y = fake_quant_act(x.detach(), scale, zero_point, bits)
        clipped = x.clamp((qmin - zero_point) * scale, (qmax - zero_point) * scale)
        return clipped + (y - clipped).detach()
    q = torch.round(x / scale)
    return q.clamp_(qmin - zero_point, qmax - zero_point).mul_(scale)


def fake_quant_dynamic(x: torch.Tensor, grid: str = "tensor") -> torch.Tensor:
    """Quantize-dequantize on uint8 grids of the input's own range (with 0), found at run time:
    one grid per input of the batch (``grid="tensor"``, as ORT's ``DynamicQuantizeMatMul``
    does at batch 1) or per row of the last axis (``"token"``, as `haq.export.dynamic_int8`
    exports it). Scale ``(hi - lo) / 255`` (1 when the range is empty), zero point
    ``round(-lo / scale)`` clamped to 0..255."""
    if grid == "token":
        lo = x.detach().amin(dim=-1, keepdim=True)
        hi = x.detach().amax(dim=-1, keepdim=True)
    else:
        flat = x.detach().reshape(x.shape[0], -1)
        shape = (-1,) + (1,) * (x.dim() - 1)
        lo, hi = flat.amin(dim=1).reshape(shape), flat.amax(dim=1).reshape(shape)
    lo, hi = lo.clamp(max=0.0), hi.clamp(min=0.0)
    scale = torch.where(hi == lo, torch.ones_like(hi), (hi - lo) / 255.0)
    zp = torch.round((-lo / scale).clamp(0.0, 255.0))
    q = torch.round(x / scale)
    return torch.maximum(torch.minimum(q, 255.0 - zp), -zp) * scale


MATMULNBITS_BITS = (2, 4, 8)  # weight bits ORT's MatMulNBits runs


def fake_quant_input_blocks(x: torch.Tensor, block: int) -> torch.Tensor:
    """Quantize-dequantize the last axis in blocks of ``block`` on symmetric int8 grids of
    scale ``absmax / 127`` each, as ORT's MatMulNBits does with its input at
    ``accuracy_level`` 4 (checked to float rounding: tests/export/test_matmul_nbits.py)."""
    k = x.shape[-1]
    pad = (-k) % block
    xb = torch.nn.functional.pad(x, (0, pad)) if pad else x
    xb = xb.reshape(*x.shape[:-1], -1, block)
    scale = xb.detach().abs().amax(dim=-1, keepdim=True) / 127.0
    scale = torch.where(scale == 0, torch.ones_like(scale), scale)
    y = (torch.round(xb / scale) * scale).reshape(*x.shape[:-1], -1)
    return y[..., :k] if pad else y


def quantize_bias(bias: torch.Tensor, act_scale: float, w_scale: torch.Tensor) -> torch.Tensor:
    """Bias on the int32 grid of ``s_act * s_w`` (per output channel), dequantized."""
    s = (torch.tensor(act_scale, dtype=torch.float32) * w_scale.reshape(-1)).to(torch.float32)
    if s.numel() == 1:
        s = s.expand_as(bias)
    q = torch.round(bias.detach().float() / s).clamp(-(2**31), 2**31 - 1)
    return (q * s).to(bias.dtype)
