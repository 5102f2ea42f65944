"""The user's table overlay: its rows replace the shipped rows of the same key, a model it
profiled takes glue from it only, and a broken overlay file is one line naming the fix."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from haq.cli import main
from haq.config import BitConfig
from haq.cost import cost_model_for
from haq.cost.matrix import LOOKUP
from haq.hardware.overlay import load_tables, overlay_path
from haq.hardware.profile import get_target
from haq.hardware.tables import signature
from haq.models import discover_layers, load_model


@pytest.fixture
def overlay(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("HAQ_OVERLAY_DIR", str(tmp_path))
    d = overlay_path("cpu-avx512")
    d.mkdir(parents=True)
    return d


def test_overlay_row_replaces_the_shipped_row(overlay: Path) -> None:
    loaded = load_model("cifar_resnet20", "none")
    layers = discover_layers(loaded.model, loaded.example_input())
    plain = cost_model_for("cpu-avx512", layers)
    k = plain.kernel_index["int8"]
    assert plain.source[1, k] == LOOKUP  # resnet20 is a profiled model
    row = {**signature(layers[1]), "precision": "int8", "threads": 1, "latency_us": 123.0}
    pd.DataFrame([row]).to_csv(overlay / "layers.csv", index=False)
    tables = load_tables(get_target("cpu-avx512"))
    assert tables.overlay_rows == 1
    same = tables.layers
    key = (same["precision"] == "int8") & (same["threads"] == 1) & (same["in_channels"] == layers[1].in_channels) \
        & (same["out_channels"] == layers[1].out_channels) & (same["in_h"] == layers[1].in_hw[0]) \
        & (same["kernel_h"] == layers[1].kernel[0]) & (same["stride_h"] == layers[1].stride[0])  # fmt: skip
    assert list(same[key & (same["batch"] == 1)]["latency_us"]) == [123.0]
    with_overlay = cost_model_for("cpu-avx512", layers)
    # every layer of that signature now reads the overlay (the glue of resnet20 still adds)
    delta = with_overlay.latency_us[1, k] - plain.latency_us[1, k]
    assert with_overlay.source[1, k] == LOOKUP and delta != 0


def test_profiled_model_takes_its_glue_from_the_overlay(overlay: Path) -> None:
    profile = get_target("cpu-avx512")
    shipped = load_tables(profile)
    assert shipped.glue is not None and shipped.layer_map is not None
    lm = shipped.layer_map[shipped.layer_map["model"] == "resnet18"]
    lm.to_csv(overlay / "layer_map.csv", index=False)
    glue = shipped.glue[shipped.glue["model"] == "resnet18"].head(1).assign(latency_us=7.0)
    glue.to_csv(overlay / "glue.csv", index=False)
    merged = load_tables(profile)
    assert merged.glue is not None and merged.layer_map is not None
    mine = merged.glue[merged.glue["model"] == "resnet18"]
    assert len(mine) == 1 and float(mine["latency_us"].iloc[0]) == 7.0
    assert len(merged.layer_map[merged.layer_map["model"] == "resnet18"]) == len(lm)
    others = merged.glue[merged.glue["model"] != "resnet18"]
    assert len(others) == len(shipped.glue[shipped.glue["model"] != "resnet18"])


def test_an_overlay_without_transition_rows_keeps_the_shipped_ones(overlay: Path) -> None:
    """A profile of uniform configs only (--no-transitions, or --max-jobs stopping before the
    alternating ones) writes a headers-only transitions.csv: it adds nothing."""
    profile = get_target("cpu-avx512")
    shipped = load_tables(profile).transitions
    assert shipped is not None
    shipped.head(0).to_csv(overlay / "transitions.csv", index=False)
    merged = load_tables(profile).transitions
    assert merged is not None and len(merged) == len(shipped)
    assert merged["latency_us"].dtype == shipped["latency_us"].dtype
    loaded = load_model("cifar_resnet20", "none")
    layers = discover_layers(loaded.model, loaded.example_input())
    config = BitConfig.uniform("w8a8", [s.name for s in layers])
    assert cost_model_for("cpu-avx512", layers).score(config).latency_ms > 0


def test_broken_overlay_is_one_line(overlay: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (overlay / "layers.csv").write_text("kind,in_channels\nconv,abc\n")
    code = main(["cost", "--target", "cpu-avx512", "--model", "digits_cnn", "--bits", "w8a8"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and err.startswith("haq: error:")
    assert str(overlay) in err and "delete" in err


def test_refit_learns_from_the_overlay_into_the_users_folder(overlay: Path, capsys) -> None:
    from haq.cost.learned import LearnedCostModel

    loaded = load_model("digits_cnn", "default")
    layers = discover_layers(loaded.model, loaded.example_input())
    rows = [{**signature(s), "precision": "fp32", "threads": 1, "latency_us": 9.0} for s in layers]
    pd.DataFrame(rows).to_csv(overlay / "layers.csv", index=False)
    shipped = LearnedCostModel.folder("cpu-avx512")
    before = {p.name: p.read_bytes() for p in shipped.iterdir() if p.is_file()}
    assert main(["fit-cost-model", "--target", "cpu-avx512", "--max-iter", "20", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["overlay_rows"] == len(rows)
    assert Path(report["saved_to"]) == LearnedCostModel.user_folder("cpu-avx512")
    assert {p.name: p.read_bytes() for p in shipped.iterdir() if p.is_file()} == before
    found = LearnedCostModel.find(get_target("cpu-avx512"))
    assert found is not None and found.report["overlay_rows"] == len(rows)


def test_rows_of_graphs_the_exporter_no_longer_makes_are_dropped(overlay: Path) -> None:
    """cpu-avx512's tables predate export revision 2: their fp32 -> int8 rows across ResNet's
    stem max pool (transition and glue) time a uint8 pool the exporter no longer produces; a
    target profiled since keeps every row."""
    import dataclasses

    from haq.hardware.tables import read_glue, read_transitions

    profile = get_target("cpu-avx512")
    raw = read_transitions(profile.tables["transitions"])
    raw_glue = read_glue(profile.tables["glue"])

    def stem(t: pd.DataFrame) -> pd.Series:
        return (t["from_kernel"] == "fp32") & (t["to_kernel"] == "int8") & (t["h"] == 56) \
            & (t["reduced_elements"] > 0)  # fmt: skip

    def stem_glue(g: pd.DataFrame) -> pd.Series:
        return (g["model"] == "resnet18") & (g["index"] == 1) & (g["from_kernel"] == "fp32") \
            & (g["to_kernel"] == "int8")  # fmt: skip

    assert raw[stem(raw)]["latency_us"].min() > 1000  # the slow uint8 pool
    assert raw_glue[stem_glue(raw_glue)]["latency_us"].min() > 500
    loaded = load_tables(profile)
    assert loaded.transitions is not None and loaded.glue is not None
    assert not stem(loaded.transitions).any() and not stem_glue(loaded.glue).any()
    trans = loaded.transitions
    assert ((trans["reduced_elements"] > 0) & (trans["h"] == 1)).any()  # global pools stay
    same_class = loaded.glue[(loaded.glue["model"] == "resnet18") & (loaded.glue["index"] == 1)]
    assert set(same_class["to_kernel"]) >= {"fp32", "int8-weights"}  # only into int8 is dropped
    details = {**profile.provenance_details, "export_revision": 2}
    fresh = load_tables(dataclasses.replace(profile, provenance_details=details))
    assert len(fresh.transitions) == len(raw) and len(fresh.glue) == len(raw_glue)
