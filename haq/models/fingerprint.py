"""Stable fingerprints of a model's weights, for cache keys and run records."""

from __future__ import annotations

import hashlib

import torch
from torch import nn


def state_hash(model: nn.Module) -> str:
    """16-hex digest of every parameter and buffer (names, shapes and bytes)."""
    h = hashlib.sha256()
    for name, t in model.state_dict().items():
        h.update(name.encode())
        h.update(str(tuple(t.shape)).encode())
        if isinstance(t, torch.Tensor):
            h.update(t.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()[:16]
