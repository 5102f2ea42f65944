"""`haq eval`, `haq layers`, `haq models` as a user runs them; every bad input is one line, exit 2."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from haq.cli import main


def _err(capsys: pytest.CaptureFixture[str], argv: list[str]) -> str:
    code = main(argv)
    err = capsys.readouterr().err
    assert code == 2, err
    assert err.startswith("haq: error:") and err.count("\n") == 1, err
    return err


def test_eval_json_on_embedded_default(capsys) -> None:
    assert main(["eval", "--model", "digits_cnn", "--bits", "w8a8", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    for key in ("top1", "top5", "per_class", "worst_class", "n_images", "seconds"):
        assert key in out
    assert out["top1"] > 90 and len(out["per_class"]) == 10
    # calibration images were held out of the evaluation images
    assert out["calib_images"] + out["n_images"] == 450


def test_quantization_really_happens(capsys) -> None:
    results = {}
    for bits in ("fp32", "w2a8"):
        main(["eval", "--model", "digits_cnn", "--bits", bits, "--json"])
        results[bits] = json.loads(capsys.readouterr().out)["top1"]
    assert results["w2a8"] < results["fp32"] - 5


def test_layers_and_models(capsys) -> None:
    assert main(["layers", "--model", "digits_cnn", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["kind"] for r in rows] == ["conv", "conv", "dwconv", "conv", "linear", "linear"]
    assert main(["models", "--json"]) == 0
    names = {m["name"] for m in json.loads(capsys.readouterr().out)}
    assert {"resnet18", "resnet50", "mobilenet_v2", "mobilenet_v3_large", "efficientnet_b0", "digits_cnn",
            "cifar_resnet20", "cifar_resnet56"} <= names  # fmt: skip


def test_bad_inputs(capsys, tmp_path: Path) -> None:
    assert "unknown model" in _err(capsys, ["eval", "--model", "resnet9000"])
    assert "not found" in _err(
        capsys, ["eval", "--model", "digits_cnn", "--data", str(tmp_path / "nope")]
    )
    (tmp_path / "empty").mkdir()
    assert "no images" in _err(
        capsys, ["eval", "--model", "digits_cnn", "--data", str(tmp_path / "empty")]
    )
    bad = tmp_path / "bad.yaml"
    bad.write_text("default: w8a8\nlayers: {conv1: [w4a8\n")
    assert "not valid YAML" in _err(capsys, ["eval", "--model", "digits_cnn", "--bits", str(bad)])
    unknown = tmp_path / "unknown.yaml"
    unknown.write_text("default: w8a8\nlayers: {layer9.conv: w4a8}\n")
    assert "does not have" in _err(
        capsys, ["eval", "--model", "digits_cnn", "--bits", str(unknown)]
    )
    assert "neither a precision" in _err(
        capsys, ["eval", "--model", "digits_cnn", "--bits", "int3"]
    )
    assert "positive" in _err(capsys, ["eval", "--model", "digits_cnn", "--limit", "0"])
    assert "weights file" in _err(
        capsys, ["eval", "--model", "digits_cnn", "--weights", str(tmp_path / "w.pt")]
    )
    assert "unknown PTQ method 'adaroud'" in _err(
        capsys, ["eval", "--model", "digits_cnn", "--ptq", "adaroud"]
    )
    assert "must be positive" in _err(
        capsys, ["eval", "--model", "digits_cnn", "--ptq", "adaround", "--adaround-iterations", "0"]
    )


def test_eval_with_adaround_learns_once_then_loads(capsys) -> None:
    argv = ["eval", "--model", "digits_cnn", "--bits", "w3a8", "--ptq", "adaround",
            "--adaround-iterations", "200", "--json"]  # fmt: skip
    assert main(argv) == 0
    first = json.loads(capsys.readouterr().out)
    assert main(argv) == 0
    captured = capsys.readouterr()
    again = json.loads(captured.out)
    assert first["adaround_seconds"] > 0 and again["adaround_seconds"] == 0.0
    assert again["top1"] == first["top1"] and "adaround: learning" not in captured.err
    main(["eval", "--model", "digits_cnn", "--bits", "w3a8", "--json"])
    nearest = json.loads(capsys.readouterr().out)
    assert first["ptq"] == "adaround" and first["mean_kl"] < nearest["mean_kl"]


def test_wrong_checkpoint_for_architecture(capsys, shared: Path) -> None:
    err = _err(capsys, ["eval", "--model", "cifar_resnet20", "--weights", str(shared / "models/resnet56-4bfd9763.th"),
                        "--data", "synthetic"])  # fmt: skip
    assert "do not fit cifar_resnet20" in err


def test_console_script_exit_code_and_no_traceback(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "haq", "eval", "--model", "nope"], capture_output=True, text=True
    )
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr and proc.stderr.count("\n") == 1


def test_random_weights_said_once_and_only_where_accuracy_is_reported() -> None:
    """`--weights none` makes accuracy meaningless: eval says so in one line (not again with
    the warnings module's source line); listing layers, whose shapes need no weights, is quiet."""

    def stderr(*argv: str) -> str:
        proc = subprocess.run([sys.executable, "-m", "haq", *argv], capture_output=True, text=True)
        assert proc.returncode == 0, proc.stderr
        return proc.stderr

    err = stderr("eval", "--model", "cifar_resnet20", "--weights", "none", "--data",
                 "synthetic:64", "--calib-data", "synthetic:16", "--bits", "w8a8", "--json")  # fmt: skip
    assert err.count("uses random weights") == 1 and "RandomWeightsWarning" not in err, err
    assert "random weights" not in stderr("layers", "--model", "cifar_resnet20", "--weights",
                                          "none", "--json")  # fmt: skip
