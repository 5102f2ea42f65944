"""scikit-learn's bundled 8x8 digits, split once into fixed train / held-out test parts."""

from __future__ import annotations

import numpy as np
import torch

N_TEST = 450  # held-out images (the remaining 1,347 train the embedded digits_cnn)
SPLIT_SEED = 0
CLASSES = [str(i) for i in range(10)]


def digits_arrays(split: str) -> tuple[np.ndarray, np.ndarray]:
    """Images (N, 1, 8, 8) float32 in [0, 1] and int64 labels of ``split`` ('train'/'test')."""
    if split not in {"train", "test"}:
        raise ValueError(f"digits split must be 'train' or 'test', not {split!r}")
    from sklearn.datasets import load_digits

    bunch = load_digits()
    x = (bunch.images.astype(np.float32) / 16.0)[:, None, :, :]
    y = bunch.target.astype(np.int64)
    order = np.random.default_rng(SPLIT_SEED).permutation(len(y))
    idx = order[:N_TEST] if split == "test" else order[N_TEST:]
    return x[idx], y[idx]


def digits_tensors(
    split: str, mean: tuple[float, ...], std: tuple[float, ...]
) -> tuple[torch.Tensor, torch.Tensor]:
    """``split`` normalised with the model's ``mean``/``std`` (the images are already [0, 1])."""
    x, y = digits_arrays(split)
    m = torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1)
    s = torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1)
    return (torch.from_numpy(x) - m) / s, torch.from_numpy(y)
