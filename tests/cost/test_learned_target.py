"""Fitting a target's learned model from its tables: the graph context each row's model
adds (activation after, elements pooled in front) and `fit_target` on a profile."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from haq.cost.learned import MODEL_FILE, LearnedCostModel
from haq.cost.learned_target import fit_target, with_graph_context
from haq.errors import HaqError
from haq.hardware.profile import get_target
from haq.hardware.tables import SIGNATURE_COLUMNS
from tests.cost.synthetic import learned_rows, write_target


def test_fit_target_on_profile_tables(tmp_path: Path) -> None:
    frame, lmap = learned_rows()
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
    m = fit_target(get_target(path), save=False, max_iter=20, probes="all")
    assert m.report["probe_rows"] == len(probes) and m.report["rows"] == 2 * len(frame)
    assert m.report["leave_one_model_out"]["per_model"].keys() == {"a", "b", "c"}
    # by default only probe rows of an op kind x kernel class no named row has join
    assert fit_target(get_target(path), save=False, max_iter=20).report["probe_rows"] == 0
    grouped = probes.assign(kind="gconv", groups=2)
    pd.concat([probes, grouped]).to_csv(tmp_path / "toy" / "probes.csv", index=False)
    m = fit_target(get_target(path), save=False, max_iter=20)
    assert m.report["probe_rows"] == len(grouped) and m.knows("gconv", "fp32")
    assert not fit_target(get_target(path), save=False, max_iter=20, probes="none").knows(
        "gconv", "fp32"
    )
    with pytest.raises(HaqError, match="probes must be one of missing, all, none"):
        fit_target(get_target(path), save=False, probes="some")
    with pytest.raises(HaqError, match="no column 'kernel_us'"):
        fit_target(get_target(path), save=False, max_iter=20, column="kernel_us")


def test_activation_column_joins_from_the_layer_map_and_is_learned() -> None:
    """Random shapes, a random activation per layer; a fused relu6 costs 1.5x. Only the
    ``act`` column can tell which rows pay it."""
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
