"""A set of search results viewed as a Pareto front: which rows are optimal, how much they
cover, and whether a baseline is beaten. Rows keep their extra columns (trial number, config
hash, ...) so a front point can always be traced back to the trial that produced it."""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from haq.io import atomic_write_text
from haq.pareto.hypervolume import default_reference, hypervolume
from haq.pareto.sorting import (
    as_minimization,
    non_dominated_mask,
    non_dominated_sort,
    validate_directions,
)


@dataclass
class Front:
    """Points (one row each) plus the objectives, ``{column name: "minimize"|"maximize"}``.

    The rows are all the points given, dominated or not; :meth:`front` keeps the optimal ones.
    """

    points: pd.DataFrame
    objectives: dict[str, str]

    def __post_init__(self) -> None:
        names = list(self.objectives)
        if not names:
            raise ValueError("a Front needs at least one objective")
        self.objectives = dict(
            zip(names, validate_directions(list(self.objectives.values())), strict=True)
        )
        missing = [n for n in names if n not in self.points.columns]
        if missing:
            raise ValueError(
                f"objective column(s) {missing} not in the points (columns: {list(self.points.columns)})"
            )

    @classmethod
    def from_records(
        cls, records: Iterable[Mapping[str, Any]], objectives: Mapping[str, str]
    ) -> Front:
        """Build from dict-like rows, e.g. one per finished trial."""
        rows = [dict(r) for r in records]
        df = pd.DataFrame.from_records(rows) if rows else pd.DataFrame(columns=list(objectives))
        return cls(df, dict(objectives))

    def __len__(self) -> int:
        return len(self.points)

    @property
    def names(self) -> list[str]:
        return list(self.objectives)

    @property
    def directions(self) -> list[str]:
        return list(self.objectives.values())

    def values(self) -> NDArray[np.float64]:
        """Objective columns as an (n, d) float array in ``objectives`` order (None -> NaN)."""
        if len(self.points) == 0:
            return np.zeros((0, len(self.objectives)))
        cols = self.points[self.names].apply(pd.to_numeric, errors="raise")
        return cols.to_numpy(dtype=np.float64, na_value=np.nan)

    def mask(self) -> NDArray[np.bool_]:
        """True for the non-dominated rows (rows with a NaN objective are never on it)."""
        return non_dominated_mask(self.values(), self.directions)

    def ranks(self) -> NDArray[np.int64]:
        """Front rank per row (0 = Pareto front, -1 = NaN objective)."""
        return non_dominated_sort(self.values(), self.directions)

    def front(self) -> Front:
        """The non-dominated rows, original index kept so they map back to the full table."""
        return Front(self.points[self.mask()].copy(), dict(self.objectives))

    def default_reference(self, margin: float = 0.1) -> dict[str, float]:
        """See :func:`haq.pareto.hypervolume.default_reference`."""
        ref = default_reference(self.values(), self.directions, margin)
        return dict(zip(self.names, (float(v) for v in ref), strict=True))

    def hypervolume(self, reference: Mapping[str, float] | Sequence[float] | None = None) -> float:
        """Exact hypervolume of the rows. Without a reference, :meth:`default_reference` is
        used, which depends on these points: give a fixed one to compare different runs."""
        vals = self.values()
        if reference is None:
            if not np.isfinite(vals).all(axis=1).any():
                return 0.0
            reference = self.default_reference()
        return hypervolume(vals, self.directions, self._vector(reference))

    def _vector(
        self, point: Mapping[str, float] | Sequence[float] | pd.Series
    ) -> NDArray[np.float64]:
        """A point by objective name (mapping/Series) or in ``objectives`` order."""
        if isinstance(point, Mapping | pd.Series):
            missing = [n for n in self.names if n not in point]
            if missing:
                raise ValueError(f"point lacks objective(s) {missing}")
            vec = [point[n] for n in self.names]
        else:
            vec = list(point)
            if len(vec) != len(self.names):
                raise ValueError(
                    f"point has {len(vec)} values, expected {len(self.names)} ({self.names})"
                )
        return np.array([np.nan if v is None else v for v in vec], dtype=np.float64)

    def _compare(
        self, point: Mapping[str, float] | Sequence[float] | pd.Series
    ) -> tuple[NDArray[np.bool_], NDArray[np.bool_]]:
        """Per row: (no worse everywhere, strictly better somewhere) than ``point``."""
        q = as_minimization(self._vector(point).reshape(1, -1), self.directions)[0]
        pts = as_minimization(self.values(), self.directions)
        if np.isnan(q).any():
            none = np.zeros(len(pts), dtype=bool)
            return none, none
        le = (pts <= q).all(axis=1)  # NaN compares False, so NaN rows never count
        lt = (pts < q).any(axis=1)
        return le, lt

    def dominated_by(self, point: Mapping[str, float] | Sequence[float] | pd.Series) -> bool:
        """Is ``point`` (e.g. a baseline) dominated by some row: no worse in every objective
        and strictly better in at least one? False for a point with a NaN objective."""
        le, lt = self._compare(point)
        return bool((le & lt).any())

    def dominates_or_matches(
        self, point: Mapping[str, float] | Sequence[float] | pd.Series
    ) -> bool:
        """Is some row no worse than ``point`` in every objective (dominating it or equal)?"""
        le, _ = self._compare(point)
        return bool(le.any())

    def dominating_rows(
        self, point: Mapping[str, float] | Sequence[float] | pd.Series
    ) -> pd.DataFrame:
        """The rows that dominate ``point``, for reports that name the beating trials."""
        le, lt = self._compare(point)
        return self.points[le & lt]

    def to_json(self, path: str | Path) -> None:
        """Write ``{"objectives": {...}, "points": [...]}`` atomically; NaN/None -> null.

        Infinite values raise: strict JSON has no spelling for them.
        """
        records = self.points.to_dict(orient="records")
        clean = [{str(k): _jsonable(v) for k, v in row.items()} for row in records]
        payload = {"objectives": dict(self.objectives), "points": clean}
        text = json.dumps(payload, indent=1, allow_nan=False, default=_json_default)
        atomic_write_text(path, text + "\n")

    @classmethod
    def read_json(cls, path: str | Path) -> Front:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
        if not isinstance(data, dict) or "objectives" not in data or "points" not in data:
            raise ValueError(f"{path}: expected a JSON object with 'objectives' and 'points'")
        return cls.from_records(data["points"], data["objectives"])


def _jsonable(v: Any) -> Any:
    if isinstance(v, np.generic):
        v = v.item()
    if v is None or v is pd.NA or v is pd.NaT:
        return None
    if isinstance(v, float) and math.isnan(v):
        return None
    return v


def _json_default(v: Any) -> Any:
    if isinstance(v, np.generic):
        return v.item()
    if isinstance(v, np.ndarray):
        return v.tolist()
    raise TypeError(f"cannot write {type(v).__name__} value {v!r} to a front JSON")
