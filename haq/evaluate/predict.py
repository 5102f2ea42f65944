"""Batched inference on in-memory tensors."""

from __future__ import annotations

import torch
from torch import nn


@torch.no_grad()  # not inference_mode: quantized layers use version counters to skip work
def predict(model: nn.Module, x: torch.Tensor, batch_size: int = 256) -> torch.Tensor:
    """Logits of ``model`` on ``x`` (N, ...) in eval mode, float32, on the CPU."""
    model.eval()
    outs = [model(x[i : i + batch_size]).float() for i in range(0, x.shape[0], batch_size)]
    return torch.cat(outs) if outs else torch.empty(0)
