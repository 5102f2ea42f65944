"""AdaRound (Nagel et al. 2020): learn whether each weight rounds up or down, layer by layer.

Round-to-nearest minimises each weight's own error, not the layer's output error. AdaRound
keeps the scale and grid of round-to-nearest and learns, per weight, ``floor(w/s) + h(V)``
with the rectified sigmoid ``h(V) = clip(sigmoid(V) (zeta - gamma) + gamma, 0, 1)``, minimising

    sum over output channels of E[(d x)^2]  +  lambda * sum(1 - |2 h(V) - 1|^beta)

where ``d`` is the weight error row and ``x`` an im2col input column of the float model. The
first term is ``d H d^T`` with ``H = E[x x^T]`` (`haq.quant.input_moments`), so an iteration
costs ``out * K^2`` whatever the number of calibration images. The regulariser is off for the
first ``warmup`` of the iterations, then ``beta`` anneals linearly from 20 to 2 so every ``h``
ends at 0 or 1. Constants are the paper's (lambda 0.01, zeta 1.1, gamma -0.1, Adam lr 1e-3).

A rounding whose output error is not below round-to-nearest's is discarded (nearest is kept).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from haq.quant.quantizers import per_weight, weight_grid

ZETA, GAMMA = 1.1, -0.1
LAMBDA = 0.01
BETA_START, BETA_END = 20.0, 2.0
WARMUP = 0.2
LR = 1e-3


@dataclass(frozen=True)
class Rounding:
    """One learned rounding: integer weights on round-to-nearest's grid, and what it gained."""

    w_int: torch.Tensor  # same shape as the weight, float dtype holding integers
    error: float  # sum over channels of E[(d x)^2] with this rounding
    nearest_error: float  # the same for round-to-nearest


def _h(v: torch.Tensor) -> torch.Tensor:
    return torch.clamp(torch.sigmoid(v) * (ZETA - GAMMA) + GAMMA, 0.0, 1.0)


def output_error(d: torch.Tensor, moments: torch.Tensor) -> torch.Tensor:
    """sum_o d_o H_g(o) d_o^T for rows ``d`` (out, K) and per-group moments (groups, K, K)."""
    groups = moments.shape[0]
    dg = d.reshape(groups, -1, d.shape[1])
    return ((dg @ moments) * dg).sum()


def adaround(
    w: torch.Tensor,
    moments: torch.Tensor,
    bits: int,
    granularity: str = "channel",
    group_size: int = 128,
    iterations: int = 1000,
    seed: int = 0,
    symmetric: bool = True,
) -> Rounding:
    """Learned integer weights for ``w`` (conv (out, in/g, kh, kw) or linear (out, in)) on
    round-to-nearest's grid (symmetric, or with zero points)."""
    torch.manual_seed(seed)
    s, qmin, qmax = (per_weight(w, t, granularity, group_size)
                     for t in weight_grid(w, bits, granularity, group_size, symmetric))  # fmt: skip
    rows = w.detach().float().reshape(w.shape[0], -1)
    h_moments = moments.float()
    floor = torch.floor(rows / s)
    rest = rows / s - floor
    nearest = torch.clamp(torch.round(rows / s), qmin, qmax)
    nearest_error = float(output_error(rows - nearest * s, h_moments))

    # h(V) = rest at the start: V = -log((zeta - gamma) / (rest - gamma) - 1)
    v = -torch.log((ZETA - GAMMA) / (rest - GAMMA) - 1.0)
    v = v.clone().requires_grad_(True)
    opt = torch.optim.Adam([v], lr=LR)
    warm = int(WARMUP * iterations)
    with torch.enable_grad():
        for it in range(iterations):
            soft = torch.clamp(floor + _h(v), qmin, qmax) * s
            loss = output_error(rows - soft, h_moments)
            if it >= warm:
                frac = (it - warm) / max(iterations - warm, 1)
                beta = BETA_START + (BETA_END - BETA_START) * frac
                loss = loss + LAMBDA * (1 - (2 * _h(v) - 1).abs().pow(beta)).sum()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    with torch.no_grad():
        learned = torch.clamp(floor + (_h(v) >= 0.5).float(), qmin, qmax)
        error = float(output_error(rows - learned * s, h_moments))
    if not error < nearest_error:
        learned, error = nearest, nearest_error
    return Rounding(learned.reshape(w.shape).to(w.dtype), error, nearest_error)
