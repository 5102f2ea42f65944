from __future__ import annotations

import numpy as np
import pytest

from haq.pareto import dominates, non_dominated_mask, non_dominated_sort
from tests.pareto._brute import brute_dominates, brute_mask, brute_ranks

MIXED = {
    2: ["maximize", "minimize"],
    3: ["maximize", "minimize", "minimize"],
    4: ["minimize", "maximize", "minimize", "maximize"],
    5: ["maximize", "minimize", "minimize", "maximize", "minimize"],
}


def _cases(d: int, seed: int) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    cont = rng.normal(size=(60, d))
    ints = rng.integers(0, 4, size=(60, d)).astype(float)  # many ties and duplicates
    trade = rng.random((40, d))
    trade[:, 0] = -trade[:, 1:].sum(axis=1) + 0.05 * rng.random(40)  # a near-front
    return [cont, ints, trade]


@pytest.mark.parametrize("d", [2, 3, 4, 5])
def test_mask_and_ranks_match_brute_force(d: int) -> None:
    for seed in range(3):
        for pts in _cases(d, seed):
            for dirs in (MIXED[d], ["minimize"] * d, ["maximize"] * d):
                np.testing.assert_array_equal(non_dominated_mask(pts, dirs), brute_mask(pts, dirs))
                np.testing.assert_array_equal(non_dominated_sort(pts, dirs), brute_ranks(pts, dirs))


@pytest.mark.parametrize("d", [2, 3, 5])
def test_dominates_matches_brute_force(d: int) -> None:
    rng = np.random.default_rng(d)
    pts = rng.integers(0, 3, size=(30, d)).astype(float)
    for a in pts:
        for b in pts:
            assert dominates(a, b, MIXED[d]) == brute_dominates(a, b, MIXED[d])


def test_dominates_directions() -> None:
    dirs = ["maximize", "minimize"]  # accuracy up, latency down
    assert dominates([0.9, 1.0], [0.8, 2.0], dirs)
    assert dominates([0.9, 1.0], [0.9, 2.0], dirs)
    assert not dominates([0.9, 1.0], [0.9, 1.0], dirs)  # equal: no
    assert not dominates([0.9, 3.0], [0.8, 2.0], dirs)  # trade-off: no
    assert not dominates([np.nan, 1.0], [0.8, 2.0], dirs)
    assert not dominates([0.9, 1.0], [np.nan, 2.0], dirs)


@pytest.mark.parametrize("empty", [[], np.zeros((0, 2))])
def test_empty(empty: object) -> None:
    assert non_dominated_mask(empty, ["minimize", "maximize"]).shape == (0,)
    assert non_dominated_sort(empty, ["minimize", "maximize"]).shape == (0,)


def test_single_point() -> None:
    np.testing.assert_array_equal(non_dominated_mask([[1.0, 2.0]], ["minimize"] * 2), [True])
    np.testing.assert_array_equal(non_dominated_sort([[1.0, 2.0]], ["minimize"] * 2), [0])


def test_duplicates_all_kept() -> None:
    pts = [[1.0, 1.0], [1.0, 1.0], [2.0, 2.0], [2.0, 2.0], [0.0, 3.0]]
    dirs = ["minimize", "minimize"]
    np.testing.assert_array_equal(non_dominated_mask(pts, dirs), [True, True, False, False, True])
    np.testing.assert_array_equal(non_dominated_sort(pts, dirs), [0, 0, 1, 1, 0])


def test_nan_rows_never_on_front_and_never_dominate() -> None:
    pts = [[np.nan, 0.0], [1.0, 1.0], [0.0, np.nan], [2.0, 2.0]]
    dirs = ["minimize", "minimize"]
    np.testing.assert_array_equal(non_dominated_mask(pts, dirs), [False, True, False, False])
    np.testing.assert_array_equal(non_dominated_sort(pts, dirs), [-1, 0, -1, 1])
    all_nan = np.full((3, 2), np.nan)
    assert not non_dominated_mask(all_nan, dirs).any()
    assert (non_dominated_sort(all_nan, dirs) == -1).all()


def test_all_dominated_by_one_point() -> None:
    rng = np.random.default_rng(7)
    pts = np.vstack([[10.0, -10.0, -10.0], rng.random((50, 3))])
    dirs = ["maximize", "minimize", "minimize"]
    mask = non_dominated_mask(pts, dirs)
    assert mask[0] and mask.sum() == 1
    ranks = non_dominated_sort(pts, dirs)
    assert ranks[0] == 0 and (ranks[1:] >= 1).all()


def test_chain_gives_one_rank_per_point() -> None:
    pts = np.arange(20, dtype=float)[:, None].repeat(3, axis=1)
    np.testing.assert_array_equal(non_dominated_sort(pts, ["minimize"] * 3), np.arange(20))
    np.testing.assert_array_equal(non_dominated_sort(pts, ["maximize"] * 3), np.arange(20)[::-1])


def test_infinities_are_ordinary_values() -> None:
    pts = [[np.inf, 0.0], [1.0, -1.0], [-np.inf, 5.0]]
    np.testing.assert_array_equal(non_dominated_mask(pts, ["minimize"] * 2), [False, True, True])
    np.testing.assert_array_equal(non_dominated_mask(pts, ["maximize"] * 2), [True, False, True])
    np.testing.assert_array_equal(
        non_dominated_sort(pts, ["minimize"] * 2), brute_ranks(np.array(pts), ["minimize"] * 2)
    )


def test_bad_input_raises() -> None:
    with pytest.raises(ValueError, match="direction"):
        non_dominated_mask([[1.0, 2.0]], ["min", "max"])
    with pytest.raises(ValueError, match="directions"):
        non_dominated_mask([[1.0, 2.0]], ["minimize"])
    with pytest.raises(ValueError, match="2-D"):
        non_dominated_mask([1.0, 2.0], ["minimize", "minimize"])
    with pytest.raises(ValueError, match="string"):
        non_dominated_mask([[1.0]], "minimize")


def test_large_input_is_fast_enough() -> None:
    rng = np.random.default_rng(0)
    pts = rng.random((3000, 3))
    ranks = non_dominated_sort(pts, ["maximize", "minimize", "minimize"])
    mask = non_dominated_mask(pts, ["maximize", "minimize", "minimize"])
    np.testing.assert_array_equal(mask, ranks == 0)
    # every point of rank r > 0 is dominated by some point of rank r - 1
    sub = pts[:200]
    r_sub = non_dominated_sort(sub, ["maximize", "minimize", "minimize"])
    np.testing.assert_array_equal(r_sub, brute_ranks(sub, ["maximize", "minimize", "minimize"]))
