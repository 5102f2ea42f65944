"""Roofline fallback: peaks fitted to a target's own rows where it quotes none."""

from __future__ import annotations

import pytest

from haq.cost.analytic import fitted_peaks, roofline_us
from haq.hardware.profile import get_target
from tests.cost.synthetic import layers, profile_dict, table, write_target


def test_fitted_peaks_fill_only_what_the_profile_lacks(tmp_path) -> None:
    quoted = get_target(write_target(tmp_path))
    assert fitted_peaks(quoted, table(), threads=1) == {}  # every kernel and bandwidth quoted
    bare = get_target(write_target(tmp_path, profile_dict(peaks={"fp32_gops": 1.0})))
    peaks = fitted_peaks(bare, table(), threads=1)
    assert "fp32_gops" not in peaks and peaks["int8_gops"] > 0 and peaks["bandwidth_gbs"] > 0
    # int8 rows: c1 (27648 MACs, 4 us) and fc (10240 MACs, 1 us); the 0.9 quantile of ops/us
    ops = sorted([2 * 27648 / 4.0, 2 * 10240 / 1.0])
    assert peaks["int8_gops"] == pytest.approx((ops[0] + 0.9 * (ops[1] - ops[0])) / 1e3)
    assert fitted_peaks(bare, table(), threads=2)["int8_gops"] == pytest.approx(
        2 * peaks["int8_gops"]
    )  # the 2-thread rows are twice as fast


def test_roofline_charges_the_kernels_storage_bits(tmp_path) -> None:
    prof = get_target(write_target(tmp_path))
    fp32 = roofline_us(prof, layers(), "fp32", 1, {"fp32_gops": 1e9, "bandwidth_gbs": 1.0})
    int8 = roofline_us(prof, layers(), "int8", 1, {"int8_gops": 1e9, "bandwidth_gbs": 1.0})
    assert fp32 is not None and int8 is not None
    assert fp32 == pytest.approx(4 * int8)  # memory bound: 32-bit vs 8-bit bytes
    assert roofline_us(prof, layers(), "int8", 1, {"bandwidth_gbs": 1.0}) is None
