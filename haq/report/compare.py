"""Several runs against one another: common hypervolume axes and the union front.

Runs are comparable only on the same objectives; each run's front is scored on one set of
axes (the widest of the runs' own scales), so a run's share of the union's hypervolume says
how much of the best known trade-off it found.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from haq.errors import HaqError
from haq.pareto import hypervolume, non_dominated_mask
from haq.report.data import Run


@dataclass(frozen=True)
class Axes:
    """Normalisation and reference point shared by the compared runs."""

    scale: list[float]
    reference: list[float]


@dataclass(frozen=True)
class RunScore:
    """One run's row of the comparison table."""

    label: str
    driver: str
    target: str
    seed: int | None
    evaluations: int
    front_size: int
    hypervolume: float
    share: float  # hypervolume / the union front's
    union_points: int  # its points on the union front


@dataclass(frozen=True)
class Comparison:
    axes: Axes
    rows: list[RunScore]
    union_hypervolume: float
    union_size: int


def common_axes(runs: Sequence[Run]) -> Axes:
    """The widest scale of the runs (so no run's front is clipped), their common reference."""
    names = [list(r.objectives.items()) for r in runs]
    if any(n != names[0] for n in names):
        listed = "; ".join(f"{r.label}: {','.join(r.objectives)}" for r in runs)
        raise HaqError(
            f"runs optimise different objectives ({listed}); compare runs of the same objectives"
        )
    scales = np.array([r.axes_scale()[0] for r in runs], dtype=float)
    return Axes(scales.max(axis=0).tolist(), runs[0].axes_scale()[1])


def _front_values(run: Run) -> np.ndarray:
    return np.array(
        [[p["objectives"][n] for n in run.objectives] for p in run.pareto["points"]], dtype=float
    )


def compare(runs: Sequence[Run]) -> Comparison:
    """Each run's hypervolume against the union front of all runs, on common axes."""
    axes = common_axes(runs)
    dirs = list(runs[0].objectives.values())
    sc = np.asarray(axes.scale)
    fronts = [_front_values(r) / sc for r in runs]
    union = np.vstack(fronts)
    owner = np.concatenate([np.full(len(f), k) for k, f in enumerate(fronts)])
    on_union = non_dominated_mask(union, dirs)
    union_hv = float(hypervolume(union[on_union], dirs, axes.reference))
    rows = []
    for k, (run, f) in enumerate(zip(runs, fronts, strict=True)):
        hv = float(hypervolume(f, dirs, axes.reference))
        opts = run.info.get("options", {})
        rows.append(RunScore(run.label, str(run.pareto.get("driver")), str(run.pareto.get("target")),
                             opts.get("seed"), int(run.pareto.get("evaluations", 0)), len(f), hv,
                             hv / union_hv if union_hv > 0 else float("nan"),
                             int((on_union & (owner == k)).sum())))  # fmt: skip
    return Comparison(axes, rows, union_hv, int(on_union.sum()))
