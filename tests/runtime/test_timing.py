"""Interleaved timing: every session timed in every round, and the tables' statistic is the
fastest round's median."""

from __future__ import annotations

from haq.runtime.timing import latency_stats, time_interleaved


class _Session:
    def __init__(self) -> None:
        self.calls = 0

    def run(self, _outputs: object, _feeds: object) -> None:
        self.calls += 1


def test_every_session_every_round() -> None:
    sessions = [_Session(), _Session(), _Session()]
    rounds: list[int] = []
    times = time_interleaved(sessions, {}, rounds=4, per_round=5, seed=1, on_round=rounds.append)
    assert rounds == [0, 1, 2, 3]
    assert all(len(t) == 4 and all(len(r) == 5 for r in t) for t in times)
    assert all(s.calls == 4 * 6 for s in sessions)  # one untimed re-warm run per round


def test_best_round_median() -> None:
    st = latency_stats([[3.0, 1.0, 2.0], [5.0, 5.0, 6.0], [1.5, 1.5, 9.0]])
    assert st.best_round_median_ms == 1.5 and st.median_ms == 3.0 and st.runs == 9
    assert st.p10_ms <= st.median_ms <= st.p90_ms
