"""Second moments of each layer's input (im2col rows), for reconstruction-based rounding.

A layer's output error under a weight error ``d`` (one row per output channel) is ``d x`` for
every im2col column ``x`` of its input, so the mean squared output error over calibration data
is ``d H d^T`` with ``H = E[x x^T]``. Gathering ``H`` once per layer (one pass over the
calibration images for all layers) makes every rounding iteration independent of the number
of images. Grouped convolutions get one ``H`` per group. Inputs are taken from the float
(BN-folded) model, so a layer's learned rounding does not depend on the other layers' bits
and can be cached per (layer, bits).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

MAX_COLUMNS_PER_BATCH = 65536  # im2col columns kept per batch and layer (a seeded subsample)


def im2col_rows(module: nn.Conv2d | nn.Linear, x: torch.Tensor) -> torch.Tensor:
    """(groups, K, columns): the input vectors each output value is a dot product with."""
    if isinstance(module, nn.Linear):
        return x.detach().reshape(-1, x.shape[-1]).T.unsqueeze(0)
    m = module
    if m.padding_mode != "zeros":
        x = F.pad(x, m._reversed_padding_repeated_twice, mode=m.padding_mode)
        padding: tuple[int, ...] | str = 0
    else:
        padding = m.padding
    if isinstance(padding, str):  # 'same' / 'valid'
        padding = tuple(
            (d * (k - 1)) // 2 if padding == "same" else 0
            for k, d in zip(m.kernel_size, m.dilation, strict=True)
        )
    cols = F.unfold(x.detach(), m.kernel_size, m.dilation, padding, m.stride)  # (N, C*kh*kw, L)
    n, ck, cl = cols.shape
    cols = cols.reshape(n, m.groups, ck // m.groups, cl).permute(1, 2, 0, 3)
    return cols.reshape(m.groups, ck // m.groups, n * cl)


class MomentCollector:
    """Accumulates ``E[x x^T]`` per group for one layer over batches."""

    def __init__(self, seed: int = 0) -> None:
        self.sum: torch.Tensor | None = None
        self.count = 0
        self._gen = torch.Generator().manual_seed(seed)

    def update(self, module: nn.Conv2d | nn.Linear, x: torch.Tensor) -> None:
        rows = im2col_rows(module, x.float())
        if rows.shape[2] > MAX_COLUMNS_PER_BATCH:
            keep = torch.randperm(rows.shape[2], generator=self._gen)[:MAX_COLUMNS_PER_BATCH]
            rows = rows[:, :, keep]
        gram = (rows @ rows.transpose(1, 2)).double()
        self.sum = gram if self.sum is None else self.sum + gram
        self.count += rows.shape[2]

    def finish(self) -> torch.Tensor:
        if self.sum is None or self.count == 0:
            raise ValueError("no input seen")
        return (self.sum / self.count).float()


@torch.no_grad()
def input_moments(
    model: nn.Module, layers: list[str], images: torch.Tensor, batch_size: int = 64
) -> dict[str, torch.Tensor]:
    """``E[x x^T]`` of every layer in ``layers`` (shape (groups, K, K)), one pass over images."""
    collectors = {name: MomentCollector(seed=i) for i, name in enumerate(layers)}
    handles = []
    for name in layers:
        module = model.get_submodule(name)

        def hook(mod: nn.Module, inp: tuple[torch.Tensor, ...], name: str = name) -> None:
            assert isinstance(mod, nn.Conv2d | nn.Linear)
            collectors[name].update(mod, inp[0])

        handles.append(module.register_forward_pre_hook(hook))
    try:
        model.eval()
        for i in range(0, images.shape[0], batch_size):
            model(images[i : i + batch_size])
    finally:
        for h in handles:
            h.remove()
    return {name: c.finish() for name, c in collectors.items()}
