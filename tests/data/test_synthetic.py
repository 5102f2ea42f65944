"""Seeded Gaussian smoke-test images: deterministic, index-stable, labelled."""

from __future__ import annotations

import torch

from haq.data import load_data
from haq.models.registry import Preprocess

RGB = Preprocess(input_size=(3, 16, 16), mean=(0.5,) * 3, std=(0.5,) * 3)


def test_default_size_shape_and_labels() -> None:
    d = load_data("synthetic", RGB)
    assert d.x.shape == (256, 3, 16, 16) and d.x.dtype == torch.float32
    assert d.y is not None and d.y.min() >= 0 and d.y.max() < 10
    assert d.classes == [str(i) for i in range(10)]
    assert abs(float(d.x.mean())) < 0.05 and abs(float(d.x.std()) - 1) < 0.05


def test_deterministic_and_index_stable() -> None:
    a = load_data("synthetic:32", RGB)
    b = load_data("synthetic:32", RGB)
    assert torch.equal(a.x, b.x) and torch.equal(a.y, b.y)
    sub = load_data("synthetic:32", RGB, limit=5, seed=7)
    assert len(sub) == 5
    assert torch.equal(sub.x, a.x[torch.from_numpy(sub.indices)])
    assert torch.equal(sub.y, a.y[torch.from_numpy(sub.indices)])


def test_num_classes() -> None:
    d = load_data("synthetic:64", RGB, num_classes=3)
    assert d.classes == ["0", "1", "2"]
    assert d.y is not None and set(d.y.tolist()) == {0, 1, 2}
