"""A results directory read back for the report: one typed `Run`, or a one-line error.

The report only reads files (`haq search` wrote everything it needs: trials, front, test and
float per-class accuracy, layer table, provenance), so it runs offline, in seconds, without
the model or its data, and never writes into the run.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import pandas as pd

from haq.errors import HaqError
from haq.search.objectives import COST_OBJECTIVES, DIRECTIONS
from haq.search.results import ResultsDir

# objective -> (trials.parquet column, axis title); accuracy columns are validation scores
AXES: dict[str, tuple[str, str]] = {
    "top1": ("val_top1", "top-1, validation (%)"),
    "fidelity": ("val_agreement", "fidelity: top-1 agreement with float, validation (%)"),
    "worst_class": ("val_worst_class_top1", "worst-class top-1, validation (%)"),
    "cosine": ("val_cosine", "cosine to float embeddings, validation"),
    "retrieval": ("val_retrieval", "top-10 retrieval kept, validation (%)"),
    "latency": ("latency_ms", "latency (ms, predicted)"),
    "energy": ("energy_mj", "energy (mJ, predicted)"),
    "size": ("size_mb", "size (MB)"),
    "bops": ("gbops", "GBOPs"),
}


@dataclass(frozen=True)
class Run:
    """One finished search, as the report needs it."""

    path: Path
    info: dict[str, Any]  # run.json
    pareto: dict[str, Any]  # pareto.json
    trials: pd.DataFrame  # trials.parquet
    layers: pd.DataFrame | None  # layers.csv (older runs: None)
    label: str  # the run's name in legends and tables
    finetuned: dict[str, dict[str, Any]] = field(default_factory=dict)  # finetuned.json

    @property
    def objectives(self) -> dict[str, str]:
        return dict(self.pareto["objectives"])

    @property
    def cost_objectives(self) -> list[str]:
        return [n for n in self.objectives if n in COST_OBJECTIVES]

    @property
    def front_trials(self) -> list[int]:
        return [int(p["trial"]) for p in self.pareto["points"]]

    def axis_options(self, kind: str) -> list[str]:
        """Objectives this run has values for, its own first: ``kind`` is "cost" or "accuracy"."""
        names = (
            COST_OBJECTIVES
            if kind == "cost"
            else tuple(n for n in DIRECTIONS if n not in COST_OBJECTIVES)
        )
        own = [n for n in self.objectives if n in names]
        rest = [n for n in names if n not in own and AXES[n][0] in self.trials
                and self.trials[AXES[n][0]].notna().any()]  # fmt: skip
        return own + rest

    @cached_property
    def layer_order(self) -> list[str]:
        """Layer names in execution order (the layer table, else the config's own order)."""
        if self.layers is not None:
            return list(self.layers.sort_values("index")["name"])
        first = self.pareto["points"][0]["config"]
        return list(first.get("layers", {}))

    def axes_scale(self) -> tuple[list[float], list[float]]:
        """The hypervolume axes the search used (scale, reference), objectives order."""
        axes = self.pareto.get("hypervolume_axes")
        if axes:
            return list(axes["scale"]), list(axes["reference"])
        # older runs: the search's rule (cost / 1.1x the costliest baseline), from the trials
        base = self.trials[self.trials["source"] == "baseline"]
        scale = [100.0 if n not in COST_OBJECTIVES else
                 1.1 * float(base[AXES[n][0]].max() or 0.0) or 1.0 for n in self.objectives]  # fmt: skip
        return scale, [0.0 if d == "maximize" else 1.0 for d in self.objectives.values()]


def load_runs(paths: Sequence[str | Path]) -> list[Run]:
    """Several runs, each named by its directory (by the path given where two names clash)."""
    names = [Path(p).resolve().name for p in paths]
    return [
        load_run(p, n if names.count(n) == 1 else str(p)) for p, n in zip(paths, names, strict=True)
    ]


def load_run(path: str | Path, label: str | None = None) -> Run:
    """Read a results directory; every problem is a one-line `HaqError` naming the fix."""
    rd = ResultsDir(path)
    if not rd.path.is_dir() or not rd.run_path.is_file() or not rd.study_db.is_file():
        raise HaqError(f"{rd.path} is not a haq results directory (no run.json and study.db); "
                       "pass a directory `haq search` wrote")  # fmt: skip
    info = _json(rd.run_path)
    if not rd.trials_path.is_file():
        raise HaqError(
            f"{rd.path} has no finished trial yet (no trials.parquet); nothing to report"
        )
    try:
        trials = pd.read_parquet(rd.trials_path)
    except Exception as e:  # pyarrow raises several types for a damaged file
        raise HaqError(f"{rd.trials_path} is unreadable ({type(e).__name__}); "
                       f"resume the search to rewrite it: haq search --resume {rd.path}") from e  # fmt: skip
    if "state" not in trials or not (trials["state"] == "complete").any():
        raise HaqError(f"{rd.path} has no finished trial yet; nothing to report")
    if not rd.pareto_path.is_file():
        raise HaqError(f"{rd.path} holds a search that has not finished (no pareto.json); "
                       f"let it finish or resume it: haq search --resume {rd.path}")  # fmt: skip
    pareto = _json(rd.pareto_path)
    if not pareto.get("points"):
        raise HaqError(
            f"{rd.path} has an empty Pareto front (no feasible trial); nothing to report"
        )
    layers = pd.read_csv(rd.layers_path) if rd.layers_path.is_file() else None
    finetuned = _json(rd.path / "finetuned.json") if (rd.path / "finetuned.json").is_file() else {}
    return Run(rd.path, info, pareto, trials, layers, label or rd.path.resolve().name, finetuned)


def _json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise HaqError(f"{path} is not valid JSON ({e}); the results dir is damaged") from e
    if not isinstance(data, dict):
        raise HaqError(f"{path} is not a JSON object; the results dir is damaged")
    return data
