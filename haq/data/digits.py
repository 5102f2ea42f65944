"""scikit-learn's bundled 8x8 digits, split once into fixed train / calib / test parts.

``train`` (1,000 images) trains the embedded digits_cnn; ``calib`` (347) was never seen in
training, so it serves calibration and search-time validation; ``test`` (450) is held out.
"""

from __future__ import annotations

import numpy as np
import torch

N_TEST = 450  # held-out test images
N_CALIB = 347  # held-out calibration / validation images; the remaining 1,000 train digits_cnn
SPLITS = ("train", "calib", "test")
SPLIT_SEED = 0
CLASSES = [str(i) for i in range(10)]


def digits_arrays(split: str) -> tuple[np.ndarray, np.ndarray]:
    """Images (N, 1, 8, 8) float32 in [0, 1] and int64 labels of ``split`` (see `SPLITS`)."""
    if split not in SPLITS:
        raise ValueError(f"digits split must be one of {SPLITS}, not {split!r}")
    from sklearn.datasets import load_digits

    bunch = load_digits()
    x = (bunch.images.astype(np.float32) / 16.0)[:, None, :, :]
    y = bunch.target.astype(np.int64)
    order = np.random.default_rng(SPLIT_SEED).permutation(len(y))
    bounds = {
        "test": (0, N_TEST),
        "calib": (N_TEST, N_TEST + N_CALIB),
        "train": (N_TEST + N_CALIB, len(y)),
    }
    lo, hi = bounds[split]
    idx = order[lo:hi]
    return x[idx], y[idx]


def digits_tensors(
    split: str, mean: tuple[float, ...], std: tuple[float, ...]
) -> tuple[torch.Tensor, torch.Tensor]:
    """``split`` normalised with the model's ``mean``/``std`` (the images are already [0, 1])."""
    x, y = digits_arrays(split)
    m = torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1)
    s = torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1)
    return (torch.from_numpy(x) - m) / s, torch.from_numpy(y)
