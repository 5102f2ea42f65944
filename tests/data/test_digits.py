"""The bundled digits source: fixed split, model normalisation, digits_cnn only."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from haq.data import load_data
from haq.data.digits import N_CALIB, N_TEST, digits_arrays
from haq.errors import HaqError
from haq.models.registry import Preprocess

DIGITS = Preprocess(input_size=(1, 8, 8), mean=(0.5,), std=(0.5,), grayscale=True)


def test_test_split_shapes_labels_and_normalisation() -> None:
    d = load_data("digits", DIGITS)
    assert d.x.shape == (N_TEST, 1, 8, 8) and d.x.dtype == torch.float32
    assert d.y is not None and d.y.dtype == torch.int64
    assert d.classes == [str(i) for i in range(10)]
    assert set(d.y.tolist()) == set(range(10))
    x, y = digits_arrays("test")
    assert torch.allclose(d.x, (torch.from_numpy(x) - 0.5) / 0.5)
    assert np.array_equal(d.y.numpy(), y)
    assert np.array_equal(d.indices, np.arange(N_TEST))


def test_splits_partition_the_data() -> None:
    d = load_data("digits:train", DIGITS)
    c = load_data("digits:calib", DIGITS)
    assert d.x.shape == (1797 - N_TEST - N_CALIB, 1, 8, 8) and c.x.shape == (N_CALIB, 1, 8, 8)
    assert d.source == "digits:train"
    rows = {
        tuple(v) for v in torch.cat([d.x, c.x, load_data("digits", DIGITS).x]).flatten(1).tolist()
    }
    assert len(rows) >= 1797 - 20  # (sklearn's digits holds a few exact duplicate images)


def test_other_input_sizes_are_refused() -> None:
    rgb = Preprocess(input_size=(3, 32, 32), mean=(0.5,) * 3, std=(0.5,) * 3)
    with pytest.raises(HaqError) as e:
        load_data("digits", rgb)
    assert "digits_cnn" in str(e.value) and "\n" not in str(e.value)


def test_too_few_model_classes_is_refused() -> None:
    with pytest.raises(HaqError, match="10 classes"):
        load_data("digits", DIGITS, num_classes=5)
