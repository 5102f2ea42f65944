"""The report of real runs, opened in headless chromium: no console error, every plot drawn,
the drawn front equal to pareto.json's; the comparison of two runs; --report and the API."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from haq.cli import main
from haq.report import write_report
from haq.search import SearchResult

READ_FRONTS = """
const gd = document.getElementById('front-plot');
return gd.data.filter(t => t.meta && t.meta.role === 'front')
              .map(t => ({run: t.meta.run, x: Array.from(t.x), y: Array.from(t.y), colour: t.marker.color}));
"""
PLOTS = """
return Array.from(document.querySelectorAll('.plotly-graph-div')).map(g => ({
    id: g.id, drawn: !!g._fullLayout && g.querySelectorAll('.main-svg').length > 0
                     && g.querySelectorAll('.cartesianlayer .point, .cartesianlayer .js-line, .cartesianlayer .hm').length > 0,
    traces: (g.data || []).length}));
"""


def _open(browser: Any, page: Path) -> list[dict[str, Any]]:
    browser.get("about:blank")
    browser.get_log("browser")  # drop what came before
    browser.get(page.resolve().as_uri())
    errors = [e for e in browser.get_log("browser") if e["level"] == "SEVERE"]
    assert errors == [], errors
    plots = browser.execute_script(PLOTS)
    assert plots and all(p["drawn"] and p["traces"] for p in plots), plots
    return plots


def _front_points(run: SearchResult) -> set[tuple[float, float]]:
    p = json.loads(run.dir.pareto_path.read_text())
    acc, cost = list(p["objectives"])[0], list(p["objectives"])[1]
    return {(pt["objectives"][cost], pt["objectives"][acc]) for pt in p["points"]}


def _drawn(trace: dict[str, Any]) -> set[tuple[float, float]]:
    return set(zip(trace["x"], trace["y"], strict=True))


def test_report_in_chromium(run_a: SearchResult, browser: Any) -> None:
    page = run_a.path / "report.html"  # written by the search itself (--report)
    plots = _open(browser, page)
    # self-contained: the page fetched nothing (no CDN, no file beside it)
    assert browser.execute_script("return performance.getEntriesByType('resource').length") == 0
    assert {p["id"] for p in plots} >= {
        "front-plot",
        "heatmap-plot",
        "history-plot",
        "classes-plot",
    }
    (front,) = browser.execute_script(READ_FRONTS)
    assert _drawn(front) == _front_points(run_a)
    roles = browser.execute_script(
        "return document.getElementById('front-plot').data.map(t => t.meta.role)"
    )
    assert {"front", "baseline", "infeasible"} <= set(roles)
    # another pair of axes from the menu redraws without an error
    browser.execute_script("""
        const gd = document.getElementById('front-plot');
        const b = gd.layout.updatemenus[0].buttons[1];
        Plotly.update(gd, b.args[0], b.args[1]);""")
    assert [e for e in browser.get_log("browser") if e["level"] == "SEVERE"] == []
    assert "size" in browser.execute_script(
        "return document.getElementById('front-plot').layout.xaxis.title.text"
    )


def test_comparison_in_chromium(
    run_a: SearchResult, run_b: SearchResult, browser: Any, tmp_path: Path
) -> None:
    out = tmp_path / "compare.html"
    assert main(["report", str(run_a.path), str(run_b.path), "-o", str(out)]) == 0
    _open(browser, out)
    fronts = {f["run"]: f for f in browser.execute_script(READ_FRONTS)}
    assert _drawn(fronts[run_a.path.name]) == _front_points(run_a)
    assert _drawn(fronts[run_b.path.name]) == _front_points(run_b)
    assert fronts[run_a.path.name]["colour"] != fronts[run_b.path.name]["colour"]
    rows = browser.execute_script(
        "return Array.from(document.querySelectorAll('#hypervolume-table tr')).map(r => r.innerText)"
    )
    assert len(rows) == 4 and rows[-1].startswith("union front")


def test_measured_latency_is_plotted(run_a: SearchResult, browser: Any, tmp_path: Path) -> None:
    run = tmp_path / "measured"
    shutil.copytree(run_a.path, run)
    p = json.loads((run / "pareto.json").read_text())
    for pt in p["points"]:
        pt["measured_latency_ms"] = pt["cost"]["latency_ms"] * 1.1
    (run / "pareto.json").write_text(json.dumps(p))
    plots = _open(browser, write_report([run]))
    assert "measured-plot" in {q["id"] for q in plots}


def test_api_report(run_a: SearchResult, tmp_path: Path) -> None:
    out = run_a.report(tmp_path / "api.html")
    assert out == tmp_path / "api.html" and out.stat().st_size < 8e6


def test_missing_plotly_is_one_line_error(run_a: SearchResult, tmp_path: Path,
                                          monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:  # fmt: skip
    monkeypatch.setitem(
        __import__("sys").modules, "plotly", None
    )  # as if the extra were not installed
    assert main(["report", str(run_a.path), "-o", str(tmp_path / "r.html")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("haq: error:") and "plotly" in err and "\n" not in err
