"""The loop's live front equals the from-scratch front (`front_records`, itself checked against
`haq.pareto`'s brute force) after every record, ties, repeats and infeasible trials included."""

from __future__ import annotations

import numpy as np

from haq.config import BitConfig
from haq.search.front import LiveFront, front_records
from haq.search.trials import COMPLETE, FAILED, TrialRecord


def _records(seed: int, n: int) -> list[TrialRecord]:
    rng = np.random.default_rng(seed)
    bits = ("fp32", "w8a8", "w6a8", "w4a8", "w4a4", "w3a8", "w2a8", "w8a4", "w6a6", "w3a3")
    configs = [BitConfig.uniform(p) for p in bits]
    # coarse values: many ties between configs; a repeated config repeats its values, as a
    # cached trial does (cost and metrics are functions of the config)
    of = {c.hash: [float(rng.integers(0, 6)), float(rng.integers(0, 6))] for c in configs}
    out = []
    for i in range(n):
        k = int(rng.integers(len(configs)))
        values = of[configs[k].hash]
        state = FAILED if rng.random() < 0.1 else COMPLETE
        constraint = [1.0] if rng.random() < 0.1 else []
        out.append(TrialRecord(i, configs[k], None, state, "", values=values if state == COMPLETE else None,
                               constraint=constraint))  # fmt: skip
    return out


def test_live_front_matches_front_records() -> None:
    objectives = ["top1", "latency"]
    for seed in range(20):
        records = _records(seed, 60)
        live = LiveFront(objectives, records[:5])
        for i in range(5, len(records)):
            live.add(records[i])
            expect = front_records(records[: i + 1], objectives)
            assert [r.number for r in live.points] == [r.number for r in expect], (seed, i)
