from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from haq.pareto import Front, hypervolume, non_dominated_mask, non_dominated_sort

OBJ = {"accuracy": "maximize", "latency_ms": "minimize"}

RECORDS = [
    {"trial": 0, "config_hash": "a0", "accuracy": 0.91, "latency_ms": 3.0},
    {"trial": 1, "config_hash": "b1", "accuracy": 0.85, "latency_ms": 1.0},
    {"trial": 2, "config_hash": "c2", "accuracy": 0.80, "latency_ms": 2.0},  # dominated by 1
    {"trial": 3, "config_hash": "d3", "accuracy": None, "latency_ms": 0.5},  # failed trial
    {"trial": 4, "config_hash": "e4", "accuracy": 0.85, "latency_ms": 1.0},  # duplicate of 1
]


def _front() -> Front:
    return Front.from_records(RECORDS, OBJ)


def test_from_records_mask_front_ranks() -> None:
    f = _front()
    assert len(f) == 5
    assert f.names == ["accuracy", "latency_ms"]
    assert f.directions == ["maximize", "minimize"]
    np.testing.assert_array_equal(f.mask(), [True, True, False, False, True])
    np.testing.assert_array_equal(f.ranks(), [0, 0, 1, -1, 0])
    pf = f.front()
    assert list(pf.points["trial"]) == [0, 1, 4]
    assert list(pf.points.index) == [0, 1, 4]  # original index kept
    assert pf.objectives == OBJ


def test_objective_order_follows_dict_not_columns() -> None:
    f = Front.from_records(RECORDS, {"latency_ms": "minimize", "accuracy": "maximize"})
    assert f.values()[0].tolist() == [3.0, 0.91]
    np.testing.assert_array_equal(f.mask(), _front().mask())


def test_random_front_matches_functions() -> None:
    rng = np.random.default_rng(0)
    obj = {"acc": "maximize", "lat": "minimize", "energy": "minimize", "size": "minimize"}
    df = pd.DataFrame(rng.random((80, 4)), columns=list(obj))
    df["trial"] = np.arange(80)
    f = Front(df, obj)
    vals = df[list(obj)].to_numpy()
    np.testing.assert_array_equal(f.mask(), non_dominated_mask(vals, list(obj.values())))
    np.testing.assert_array_equal(f.ranks(), non_dominated_sort(vals, list(obj.values())))
    ref = {"acc": 0.0, "lat": 1.0, "energy": 1.0, "size": 1.0}
    want = hypervolume(vals, list(obj.values()), [0.0, 1.0, 1.0, 1.0])
    assert f.hypervolume(ref) == pytest.approx(want)
    assert f.hypervolume([0.0, 1.0, 1.0, 1.0]) == pytest.approx(want)
    assert f.front().hypervolume(ref) == pytest.approx(want)  # dominated rows add nothing


def test_hypervolume_default_reference() -> None:
    f = _front()
    ref = f.default_reference()
    # finite rows: acc 0.80..0.91, latency 1..3
    assert ref["accuracy"] == pytest.approx(0.80 - 0.1 * 0.11)
    assert ref["latency_ms"] == pytest.approx(3.0 + 0.1 * 2.0)
    assert f.hypervolume() == pytest.approx(f.hypervolume(ref))
    assert f.hypervolume() > 0
    empty = Front.from_records([], OBJ)
    assert len(empty) == 0
    assert empty.hypervolume() == 0.0
    assert empty.hypervolume({"accuracy": 0.0, "latency_ms": 10.0}) == 0.0
    assert not empty.mask().any()


def test_baseline_helpers() -> None:
    f = _front()
    fp32 = {"accuracy": 0.91, "latency_ms": 5.0}
    assert f.dominated_by(fp32)  # trial 0: same accuracy, lower latency
    assert f.dominates_or_matches(fp32)
    assert list(f.dominating_rows(fp32)["trial"]) == [0]
    same = {"accuracy": 0.91, "latency_ms": 3.0}
    assert not f.dominated_by(same)
    assert f.dominates_or_matches(same)
    better = pd.Series({"accuracy": 0.95, "latency_ms": 0.9})
    assert not f.dominated_by(better)
    assert not f.dominates_or_matches(better)
    assert f.dominated_by([0.84, 1.0])  # sequence in objectives order
    # the NaN row (latency 0.5) must not beat anything
    assert not f.dominates_or_matches({"accuracy": 0.5, "latency_ms": 0.6})
    assert not f.dominated_by({"accuracy": float("nan"), "latency_ms": 100.0})
    with pytest.raises(ValueError, match="lacks"):
        f.dominated_by({"accuracy": 0.5})
    with pytest.raises(ValueError, match="expected 2"):
        f.dominated_by([0.5])


def test_json_round_trip(tmp_path: Path) -> None:
    f = _front()
    path = tmp_path / "sub" / "front.json"
    f.to_json(path)
    data = json.loads(path.read_text())
    assert data["objectives"] == OBJ
    assert data["points"][3]["accuracy"] is None
    assert data["points"][0] == RECORDS[0]
    g = Front.read_json(path)
    assert g.objectives == f.objectives
    assert list(g.points.columns) == list(f.points.columns)
    pd.testing.assert_frame_equal(g.points, f.points)
    np.testing.assert_array_equal(g.mask(), f.mask())
    assert g.hypervolume() == f.hypervolume()
    assert [p.name for p in path.parent.iterdir()] == ["front.json"]  # no temp files left


def test_json_round_trip_exact_floats_and_numpy_types(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    df = pd.DataFrame(rng.random((10, 3)), columns=["a", "b", "c"])
    df["trial"] = np.arange(10, dtype=np.int64)
    df["bits"] = [[8, 4]] * 10
    f = Front(df, {"a": "maximize", "b": "minimize", "c": "minimize"})
    f.to_json(tmp_path / "f.json")
    g = Front.read_json(tmp_path / "f.json")
    pd.testing.assert_frame_equal(g.points, f.points)  # floats written with full precision


def test_json_empty_front(tmp_path: Path) -> None:
    Front.from_records([], OBJ).to_json(tmp_path / "e.json")
    g = Front.read_json(tmp_path / "e.json")
    assert len(g) == 0 and g.objectives == OBJ
    assert g.front().points.empty


def test_json_rejects_infinity_and_bad_files(tmp_path: Path) -> None:
    f = Front.from_records([{"accuracy": 0.9, "latency_ms": math.inf}], OBJ)
    with pytest.raises(ValueError):
        f.to_json(tmp_path / "inf.json")
    assert not (tmp_path / "inf.json").exists()
    (tmp_path / "bad.json").write_text("[1, 2]")
    with pytest.raises(ValueError, match="objectives"):
        Front.read_json(tmp_path / "bad.json")


def test_validation() -> None:
    with pytest.raises(ValueError, match="not in the points"):
        Front.from_records([{"accuracy": 0.9}], OBJ)
    with pytest.raises(ValueError, match="direction"):
        Front.from_records(RECORDS, {"accuracy": "max"})
    with pytest.raises(ValueError, match="at least one"):
        Front.from_records(RECORDS, {})
    f = Front.from_records(RECORDS, {"accuracy": "Maximize", "latency_ms": "minimize"})
    assert f.objectives["accuracy"] == "maximize"
