"""The study's history read by plain queries equals Optuna's own reading of every trial."""

from __future__ import annotations

from pathlib import Path

import optuna

import haq
from haq.search.options import SearchOptions, restore_options
from haq.search.runner import Search
from haq.search.storage import StudyStore
from haq.search.trials import COMPLETE, FAILED, PRUNED, TrialRecord


def test_history_matches_optunas_reading(tmp_path: Path) -> None:
    out = tmp_path / "run"
    haq.search(
        model="digits_cnn", budget=12, out=str(out), workers=0, progress=False, max_size_mb=0.045
    )  # fmt: skip  (tight: repaired trials too)
    search = Search(restore_options(SearchOptions(out=str(out), resume=True, progress=False)))
    ctx = search.driver_context()
    store = StudyStore(
        search.results.study_db, search.space, search.objectives, ctx.directions, True
    )
    fast = store.history()
    state = {optuna.trial.TrialState.COMPLETE: COMPLETE, optuna.trial.TrialState.PRUNED: PRUNED,
             optuna.trial.TrialState.FAIL: FAILED}  # fmt: skip
    slow = sorted((TrialRecord.from_user_attrs(t.user_attrs, state[t.state], t.values, t.system_attrs)
                   for t in store.study.get_trials(deepcopy=False) if t.state in state),
                  key=lambda r: r.number)  # fmt: skip
    assert len(fast) == 12 and fast == slow
    assert {r.state for r in fast} >= {COMPLETE}
