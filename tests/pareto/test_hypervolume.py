from __future__ import annotations

import numpy as np
import pytest

from haq.pareto import default_reference, hypervolume
from tests.pareto._brute import hv_grid, hv_inclusion_exclusion

MIXED = {
    1: ["maximize"],
    2: ["maximize", "minimize"],
    3: ["maximize", "minimize", "minimize"],
    4: ["minimize", "maximize", "minimize", "maximize"],
    5: ["maximize", "minimize", "minimize", "maximize", "minimize"],
    6: ["maximize", "minimize", "maximize", "minimize", "maximize", "minimize"],
}


@pytest.mark.parametrize("d", [1, 2, 3, 4, 5, 6])
def test_matches_inclusion_exclusion(d: int) -> None:
    rng = np.random.default_rng(100 + d)
    dirs = MIXED[d]
    for trial in range(12):
        n = int(rng.integers(1, 11))
        pts = rng.normal(size=(n, d))
        if trial % 3 == 0:  # a trade-off set: most points non-dominated
            pts[:, 0] = pts[:, 1:].sum(axis=1) * (1 if dirs[0] == "maximize" else -1)
        ref = default_reference(pts, dirs, margin=0.2)
        if trial % 4 == 1:  # a reference that cuts through the set
            ref = np.median(pts, axis=0)
        want = hv_inclusion_exclusion(pts, dirs, ref)
        got = hypervolume(pts, dirs, ref)
        assert got == pytest.approx(want, rel=1e-9, abs=1e-12)


@pytest.mark.parametrize("d", [2, 3, 4, 5])
def test_matches_grid_count_with_ties(d: int) -> None:
    rng = np.random.default_rng(200 + d)
    dirs = MIXED[d]
    side = 6 if d <= 4 else 4
    # reference: the grid's worst corner (0 for maximised, side for minimised)
    ref = [0 if x == "maximize" else side for x in dirs]
    for _ in range(4):
        n = 40 if d <= 3 else 20
        pts = rng.integers(0, side + 1, size=(n, d)).astype(float)  # ties, dups, on-reference
        assert hypervolume(pts, dirs, ref) == hv_grid(pts, dirs, ref)


def test_2d_by_hand() -> None:
    dirs = ["maximize", "minimize"]  # accuracy, latency
    pts = [[0.9, 3.0], [0.8, 1.0], [0.7, 2.0]]  # the last is dominated
    # reference (0.5, 4): boxes [0.5,0.9]x[3,4] and [0.5,0.8]x[1,4], overlap [0.5,0.8]x[3,4]
    assert hypervolume(pts, dirs, [0.5, 4.0]) == pytest.approx(0.4 * 1 + 0.3 * 3 - 0.3 * 1)


def test_edge_cases() -> None:
    dirs = ["minimize", "minimize", "minimize"]
    ref = [1.0, 1.0, 1.0]
    assert hypervolume(np.zeros((0, 3)), dirs, ref) == 0.0
    assert hypervolume([], dirs, ref) == 0.0
    assert hypervolume([[0.5, 0.5, 0.5]], dirs, ref) == pytest.approx(0.125)
    # duplicates count once
    assert hypervolume([[0.5, 0.5, 0.5]] * 4, dirs, ref) == pytest.approx(0.125)
    # a point equal to the reference in one objective adds nothing
    assert hypervolume([[0.0, 0.0, 1.0]], dirs, ref) == 0.0
    assert hypervolume([[0.5, 0.5, 0.5], [0.0, 0.0, 1.0]], dirs, ref) == pytest.approx(0.125)
    # points worse than the reference add nothing
    assert hypervolume([[2.0, 0.0, 0.0]], dirs, ref) == 0.0
    # NaN rows are ignored
    assert hypervolume([[0.5, 0.5, 0.5], [np.nan, 0.0, 0.0]], dirs, ref) == pytest.approx(0.125)
    # all points dominated by one: the hypervolume is that point's box
    rng = np.random.default_rng(3)
    pts = np.vstack([[0.1, 0.2, 0.3], 0.3 + 0.7 * rng.random((30, 3))])
    assert hypervolume(pts, dirs, ref) == pytest.approx(0.9 * 0.8 * 0.7)
    # an infinitely good point
    assert hypervolume([[-np.inf, 0.5, 0.5]], dirs, ref) == float("inf")


