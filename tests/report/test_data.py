"""Bad inputs to `haq report`: one line, exit 2, nothing in the run dir changed."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from haq.cli import main
from haq.search import SearchResult
from tests.report.conftest import snapshot


def _fails(args: list[str], capsys: pytest.CaptureFixture[str], *words: str) -> None:
    assert main(["report", *args]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("haq: error:") and "\n" not in err, err
    assert all(w in err for w in words), err


def test_bad_inputs_exit_2_and_change_nothing(run_a: SearchResult, tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:  # fmt: skip
    not_a_run = tmp_path / "plain"
    not_a_run.mkdir()
    (not_a_run / "notes.txt").write_text("hello")
    _fails([str(not_a_run)], capsys, "not a haq results directory")
    _fails([str(tmp_path / "missing")], capsys, "not a haq results directory")

    unfinished = tmp_path / "unfinished"  # killed before its first trial finished
    unfinished.mkdir()
    for name in ("run.json", "study.db"):
        shutil.copy(run_a.path / name, unfinished / name)
    _fails([str(unfinished)], capsys, "no finished trial")

    corrupt = tmp_path / "corrupt"
    shutil.copytree(run_a.path, corrupt)
    (corrupt / "trials.parquet").write_bytes(b"PAR1 not really a parquet file")
    (corrupt / "report.html").unlink()

    for run in (not_a_run, unfinished, corrupt, run_a.path):
        before = snapshot(run)
        if run == corrupt:
            _fails([str(run)], capsys, "trials.parquet", "unreadable", "--resume")
        elif run == run_a.path:
            _fails(
                [str(run), "-o", str(tmp_path / "no" / "such" / "dir" / "r.html")],
                capsys,
                "does not exist",
            )
            _fails([str(run), "-o", str(tmp_path)], capsys, "is a directory")
        else:
            _fails([str(run)], capsys)
        assert snapshot(run) == before, run
    assert not (tmp_path / "no").exists()


def test_runs_of_different_objectives_are_not_compared(run_a: SearchResult, tmp_path: Path,
                                                       capsys: pytest.CaptureFixture[str]) -> None:  # fmt: skip
    import json

    other = tmp_path / "other"
    shutil.copytree(run_a.path, other)
    p = json.loads((other / "pareto.json").read_text())
    p["objectives"] = {"top1": "maximize", "size": "minimize"}
    for pt in p["points"]:
        pt["objectives"] = {
            "top1": pt["objectives"]["top1"],
            "size": pt["cost"]["size_bytes"] / 1e6,
        }
    (other / "pareto.json").write_text(json.dumps(p))
    _fails(
        [str(run_a.path), str(other), "-o", str(tmp_path / "c.html")],
        capsys,
        "different objectives",
    )
