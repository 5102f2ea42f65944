"""GPTQ (Frantar et al. 2023): quantize a layer's weights column by column, each column's
rounding error spread onto the columns not yet quantized.

With ``H = E[x x^T]`` of the layer's input (`haq.quant.input_moments`), the output error of
a weight error row ``d`` is ``d H d^T``. Quantizing column ``i`` to the grid and updating the
remaining columns by ``-err_i / U_ii * U_i,i+1:`` (``U`` the upper Cholesky factor of
``H^-1``) is the optimal brain surgeon step for that column; done for all columns in order it
is GPTQ. Columns are processed in blocks of `BLOCK` with the update to later blocks applied
once per block (the paper's lazy batch update), ``H`` is dampened by `DAMP` of its mean
diagonal, and the grid is round-to-nearest's (the same scales: "static groups"), so the
integers export exactly as round-to-nearest's do (e.g. MatMulNBits). No act-order.

A result whose output error is not below round-to-nearest's is discarded (nearest is kept).
"""

from __future__ import annotations

import torch

from haq.quant.adaround import Rounding, output_error
from haq.quant.quantizers import per_weight, weight_grid

DAMP = 0.01
BLOCK = 128


def gptq(
    w: torch.Tensor,
    moments: torch.Tensor,
    bits: int,
    granularity: str = "channel",
    group_size: int = 128,
    damp: float = DAMP,
    symmetric: bool = True,
) -> Rounding:
    """Integer weights for ``w`` (conv (out, in/g, kh, kw) or linear (out, in)) on
    round-to-nearest's grid (symmetric, or with zero points), from per-group input moments
    (groups, K, K)."""
    s, qmin, qmax = (per_weight(w, t, granularity, group_size).double()
                     for t in weight_grid(w, bits, granularity, group_size, symmetric))  # fmt: skip
    rows = w.detach().double().reshape(w.shape[0], -1)
    groups = moments.shape[0]
    per = rows.shape[0] // groups
    q = torch.empty_like(rows)
    for g in range(groups):  # a grouped conv's groups see their own inputs
        part = slice(g * per, (g + 1) * per)
        q[part] = _columns(rows[part].clone(), s[part], moments[g].double(), qmin[part],
                           qmax[part], damp)  # fmt: skip
    nearest = torch.clamp(torch.round(rows / s), qmin, qmax)
    m = moments.float()
    error = float(output_error((rows - q * s).float(), m))
    nearest_error = float(output_error((rows - nearest * s).float(), m))
    if not error < nearest_error:
        q, error = nearest, nearest_error
    return Rounding(q.reshape(w.shape).to(w.dtype), error, nearest_error)


def _columns(
    w: torch.Tensor,
    s: torch.Tensor,
    h: torch.Tensor,
    qmin: torch.Tensor,
    qmax: torch.Tensor,
    damp: float,
) -> torch.Tensor:
    """GPTQ's integers for rows ``w`` (out, K) with per-weight scales ``s``, integer bounds
    ``qmin``/``qmax`` and moments ``h``."""
    h = h.clone()
    dead = torch.diag(h) == 0  # inputs that are always zero: their weights do not matter
    h[dead, dead] = 1.0
    w[:, dead] = 0.0
    h += damp * torch.diag(h).mean() * torch.eye(h.shape[0], dtype=h.dtype)
    u = torch.linalg.cholesky(torch.cholesky_inverse(torch.linalg.cholesky(h)), upper=True)
    q = torch.zeros_like(w)
    k = w.shape[1]
    for start in range(0, k, BLOCK):
        end = min(start + BLOCK, k)
        errors = torch.zeros((w.shape[0], end - start), dtype=w.dtype)
        for i in range(start, end):
            col = w[:, i]
            qi = torch.clamp(torch.round(col / s[:, i]), qmin[:, i], qmax[:, i])
            q[:, i] = qi
            err = (col - qi * s[:, i]) / u[i, i]
            w[:, i + 1 : end] -= err[:, None] * u[i, i + 1 : end][None, :]
            errors[:, i - start] = err
        w[:, end:] -= errors @ u[start:end, end:]
    return q
