"""Learned cost model: fit report, leave-one-model-out, hold-out, save/load."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from haq.cost.learned import MODEL_FILE, REPORT_FILE, LearnedCostModel, fit_target
from haq.errors import HaqError
from haq.hardware.profile import get_target
from haq.hardware.tables import SIGNATURE_COLUMNS
from tests.cost.synthetic import write_target


def _synthetic() -> tuple[pd.DataFrame, pd.DataFrame]:
    """Three 'models' of convs and linears; latency = overhead + MACs / throughput per kernel."""
    rng = np.random.default_rng(0)
    rows, lmap = [], []
    for model, base in (("a", 16), ("b", 24), ("c", 32)):
        for i in range(6):
            cin, cout, hw = base * (1 + i % 3), base * (1 + (i + 1) % 3), 32 >> (i % 3)
            kind, k = ("linear", 1) if i == 5 else ("conv", 3)
            if kind == "linear":
                hw = 1
            sig = {"kind": kind, "in_channels": cin, "out_channels": cout, "kernel_h": k,
                   "kernel_w": k, "stride_h": 1, "stride_w": 1, "groups": 1, "in_h": hw,
                   "in_w": hw, "out_h": hw, "out_w": hw}  # fmt: skip
            lmap.append({"model": model, "name": f"l{i}", **sig})
            macs = cin * cout * k * k * hw * hw
            for batch in (1, 4):
                for kernel, speed in (("fp32", 1.0), ("int8", 3.0)):
                    lat = 2.0 + macs * batch / (speed * 1e3) * rng.uniform(0.95, 1.05)
                    rows.append({**sig, "batch": batch, "precision": kernel, "latency_us": lat,
                                 "threads": 1})  # fmt: skip
    return pd.DataFrame(rows), pd.DataFrame(lmap)


def test_fit_report_and_leave_one_model_out() -> None:
    frame, lmap = _synthetic()
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
    frame, lmap = _synthetic()
    lomo = LearnedCostModel("toy", max_iter=30).fit(frame, lmap)["leave_one_model_out"]
    assert lomo["per_model"]["c"]["mape"] < 6.0
    assert lomo["per_model"]["c"]["weighted_ape"] < 6.0


def test_holdout_model() -> None:
    frame, lmap = _synthetic()
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
    frame, lmap = _synthetic()
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
    frame, lmap = _synthetic()
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


def test_fit_target_on_profile_tables(tmp_path: Path) -> None:
    frame, lmap = _synthetic()
    path = write_target(tmp_path, frame=frame)
    lmap.to_csv(tmp_path / "toy" / "layer_map.csv", index=False)
    text = path.read_text().replace(
        "layers: toy/layers.csv", "layers: toy/layers.csv\n  layer_map: toy/layer_map.csv"
    )
    path.write_text(text)
    m = fit_target(get_target(path), out=tmp_path / "out", max_iter=20)
    assert m.report["leave_one_model_out"]["per_model"].keys() == {"a", "b", "c"}
    assert (tmp_path / "out" / MODEL_FILE).is_file() and m.report["probe_rows"] == 0
    # probe networks' rows (tables.probes + probe_map) join the training data, not the scoring
    probes = frame.assign(out_channels=frame["out_channels"] * 2, model="probe_0")
    probes.to_csv(tmp_path / "toy" / "probes.csv", index=False)
    lmap.assign(model="probe_0").to_csv(tmp_path / "toy" / "probe_map.csv", index=False)
    path.write_text(text.replace("layer_map: toy/layer_map.csv", "layer_map: toy/layer_map.csv\n"
                                 "  probes: toy/probes.csv\n  probe_map: toy/probe_map.csv"))  # fmt: skip
    m = fit_target(get_target(path), save=False, max_iter=20, probes=True)
    assert m.report["probe_rows"] == len(probes) and m.report["rows"] == 2 * len(frame)
    assert m.report["leave_one_model_out"]["per_model"].keys() == {"a", "b", "c"}
    assert fit_target(get_target(path), save=False, max_iter=20).report["probe_rows"] == 0
    with pytest.raises(HaqError, match="no column 'kernel_us'"):
        fit_target(get_target(path), save=False, max_iter=20, column="kernel_us")
    with pytest.raises(HaqError, match="cannot fit"):
        LearnedCostModel().fit(frame.head(2))


def test_activation_column_joins_from_the_layer_map_and_is_learned() -> None:
    """Random shapes, a random activation per layer; a fused relu6 costs 1.5x. Only the
    ``act`` column can tell which rows pay it."""
    from haq.cost.learned import with_graph_context

    rng = np.random.default_rng(1)
    rows, lmap = [], []
    for model in "abcd":
        for i in range(12):
            cin, cout, hw = (int(x) for x in rng.choice([16, 32, 64, 128], 3))
            act = str(rng.choice(["relu", "relu6"]))
            sig = {"kind": "conv", "in_channels": cin, "out_channels": cout, "kernel_h": 3,
                   "kernel_w": 3, "stride_h": 1, "stride_w": 1, "groups": 1, "in_h": hw,
                   "in_w": hw, "out_h": hw, "out_w": hw}  # fmt: skip
            lmap.append({"model": model, "name": f"l{i}", "act": act, **sig})
            lat = (2.0 + cin * cout * 9 * hw * hw / 1e3) * (1.5 if act == "relu6" else 1.0)
            rows.append({**sig, "batch": 1, "precision": "fp32", "latency_us": lat, "threads": 1,
                         "model": model})  # fmt: skip
    frame, layer_map = pd.DataFrame(rows).drop_duplicates(SIGNATURE_COLUMNS), pd.DataFrame(lmap)
    joined = with_graph_context(frame, layer_map)
    assert len(joined) == len(frame) and set(joined["act"]) == {"relu", "relu6"}
    report = LearnedCostModel("toy", max_iter=50).fit(joined, layer_map)
    assert "act=relu6" in report["features"]
    without = LearnedCostModel("toy", max_iter=50).fit(frame, layer_map)
    assert report["leave_one_model_out"]["mean_mape"] < without["leave_one_model_out"]["mean_mape"]
    # tables without a model column (layers measured alone) are left as they are
    assert "act" not in with_graph_context(frame.drop(columns=["model"]), layer_map)


def test_pooled_elements_in_front_join_from_the_layer_map_and_are_learned() -> None:
    """1x1 convs on a 1x1 input behind a pool over a random-sized tensor (a squeeze-excite
    block's first conv) pay 2 ns per pooled element: only the layer map's execution order
    (the previous layer's output) can tell which rows pay how much."""
    from haq.cost.learned import with_graph_context

    rng = np.random.default_rng(2)
    rows, lmap = [], []
    for model in "abcdef":
        for i in range(10):
            c, hw = int(rng.integers(2, 33)) * 8, int(rng.integers(4, 57))
            big = {"kind": "dwconv", "in_channels": c, "out_channels": c, "kernel_h": 3,
                   "kernel_w": 3, "stride_h": 1, "stride_w": 1, "groups": c, "in_h": hw,
                   "in_w": hw, "out_h": hw, "out_w": hw}  # fmt: skip
            fc1 = {**big, "kind": "conv", "out_channels": c // 4, "kernel_h": 1, "kernel_w": 1,
                   "groups": 1, "in_h": 1, "in_w": 1, "out_h": 1, "out_w": 1}  # fmt: skip
            for j, (sig, lat) in enumerate(((big, 1.0 + c * hw * hw * 9 / 1e3),
                                            (fc1, 1.0 + c * c / 4e3 + 2e-3 * c * hw * hw))):  # fmt: skip
                lmap.append({"model": model, "name": f"l{i}.{j}", "index": 2 * i + j, **sig})
                rows.append({**sig, "batch": 1, "precision": "fp32", "latency_us": lat,
                             "threads": 1, "model": model})  # fmt: skip
    frame, layer_map = pd.DataFrame(rows).drop_duplicates(SIGNATURE_COLUMNS), pd.DataFrame(lmap)
    joined = with_graph_context(frame, layer_map)
    fc1_rows = joined[joined["in_h"] == 1]
    assert (fc1_rows["reduced_elements"] > 0).all()
    assert (joined.loc[joined["in_h"] > 1, "reduced_elements"] == 0).all()
    report = LearnedCostModel("toy", max_iter=50).fit(joined, layer_map)
    without = LearnedCostModel("toy", max_iter=50).fit(frame, layer_map)
    assert report["leave_one_model_out"]["mean_mape"] < without["leave_one_model_out"]["mean_mape"]
