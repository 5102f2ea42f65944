"""A search with no images at all: data-free on distilled images, fidelity as the objective,
the images distilled once per search (in the driver process, before any actor starts) and
read from the cache by every evaluator, the Ray actors' included."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from haq.cli import main


def _search(tmp_path: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "haq", "search", "--model", "cifar_resnet20", "--weights", "none",
           "--calib-data", "distilled:16:5", "--budget", "4", "--out", str(tmp_path / "run"), *extra]  # fmt: skip
    env = {**os.environ, "HAQ_CACHE_DIR": str(tmp_path / "cache"), "OMP_NUM_THREADS": "1"}
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)


def test_distilled_once_per_search_for_every_actor(tmp_path: Path) -> None:
    proc = _search(tmp_path, "--workers", "2")
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-3000:]
    starts = [ln for ln in out.splitlines() if "distilling" in ln and "elapsed" not in ln]
    assert len(starts) == 1, out[-3000:]  # the driver distilled, once
    assert starts[0].startswith("distilling 16 data-free images")
    cached = list((tmp_path / "cache" / "distilled").glob("*.pt"))
    assert len(cached) == 1
    # an actor that distilled again would have rewritten the cache file after it started,
    # which is after the driver wrote the layer table
    layers = tmp_path / "run" / "layers.csv"
    assert cached[0].stat().st_mtime_ns <= layers.stat().st_mtime_ns
    run = json.loads((tmp_path / "run" / "run.json").read_text())
    assert run["objectives"][0] == "fidelity" and run["options"]["data"] == "distilled:16:5"
    assert run["options"]["val_split"] == 0.5 and "Ray: 2 workers" in out
    assert "data-free search on 16 images" in out and "Objective 'fidelity'" in out
    pareto = json.loads((tmp_path / "run" / "pareto.json").read_text())
    assert pareto["points"] and all(p["test"]["agreement"] is not None for p in pareto["points"])


def test_labelled_objective_on_distilled_images_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["search", "--model", "cifar_resnet20", "--weights", "none", "--calib-data",
                 "distilled:8:1", "--objectives", "top1,size", "--out", str(tmp_path / "r"),
                 "--workers", "0", "-q"])  # fmt: skip
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and err[-1].startswith("haq: error: objective top1 needs labelled images")
    assert "use fidelity" in err[-1]
