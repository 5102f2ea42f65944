"""`haq finetune` on a real digits search: before/after/ORT accuracy added to the run, and
every bad input is one line, exit 2, with the run dir unchanged. Searches with --ptq adaround
learn each rounding once."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import haq
from haq.cli import main
from haq.runtime.machine import has_vnni
from haq.search import SearchResult


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> SearchResult:
    out = tmp_path_factory.mktemp("ft") / "run"
    return haq.search(model="digits_cnn", budget=8, out=str(out), workers=0, progress=False)


def _smallest(res: SearchResult) -> str:
    front = res.front
    return str(front.sort_values("size_mb").iloc[0]["name"])


def test_finetune_adds_before_after_and_ort_to_the_run(run: SearchResult, capsys) -> None:
    point = _smallest(run)
    assert main(["finetune", str(run.path), "--points", point, "--epochs", "2", "--json"]) == 0
    entry = json.loads(capsys.readouterr().out)[point]
    saved = json.loads((run.path / "finetuned.json").read_text())
    assert saved[point] == entry and (run.path / entry["onnx"]).is_file()
    assert entry["train_data"] == "digits:calib" and entry["test_images"] > 100
    assert entry["after_top1"] >= entry["before_top1"] - 1.0
    tol = 0.5 if has_vnni() else 3.0  # without VNNI, ORT's u8s8 kernels saturate int16 pairs
    assert abs(entry["ort_top1"] - entry["after_top1"]) <= tol
    assert entry["steps"] == 2 * -(-entry["train_images"] // 64)
    html = Path(run.report(run.path / "report.html")).read_text()
    table = html[html.index('id="finetuned-table"') :].split("</table>")[0]
    assert point in table and f"{entry['after_top1']:.4g}" in table


def test_finetune_bad_inputs_leave_the_run_alone(run: SearchResult, capsys, tmp_path: Path) -> None:
    before = {p.name: p.stat().st_mtime_ns for p in run.path.iterdir()}
    point = _smallest(run)
    cases = [
        ([str(run.path), "--points", "trial-9999"], "not on the front"),
        ([str(tmp_path), "--points", point], "no finished search"),
        ([str(run.path), "--points", point, "--epochs", "0"], "must be positive"),
        (
            [str(run.path), "--points", point, "--train-data", "distilled"],
            "labelled training images",
        ),
        ([str(run.path), "--points", point, "--train-data", str(tmp_path / "nope")], "not found"),
    ]
    for argv, message in cases:
        code = main(["finetune", *argv])
        err = capsys.readouterr().err
        assert code == 2 and err.startswith("haq: error:") and err.count("\n") == 1, (argv, err)
        assert message in err, (argv, err)
    assert {p.name: p.stat().st_mtime_ns for p in run.path.iterdir()} == before


def test_search_with_adaround_learns_each_rounding_once(tmp_path: Path, capfd) -> None:
    kw = dict(
        model="digits_cnn",
        budget=6,
        workers=0,
        progress=False,
        ptq="adaround",
        adaround_iterations=50,
    )
    first = haq.search(out=str(tmp_path / "a"), **kw)
    err = capfd.readouterr().err
    assert "adaround: learning" in err
    assert json.loads((first.path / "run.json").read_text())["options"]["ptq"] == "adaround"
    haq.search(out=str(tmp_path / "b"), **kw)
    assert "adaround: learning" not in capfd.readouterr().err
