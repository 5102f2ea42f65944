"""The report's tables against what the search wrote."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from haq import BitConfig
from haq.report.compare import compare
from haq.report.data import load_run, load_runs
from haq.report.views import FRONT, class_view, heat_matrix, history, trial_roles
from haq.search import SearchResult


def test_history_ends_at_the_runs_hypervolume(run_a: SearchResult) -> None:
    run = load_run(run_a.path)
    h = history(run)
    assert h.hypervolume[-1] == pytest.approx(run_a.hypervolume, rel=1e-12)
    assert h.front_size[-1] == len(run.pareto["points"])
    assert h.hypervolume == sorted(h.hypervolume)  # fixed axes: it only grows
    assert h.evaluations[-1] == run.pareto["evaluations"]


def test_roles_and_heat_matrix(run_a: SearchResult) -> None:
    run = load_run(run_a.path)
    roles = trial_roles(run)
    assert sorted(run.trials["trial"][roles == FRONT]) == sorted(run.front_trials)
    points, labels, w, a = heat_matrix(run)
    assert len(labels) == len(run.layers) and " · conv · " in labels[0] and "MACs" in labels[0]
    configs = {p["name"]: BitConfig.from_dict(p["config"]) for p in run.pareto["points"]}
    first = run.layer_order[0]
    for j, name in enumerate(points):
        assert (w[0][j], a[0][j]) == (configs[name][first].w_bits, configs[name][first].a_bits)


def test_class_view_is_on_test_images_against_float(run_a: SearchResult) -> None:
    run = load_run(run_a.path)
    view = class_view(run)
    assert view is not None and view.split == "test"
    assert view.reference == [run.pareto["float_test"]["per_class"][c] for c in view.classes]
    point, cls, drop = view.worst
    i = view.classes.index(cls)
    assert drop == pytest.approx(view.reference[i] - view.points[point][i])
    assert all(
        drop >= view.reference[k] - view.points[n][k]
        for n in view.shown
        for k in range(len(view.classes))
    )


def test_comparison_against_the_union_front(run_a: SearchResult, run_b: SearchResult) -> None:
    runs = [load_run(run_a.path), load_run(run_b.path)]
    cmp = compare(runs)
    assert all(0 < r.hypervolume <= cmp.union_hypervolume + 1e-12 for r in cmp.rows)
    assert sum(r.union_points for r in cmp.rows) >= cmp.union_size > 0
    same = compare([runs[0], runs[0]])
    assert same.rows[0].share == pytest.approx(1.0)


def test_trial_attributes_for_the_dashboard(run_a: SearchResult) -> None:
    import optuna

    study = optuna.load_study(study_name="haq", storage=run_a.dir.storage_url)
    assert study.metric_names == list(run_a.objectives)
    p = json.loads(run_a.dir.pareto_path.read_text())
    tests = {pt["trial"]: pt["test"]["top1"] for pt in p["points"]}
    for t in study.trials:
        assert (
            t.user_attrs["summary"]
            and "npu-bitfusion-edge (simulated" in t.user_attrs["cost_provenance"]
        )
        if t.user_attrs["trial"] in tests:
            assert t.user_attrs["test_top1"] == tests[t.user_attrs["trial"]]


def test_clashing_run_names_are_told_apart(run_a: SearchResult, tmp_path: Path) -> None:
    import shutil

    twin = tmp_path / run_a.path.name
    shutil.copytree(run_a.path, twin)
    labels = [r.label for r in load_runs([run_a.path, twin])]
    assert len(set(labels)) == 2 and labels == [str(run_a.path), str(twin)]