def test_bad_reference_raises() -> None:
    with pytest.raises(ValueError, match="finite"):
        hypervolume([[0.0, 0.0]], ["minimize"] * 2, [np.nan, 1.0])
    with pytest.raises(ValueError):
        hypervolume([[0.0, 0.0]], ["minimize"] * 2, [1.0, 1.0, 1.0])


@pytest.mark.parametrize("d", [2, 3, 4, 5])
def test_deterministic_and_order_free(d: int) -> None:
    rng = np.random.default_rng(d)
    pts = rng.random((60, d))
    pts /= np.linalg.norm(pts, axis=1, keepdims=True)  # all mutually non-dominated
    dirs = ["minimize"] * d
    ref = np.full(d, 1.1)
    base = hypervolume(pts, dirs, ref)
    assert base == hypervolume(pts, dirs, ref)
    for _ in range(3):
        assert hypervolume(pts[rng.permutation(60)], dirs, ref) == pytest.approx(base, rel=1e-12)
    # flipping a direction and the data together changes nothing
    flipped = pts.copy()
    flipped[:, 0] = -flipped[:, 0]
    ref2 = ref.copy()
    ref2[0] = -ref2[0]
    assert hypervolume(flipped, ["maximize"] + dirs[1:], ref2) == pytest.approx(base, rel=1e-12)


def test_front_sized_4d_and_5d_are_quick() -> None:
    rng = np.random.default_rng(11)
    for d, n in ((4, 150), (5, 100)):
        pts = rng.random((n, d))
        pts /= np.linalg.norm(pts, axis=1, keepdims=True)
        hv = hypervolume(pts, ["minimize"] * d, np.ones(d))
        assert 0.0 < hv < 1.0


def test_default_reference() -> None:
    pts = [[0.9, 10.0], [0.7, 30.0], [0.8, 20.0]]
    ref = default_reference(pts, ["maximize", "minimize"], margin=0.1)
    np.testing.assert_allclose(ref, [0.7 - 0.1 * 0.2, 30.0 + 0.1 * 20.0])
    # zero range: still strictly worse than every point
    ref = default_reference([[0.5, 4.0], [0.5, 4.0]], ["maximize", "minimize"], margin=0.1)
    np.testing.assert_allclose(ref, [0.5 - 0.1, 4.0 + 0.4])
    # NaN rows ignored; margin 0 is the nadir
    ref = default_reference([[1.0, 2.0], [np.nan, 9.0], [3.0, 1.0]], ["minimize"] * 2, 0.0)
    np.testing.assert_allclose(ref, [3.0, 2.0])
    with pytest.raises(ValueError, match="finite point"):
        default_reference(np.zeros((0, 2)), ["minimize"] * 2)
    with pytest.raises(ValueError, match="margin"):
        default_reference([[1.0, 2.0]], ["minimize"] * 2, margin=-0.1)


def test_default_reference_counts_every_front_point() -> None:
    rng = np.random.default_rng(5)
    pts = rng.random((8, 3))
    dirs = ["maximize", "minimize", "maximize"]
    ref = default_reference(pts, dirs)
    assert hypervolume(pts, dirs, ref) == pytest.approx(hv_inclusion_exclusion(pts, dirs, ref))
    for p in pts:  # each point alone has a positive box
        assert hypervolume([p], dirs, ref) > 0


@pytest.mark.parametrize("dims", [2, 3])
def test_hypervolume_gains_match_the_exact_difference(dims: int) -> None:
    from haq.pareto.hypervolume import hypervolume_gains

    rng = np.random.default_rng(dims)
    dirs = ["maximize"] + ["minimize"] * (dims - 1)
    ref = np.array([0.0] + [1.0] * (dims - 1))
    for _ in range(20):
        front = rng.random((rng.integers(0, 8), dims))
        cands = rng.random((30, dims)) * 1.2 - 0.1
        got = hypervolume_gains(front, cands, dirs, ref)
        base = hypervolume(front, dirs, ref) if len(front) else 0.0
        want = [hypervolume(np.vstack([front, c]), dirs, ref) - base for c in cands]
        np.testing.assert_allclose(got, want, atol=1e-12)
