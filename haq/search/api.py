"""The search from Python: ``haq.search(model=..., target=..., budget=...)`` -> `SearchResult`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd

from haq.config import BitConfig
from haq.errors import HaqError
from haq.search.budgets import Budgets
from haq.search.objectives import METRIC_KEYS
from haq.search.options import SearchOptions
from haq.search.results import ResultsDir
from haq.search.runner import Search


class SearchResult:
    """A finished search's results directory, as DataFrames and configs."""

    def __init__(self, path: str | Path) -> None:
        self.dir = ResultsDir(path)
        if not self.dir.pareto_path.is_file():
            raise HaqError(f"{path} holds no finished search (no pareto.json)")
        self._pareto = json.loads(self.dir.pareto_path.read_text())

    @property
    def path(self) -> Path:
        return self.dir.path

    @property
    def objectives(self) -> dict[str, str]:
        return dict(self._pareto["objectives"])

    @property
    def front(self) -> pd.DataFrame:
        """One row per front point: objectives, validation and test top-1, cost, summary."""
        rows = []
        for p in self._pareto["points"]:
            row = {
                "name": p["name"],
                "trial": p["trial"],
                "baseline": p["baseline"],
                "summary": p["summary"],
            }
            row.update(p["objectives"])
            row["val_top1"] = p["val"].get("top1")
            row["test_top1"] = (p.get("test") or {}).get("top1")
            for name in self.objectives:  # e.g. test_cosine of a text model
                if name in METRIC_KEYS and name != "top1":
                    row[f"test_{name}"] = (p.get("test") or {}).get(METRIC_KEYS[name])
            row["latency_ms"] = p["cost"].get("latency_ms")
            row["size_mb"] = p["cost"]["size_bytes"] / 1e6
            if "measured_latency_ms" in p:  # `haq measure`: timed on the target's runtime
                row["measured_latency_ms"] = p["measured_latency_ms"]
                row["dominated_when_measured"] = p.get("dominated_when_measured", False)
            rows.append(row)
        return pd.DataFrame(rows)

    def measure(self, **options: Any) -> dict[str, Any]:
        """Time the front in the target's runtime (options of `MeasureOptions`: rounds,
        runs_per_round, threads, ...); pareto.json, trials.parquet and measured.json gain it."""
        from haq.search.measure import MeasureOptions, measure_front

        out = measure_front(self.path, MeasureOptions(**options))
        self._pareto = json.loads(self.dir.pareto_path.read_text())
        return out

    def finetune(self, points: list[str], **options: Any) -> dict[str, dict[str, Any]]:
        """QAT fine-tune these front points (options of `FinetuneOptions`: epochs, lr,
        batch_size, train_data, ...); entries are also written to ``finetuned.json``."""
        from haq.search.finetune import FinetuneOptions, finetune_points

        return finetune_points(self.path, FinetuneOptions(tuple(points), **options))

    @property
    def trials(self) -> pd.DataFrame:
        return pd.read_parquet(self.dir.trials_path)

    @property
    def configs(self) -> dict[str, BitConfig]:
        return {p["name"]: BitConfig.from_dict(p["config"]) for p in self._pareto["points"]}

    @property
    def hypervolume(self) -> float | None:
        return self._pareto.get("hypervolume")

    def plot(self, x: str | None = None, y: str | None = None, ax: Any = None) -> Any:
        """Scatter of all trials with the front highlighted (needs matplotlib)."""
        import matplotlib.pyplot as plt

        names = list(self.objectives)
        y = y or names[0]
        x = x or names[1]
        trials = self.trials
        ax = ax or plt.subplots(figsize=(6, 4))[1]
        ax.scatter(trials[f"obj_{x}"], trials[f"obj_{y}"], s=12, alpha=0.4, label="trials")
        front = self.front.sort_values(x)
        ax.plot(front[x], front[y], "o-", color="C3", label="Pareto front")
        ax.set_xlabel(x)
        ax.set_ylabel(y)
        ax.legend()
        return ax

    def report(self, path: str | Path | None = None) -> Path:
        """Write the offline HTML report (default ``<results dir>/report.html``); needs plotly."""
        from haq.report import write_report

        return write_report([self.path], path)

    def __repr__(self) -> str:
        return f"SearchResult({self.path}, {len(self._pareto['points'])} front points)"


def search(
    model: str = "digits_cnn",
    target: str | None = None,
    data: str | None = None,
    calib_data: str | None = None,
    budget: int = 50,
    *,
    max_latency_ms: float | None = None,
    max_size_mb: float | None = None,
    min_top1: float | None = None,
    max_worst_class_drop: float | None = None,
    **options: Any,
) -> SearchResult:
    """Run a search (or resume one with ``resume=True, out=DIR``) and return its results.

    Keyword options are those of `SearchOptions` (weights, space, driver, driver_options,
    objectives, workers, ray_address, val_limit, val_split, seed, data_seed, eval_cache, pins,
    ties, out, time_limit, progress, ...).
    """
    budgets = Budgets(max_latency_ms, max_size_mb, min_top1, max_worst_class_drop)
    opts = SearchOptions(model=model, target=target, data=data, calib_data=calib_data, budget=budget,
                         budgets=budgets, **options)  # fmt: skip
    files = Search(opts).run()
    return SearchResult(files.path)
