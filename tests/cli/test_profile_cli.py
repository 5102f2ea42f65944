"""`haq profile` beyond ONNX Runtime: gpu-h100 reaches its builder (a one-line error, exit 2,
without CUDA), and targets that are not measured say so."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from haq.cli import main


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--target", "gpu-h100"], "none is visible here (torch.cuda.is_available() is False)"),
        (["--target", "gpu-h100", "--probes", "2"], "--probes is for cpu-avx512"),
        (["--target", "npu-bismo-edge", "--model", "digits_cnn"], "npu-bismo-edge is simulated"),
        (["--target", "gpu-t4"], "gpu-t4 is published, not measured"),
        (["--target", "nosuch", "--model", "digits_cnn"], "measures: cpu-avx512, gpu-h100"),
    ],
)
def test_not_ort_targets_are_one_line_exit_2(
    argv: list[str], message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    rc = main(["profile", *argv, "--out", str(tmp_path / "t")])
    err = capsys.readouterr().err.strip()
    assert rc == 2
    assert err.startswith("haq: error:") and message in err and "\n" not in err
    assert not (tmp_path / "t").exists()
