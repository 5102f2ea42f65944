"""The search's front: feasible, non-dominated, one point per distinct config, and its
hypervolume on fixed normalised axes (accuracy / 100, cost / 1.1x the costliest baseline),
so it only grows as trials arrive."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from haq.cost.base import CostModel
from haq.pareto import hypervolume, non_dominated_mask
from haq.pareto.sorting import dominates
from haq.search.objectives import COST_OBJECTIVES, DIRECTIONS, UNITS, cost_value
from haq.search.space import SearchSpace
from haq.search.trials import TrialRecord


def front_records(records: Sequence[TrialRecord], objectives: list[str]) -> list[TrialRecord]:
    """The feasible non-dominated trials, the earliest of each config, in trial order."""
    done = [r for r in records if r.feasible and r.values]
    if not done:
        return []
    values = np.array([r.values for r in done], dtype=float)
    mask = non_dominated_mask(values, [DIRECTIONS[n] for n in objectives])
    seen: set[str] = set()
    out = []
    for r in sorted(
        (r for r, keep in zip(done, mask, strict=True) if keep), key=lambda r: r.number
    ):
        if r.config.hash not in seen:
            seen.add(r.config.hash)
            out.append(r)
    return out


class LiveFront:
    """`front_records` kept current one record at a time: each new trial is compared with the
    front only (O(front)), so the loop's bookkeeping does not grow with the trial count. Equal
    to `front_records` as long as a config's values are a function of the config (cost model
    and evaluations are deterministic; repeats reuse the first result)."""

    def __init__(self, objectives: list[str], records: Sequence[TrialRecord] = ()) -> None:
        self.directions = [DIRECTIONS[n] for n in objectives]
        self.points = front_records(records, objectives)

    def add(self, rec: TrialRecord) -> None:
        if not (rec.feasible and rec.values):
            return
        mine = np.asarray(rec.values, dtype=float)
        if any(dominates(f.values, mine, self.directions) for f in self.points):  # type: ignore[arg-type]
            return
        keep = [f for f in self.points if not dominates(mine, f.values, self.directions)]  # type: ignore[arg-type]
        if all(f.config.hash != rec.config.hash for f in keep):  # the earliest of a config stays
            keep.append(rec)
        self.points = keep


class FrontScale:
    """Fixed hypervolume axes for one search (from its baselines' costs)."""

    def __init__(self, space: SearchSpace, cost_model: CostModel, objectives: list[str]) -> None:
        baselines = list(space.baselines().values()) or [
            space.config({v: o[0] for v, o in space.variables()})]  # fmt: skip
        costs = [cost_model.score(c) for c in baselines]
        self.scale = np.array([
            (100.0 if UNITS[n] == "%" else 1.0) if n not in COST_OBJECTIVES else
            1.1 * max((cost_value(n, c) or 0.0) for c in costs) or 1.0
            for n in objectives
        ])  # fmt: skip
        dirs = [DIRECTIONS[n] for n in objectives]
        self.dirs = dirs
        self.ref = np.array([0.0 if d == "maximize" else 1.0 for d in dirs])

    def hypervolume(self, front: Sequence[TrialRecord]) -> float | None:
        if not front:
            return None
        values = np.array([r.values for r in front], dtype=float) / self.scale
        return float(hypervolume(values, self.dirs, self.ref))
