"""Turning a data source name into normalised tensors, with seeded, disjoint subsets.

Contract (helpers implement the bodies; signatures are fixed):
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from haq.models.registry import Preprocess


@dataclass
class TensorData:
    """Decoded, preprocessed images kept in memory (decoded once, reused for every trial)."""

    x: torch.Tensor  # (N, C, H, W) float32, normalised as the model expects
    y: torch.Tensor | None  # (N,) int64 labels; None where labels are unknown (distilled)
    classes: list[str]  # class names in label order
    source: str  # the source name as given (for messages and cache keys)
    indices: np.ndarray  # indices into the full source that were selected (for disjointness)

    def __len__(self) -> int:
        return int(self.x.shape[0])

    @property
    def key(self) -> str:
        """Stable identity of exactly these images (source + selected indices)."""
        import hashlib

        h = hashlib.sha256(np.ascontiguousarray(self.indices, dtype=np.int64).tobytes())
        return f"{self.source}#{len(self)}#{h.hexdigest()[:12]}"


def select_indices(
    n_total: int, limit: int | None, seed: int, exclude: np.ndarray | None = None
) -> np.ndarray:
    """A deterministic subset of ``range(n_total)`` minus ``exclude``: ``limit`` indices drawn
    with ``seed`` (all remaining, in order, when ``limit`` is None or larger), sorted."""
    raise NotImplementedError


def load_data(
    source: str,
    preprocess: Preprocess,
    *,
    limit: int | None = None,
    seed: int = 0,
    exclude: np.ndarray | None = None,
    model: torch.nn.Module | None = None,
) -> TensorData:
    """Materialise ``source`` (see package docstring) as tensors.

    ``exclude`` removes those source indices first (calibration/evaluation disjointness);
    ``model`` is required for ``distilled``. Raises `HaqError` (one line) for a missing or
    empty directory, unreadable images, an unknown source name, or images that do not match
    ``preprocess.input_size``.
    """
    raise NotImplementedError
