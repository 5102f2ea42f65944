"""Timing several ONNX Runtime sessions fairly on a shared machine: interleaved rounds.

Every round runs each session in a fresh random order, so a burst of other load hits all of
them alike instead of a few; the statistic the measured cpu-avx512 tables hold is the fastest
round's median (other processes only ever slow a run down). One helper for `haq measure` and
the cost-model experiments, so a measured front and a table are timed the same way.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any


@dataclass(frozen=True)
class LatencyStats:
    """Statistics of one session's timed runs over all rounds (milliseconds)."""

    best_round_median_ms: float  # the tables' statistic
    median_ms: float
    p10_ms: float
    p90_ms: float
    runs: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def latency_stats(per_round: Sequence[Sequence[float]]) -> LatencyStats:
    """Median and 10th / 90th percentiles of all runs, and the fastest round's median."""
    import numpy as np

    every = [t for runs in per_round for t in runs]
    return LatencyStats(
        best_round_median_ms=float(min(statistics.median(r) for r in per_round)),
        median_ms=float(np.median(every)),
        p10_ms=float(np.percentile(every, 10)),
        p90_ms=float(np.percentile(every, 90)),
        runs=len(every),
    )


def time_interleaved(
    sessions: Sequence[Any],
    feeds: Mapping[str, Any],
    rounds: int,
    per_round: int,
    seed: int = 0,
    on_round: Callable[[int], None] | None = None,
) -> list[list[list[float]]]:
    """Per session and round, the ms of each timed run: ``rounds`` rounds over all sessions in
    a fresh random order, ``per_round`` runs each (one untimed run first, to re-warm caches).
    ``on_round(k)`` is called after round k (0-based), for progress."""
    import numpy as np

    rng = np.random.default_rng(seed)
    out: list[list[list[float]]] = [[] for _ in sessions]
    for k in range(rounds):
        for i in rng.permutation(len(sessions)):
            sess = sessions[i]
            sess.run(None, feeds)
            runs = []
            for _ in range(per_round):
                t0 = time.perf_counter()
                sess.run(None, feeds)
                runs.append((time.perf_counter() - t0) * 1e3)
            out[i].append(runs)
        if on_round is not None:
            on_round(k)
    return out
