"""Dispatch, subset selection and the one-line errors of `haq.data.load_data`."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from haq.data import load_data, select_indices
from haq.errors import HaqError
from haq.models.registry import Preprocess

DIGITS = Preprocess(input_size=(1, 8, 8), mean=(0.5,), std=(0.5,), grayscale=True)
RGB = Preprocess(input_size=(3, 8, 8), mean=(0.5,) * 3, std=(0.5,) * 3)


def _one_line(e: pytest.ExceptionInfo[HaqError]) -> str:
    msg = str(e.value)
    assert "\n" not in msg
    return msg


def test_select_indices_is_deterministic_and_sorted() -> None:
    a = select_indices(100, 10, seed=3)
    assert np.array_equal(a, select_indices(100, 10, seed=3))
    assert not np.array_equal(a, select_indices(100, 10, seed=4))
    assert a.dtype == np.int64 and len(a) == 10 and np.all(np.diff(a) > 0)
    assert a.min() >= 0 and a.max() < 100


def test_select_indices_excludes() -> None:
    calib = select_indices(50, 20, seed=0)
    rest = select_indices(50, 20, seed=0, exclude=calib)
    assert len(rest) == 20 and not set(calib) & set(rest)
    # Out-of-range exclusions are ignored.
    everything = select_indices(50, None, seed=0, exclude=np.array([-1, 0, 99]))
    assert np.array_equal(everything, np.arange(1, 50))


def test_select_indices_limit_beyond_remaining_returns_all_in_order() -> None:
    ex = np.array([2, 5])
    expected = np.array([0, 1, 3, 4, 6, 7])
    assert np.array_equal(select_indices(8, 100, seed=1, exclude=ex), expected)
    assert np.array_equal(select_indices(8, 6, seed=1, exclude=ex), expected)
    assert np.array_equal(select_indices(8, None, seed=1), np.arange(8))
    assert len(select_indices(0, None, seed=0)) == 0


def test_unknown_name_lists_accepted_forms() -> None:
    with pytest.raises(HaqError) as e:
        load_data("imagenet", RGB)
    msg = _one_line(e)
    assert "'imagenet'" in msg and "digits" in msg and "synthetic[:N]" in msg and "DIR" in msg


def test_missing_path_says_not_found(tmp_path: Path) -> None:
    with pytest.raises(HaqError) as e:
        load_data(f"{tmp_path}/nope", RGB)
    msg = _one_line(e)
    assert "not found" in msg and "ImageFolder root" in msg


@pytest.mark.parametrize("source", ["synthetic:0", "synthetic:x", "distilled:-1"])
def test_bad_counts(source: str) -> None:
    with pytest.raises(HaqError, match="whole number"):
        load_data(source, RGB)


def test_limit_must_be_positive() -> None:
    with pytest.raises(HaqError, match="at least 1"):
        load_data("synthetic", RGB, limit=0)


def test_everything_excluded_is_an_error() -> None:
    with pytest.raises(HaqError) as e:
        load_data("synthetic:4", RGB, exclude=np.arange(4))
    assert "no images left" in _one_line(e)


def test_limit_seed_exclude_apply_to_named_sources() -> None:
    calib = load_data("digits", DIGITS, limit=100, seed=1)
    evald = load_data("digits", DIGITS, limit=100, seed=1, exclude=calib.indices)
    assert len(calib) == len(evald) == 100
    assert not set(calib.indices) & set(evald.indices)
    assert calib.key != evald.key
    assert calib.key == load_data("digits", DIGITS, limit=100, seed=1).key


def test_data_split_parts_are_disjoint_and_cover_the_source() -> None:
    import numpy as np

    from haq.data import DataSplit

    split = DataSplit(0.2, seed=4)
    val, test = split.of("val").exclusion(100), split.of("test").exclusion(100)
    kept_val = np.setdiff1d(np.arange(100), val)
    kept_test = np.setdiff1d(np.arange(100), test)
    assert len(kept_val) == 20 and len(kept_test) == 80
    assert not set(kept_val) & set(kept_test)
    for bad in (0.0, 1.0, -0.1, 1.5):
        with pytest.raises(HaqError, match="strictly between 0 and 1"):
            DataSplit(bad)
