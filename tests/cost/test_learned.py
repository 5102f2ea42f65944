"""Learned cost model: fit report, leave-one-model-out, hold-out, save/load."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from haq.cost.learned import MODEL_FILE, REPORT_FILE, LearnedCostModel
from haq.errors import HaqError
from haq.hardware.tables import SIGNATURE_COLUMNS
from tests.cost.synthetic import learned_rows


def test_fit_report_and_leave_one_model_out() -> None:
    frame, lmap = learned_rows()
    m = LearnedCostModel("toy", max_iter=30)
    report = m.fit(frame, lmap)
    assert report["rows"] == len(frame) == 72
    assert np.isfinite(report["in_sample_mape"]) and set(report["in_sample_mape_by_kernel"]) == {
        "fp32",
        "int8",
    }
    lomo = report["leave_one_model_out"]
    assert set(lomo["per_model"]) == {"a", "b", "c"} and np.isfinite(lomo["mean_mape"])
    assert all(v["rows"] == 24 for v in lomo["per_model"].values())
    assert m.knows("conv", "int8") and not m.knows("dwconv", "int8")
    pred = m.predict_us(frame[SIGNATURE_COLUMNS + ["precision", "threads"]])
    assert pred.shape == (72,) and (pred > 0).all()
    # without a layer map there is no leave-one-model-out, and the report says so
    assert LearnedCostModel(max_iter=10).fit(frame)["leave_one_model_out"] is None


def test_unseen_larger_model_is_extrapolated_by_the_work_model() -> None:
    """Model c's layers are larger than any of a's and b's: trees alone would predict the
    biggest leaf; the work model scales with MACs, so c is predicted within the noise."""
    frame, lmap = learned_rows()
    lomo = LearnedCostModel("toy", max_iter=30).fit(frame, lmap)["leave_one_model_out"]
    assert lomo["per_model"]["c"]["mape"] < 6.0
    assert lomo["per_model"]["c"]["weighted_ape"] < 6.0


def test_holdout_model() -> None:
    frame, lmap = learned_rows()
    m = LearnedCostModel("toy", max_iter=30)
    report = m.fit(frame, lmap, holdout_model="b")
    assert (
        report["rows"] == 48
        and report["holdout"]["model"] == "b"
        and report["holdout"]["rows"] == 24
    )
    with pytest.raises(HaqError, match="not in the layer map"):
        m.fit(frame, lmap, holdout_model="zz")
    with pytest.raises(HaqError, match="not in the layer map"):
        m.fit(frame, None, holdout_model="a")


def test_extra_rows_train_every_fit_but_lose_the_held_out_signatures() -> None:
    """Probe rows (``extra``) are training data only: never scored, and a held-out model's
    signatures leave them too, so a probe that happens to share a layer cannot leak it."""
    frame, lmap = learned_rows()
    a = frame[frame.index < 24]  # model a's rows
    probe = frame.assign(in_channels=frame["in_channels"] + 8)  # signatures no model has
    base = LearnedCostModel("toy", max_iter=30).fit(frame, lmap, extra=probe)
    report = LearnedCostModel("toy", max_iter=30).fit(
        frame, lmap, extra=pd.concat([probe, a], ignore_index=True)
    )
    assert report["probe_rows"] == len(probe) + len(a) and report["rows"] == 2 * 72 + 24
    per, ref = report["leave_one_model_out"]["per_model"], base["leave_one_model_out"]["per_model"]
    assert per["a"] == ref["a"]  # the copies of a's rows were left out of a's fold
    assert all(v["rows"] == 24 for v in per.values())  # extra rows are never scored


def test_save_load_roundtrip(tmp_path: Path) -> None:
    frame, lmap = learned_rows()
    m = LearnedCostModel("toy", max_iter=20)
    m.fit(frame, lmap)
    folder = m.save(tmp_path / "toy")
    assert (folder / MODEL_FILE).is_file() and (folder / REPORT_FILE).is_file()
    back = LearnedCostModel.load(folder)
    assert back.report["rows"] == 72 and back.kernels == m.kernels and back.seen == m.seen
    np.testing.assert_allclose(back.predict_us(frame), m.predict_us(frame))
    payload = pickle.loads((folder / MODEL_FILE).read_bytes())
    payload["sklearn"] = "0.0"
    (folder / MODEL_FILE).write_bytes(pickle.dumps(payload))
    with pytest.raises(HaqError, match="refit"):
        LearnedCostModel.load(folder)
    (folder / MODEL_FILE).write_bytes(b"not a pickle")
    with pytest.raises(HaqError, match="unreadable"):
        LearnedCostModel.load(folder)
    with pytest.raises(HaqError, match="no fitted cost model"):
        LearnedCostModel.load(tmp_path / "nothing")
    with pytest.raises(HaqError, match="not fitted"):
        LearnedCostModel().predict_us(frame)


def test_too_few_rows_cannot_fit() -> None:
    frame, _ = learned_rows()
    with pytest.raises(HaqError, match="cannot fit"):
        LearnedCostModel().fit(frame.head(2))
