"""A user model module for the ``package.module:factory`` tests."""

from __future__ import annotations

from torch import nn

HAQ_PREPROCESS = {"input_size": [3, 16, 16], "mean": [0.5, 0.5, 0.5], "std": [0.25, 0.25, 0.25]}
HAQ_NUM_CLASSES = 4
HAQ_DEFAULT_DATA = "synthetic"
NOT_CALLABLE = 42


def build() -> nn.Module:
    """Tiny conv net for tests."""
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(8, HAQ_NUM_CLASSES),
    )


def not_a_module() -> int:
    return 7


def broken() -> nn.Module:
    raise RuntimeError("factory exploded\nsecond line")
