"""`haq measure` / `haq search --measure-front` on a real digits search on cpu-avx512: every
front point timed in ONNX Runtime beside its prediction, kept across a resume, shown in the
report; targets with no runtime here refuse in one line before anything is written."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest

from haq.cli import main
from haq.hardware.profile import get_target
from haq.search import SearchResult


@pytest.fixture(scope="module")
def overlay(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """This module's own table overlay: the networks it measures stay out of other tests'."""
    path = tmp_path_factory.mktemp("overlay")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HAQ_OVERLAY_DIR", str(path))
        yield path


@pytest.fixture(autouse=True)
def _module_overlay(overlay: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HAQ_OVERLAY_DIR", str(overlay))


@pytest.fixture(scope="module")
def target(local_target: str, overlay: Path) -> str:
    return local_target


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory, target: str) -> Path:
    out = tmp_path_factory.mktemp("measure") / "run"
    args = ["search", "--model", "digits_cnn", "--target", target, "--budget", "6",
            "--workers", "0", "-q", "--out", str(out), "--measure-front"]  # fmt: skip
    assert main(args) == 0
    return out


def test_measure_front_stores_measured_beside_predicted(run: Path, target: str) -> None:
    pareto = json.loads((run / "pareto.json").read_text())
    doc = json.loads((run / "measured.json").read_text())
    assert doc["target"] == get_target(target).id and doc["threads"] == 1 and doc["rounds"] >= 1
    hashes = {p["config_hash"] for p in pareto["points"]}
    hashes |= {b["config_hash"] for b in pareto["baselines"].values()}
    assert hashes == set(doc["configs"])  # every front point and every baseline, once each
    for p in [*pareto["points"], *pareto["baselines"].values()]:
        row = doc["configs"][p["config_hash"]]
        assert p["measured_latency_ms"] == row["measured_latency_ms"] > 0
        assert row["stats"]["best_round_median_ms"] <= row["stats"]["median_ms"]
        assert row["predicted_ms"] == p["cost"]["latency_ms"]
        assert isinstance(p["dominated_when_measured"], bool)
    order = pareto["measured"]["order"]
    by_name = {p["name"]: p["measured_latency_ms"] for p in pareto["points"]}
    assert [by_name[n] for n in order] == sorted(by_name.values())
    trials = pd.read_parquet(run / "trials.parquet")
    for p in pareto["points"]:
        row = trials[trials["trial"] == p["trial"]].iloc[0]
        assert row["measured_latency_ms"] == p["measured_latency_ms"]
    front = SearchResult(run).front
    assert front["measured_latency_ms"].notna().all()


def test_uniform_configs_are_checked_against_the_tables_walls(run: Path, target: str) -> None:
    """The configs that run one kernel class throughout meet the same config's wall time in
    the tables (here: the overlay `--profile auto` or `haq profile` measured on this CPU)."""
    from haq.hardware.network_walls import table_walls

    doc = json.loads((run / "measured.json").read_text())
    check = doc["machine_check"]
    walls = table_walls(get_target(target), "digits_cnn", 1, 1)
    assert {"fp32", "int8"} <= set(walls)
    assert {r["kernel"] for r in check["references"]} >= {"fp32", "int8"}
    for r in check["references"]:
        assert r["measured_ms"] == doc["configs"][r["config_hash"]]["measured_latency_ms"]
        assert r["table_ms"] == pytest.approx(walls[r["kernel"]], abs=1e-5)
        assert r["ratio"] == pytest.approx(r["measured_ms"] / r["table_ms"], rel=1e-3)
    ratios = sorted(r["ratio"] for r in check["references"])
    assert check["ratio"] == ratios[len(ratios) // 2]
    assert (check["note"] is None) == (abs(check["ratio"] - 1) <= 0.05)


def test_measured_configs_teach_later_cost_models_of_the_network(run: Path, target: str,
                                                                 capsys) -> None:  # fmt: skip
    from haq.hardware.network_walls import read_networks

    doc = json.loads((run / "measured.json").read_text())
    records = read_networks(get_target(target).id)
    measured = {r["measured_latency_ms"] for r in doc["configs"].values()}
    assert len(records) >= 3 and all(r["model"] == "digits_cnn" for r in records)
    assert {r["measured_ms"] for r in records} <= measured
    capsys.readouterr()
    assert (
        main(["cost", "--target", target, "--model", "digits_cnn", "--bits", "w8a8", "--json"]) == 0
    )
    answer = json.loads(capsys.readouterr().out)
    assert f"measured({len(records)} configs)" in answer["model"], answer
    assert answer["measured_scale"]["configs"] == len(records) > 0
    assert main(["cost", "--target", target, "--model", "digits_cnn", "--bits", "w8a8"]) == 0
    assert f"of {len(records)} configs of this network" in capsys.readouterr().out
    assert main(["fit-cost-model", "--target", target, "--max-iter", "20", "--out",
                 str(run.parent / "fitted")]) == 0  # fmt: skip
    assert f"{len(records)} measured configs of 1 network(s)" in capsys.readouterr().out


def test_a_point_beaten_once_measured_is_marked(run: Path) -> None:
    pareto = json.loads((run / "pareto.json").read_text())
    entries = [*pareto["points"], *pareto["baselines"].values()]
    for e in entries:
        beaten = any(o["objectives"]["top1"] >= e["objectives"]["top1"]
                     and o["measured_latency_ms"] <= e["measured_latency_ms"]
                     and (o["objectives"]["top1"], o["measured_latency_ms"])
                     != (e["objectives"]["top1"], e["measured_latency_ms"])
                     for o in entries)  # fmt: skip
        assert e["dominated_when_measured"] == beaten, e["name"] if "name" in e else e["summary"]


def test_measurements_survive_a_resume_and_reach_the_report(run: Path, capsys) -> None:
    before = json.loads((run / "measured.json").read_text())["configs"]
    assert main(["search", "--resume", str(run), "--budget", "8", "--workers", "0", "-q"]) == 0
    pareto = json.loads((run / "pareto.json").read_text())
    entries = [*pareto["points"], *pareto["baselines"].values()]  # the baselines stay
    kept = [e for e in entries if e["config_hash"] in before]
    assert kept and all(
        e["measured_latency_ms"] == before[e["config_hash"]]["measured_latency_ms"] for e in kept
    )
    trials = pd.read_parquet(run / "trials.parquet")
    # measured configs teach new searches only: the resumed one keeps its first run's scale
    assert json.loads((run / "run.json").read_text())["cost_calibration"] is None
    assert not trials["cost_model"].str.contains("measured").any()
    timed = trials[trials["config_hash"].isin(list(before))]
    assert len(timed) and (timed["measured_latency_ms"] > 0).all()
    assert main(["measure", str(run), "--rounds", "2", "--runs-per-round", "3", "-q"]) == 0
    out = capsys.readouterr().out
    assert "measured.json" in out and "predicted" in out
    assert main(["report", str(run)]) == 0
    html = (run / "report.html").read_text()
    ratio = json.loads((run / "measured.json").read_text())["machine_check"]["ratio"]
    assert f"ran {ratio:.2f}x their wall time" in html
    table = html[html.index('id="measured-table"') :].split("</table>")[0]
    assert all(p["name"] in table for p in json.loads((run / "pareto.json").read_text())["points"])


def _one_line_exit_2(args: list[str], capsys, expect: str) -> None:
    code = main(args)
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("haq: error:") and err.count("\n") == 1, (args, err)
    assert expect in err, err


def test_targets_without_a_runtime_here_refuse_before_searching(tmp_path: Path, capsys) -> None:
    base = ["search", "--model", "digits_cnn", "--budget", "4", "--workers", "0", "-q"]
    _one_line_exit_2([*base, "--target", "npu-bitfusion-edge", "--measure-front",
                      "--out", str(tmp_path / "a")], capsys, "simulated")  # fmt: skip
    _one_line_exit_2([*base, "--measure-front", "--out", str(tmp_path / "b")], capsys, "--target")
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()
    assert main([*base, "--target", "npu-bitfusion-edge", "--out", str(tmp_path / "c")]) == 0
    files = {p.name: p.stat().st_mtime_ns for p in (tmp_path / "c").iterdir()}
    _one_line_exit_2(["measure", str(tmp_path / "c")], capsys, "no runtime to measure")
    _one_line_exit_2(["measure", str(tmp_path / "missing")], capsys, "no finished search")
    _one_line_exit_2(["measure", str(tmp_path / "c"), "--rounds", "0"], capsys, "--rounds")
    assert {p.name: p.stat().st_mtime_ns for p in (tmp_path / "c").iterdir()} == files
