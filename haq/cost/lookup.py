"""Lookup-table cost model: exact table rows per (layer signature, kernel class).

Each layer's cost under a kernel class is the target table's row for its signature at the
model's batch and thread count. Rows the table lacks come from the target's fitted learned
model (where it saw that op kind and kernel class), else from the roofline (the profile's
``peaks``, or peaks fitted to the table's own rows of that kernel class where it quotes none:
`haq.cost.analytic.fitted_peaks`), else stay unknown (latency ``None``); ``CostEstimate.model``
names every fallback, e.g. ``lookup+learned(3 layers)+roofline(2 layers)``. Boundaries between consecutive layers of different kernel
classes cost their transition-table row (schema and estimation: `haq.hardware.tables`).
When the network is one the target profiled (its ``layer_map`` lists the same layer names and
signatures in order), the model's glue rows are added along the config too, and the model is
named ``lookup+glue``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from haq.cost.analytic import fill_roofline, fitted_peaks
from haq.cost.learned import LearnedCostModel
from haq.cost.matrix import LEARNED, LOOKUP, MatrixCostModel
from haq.errors import HaqError
from haq.hardware.overlay import load_tables
from haq.hardware.profile import HardwareProfile
from haq.hardware.tables import (
    INPUT,
    OUTPUT,
    SHAPE_COLUMNS,
    SIGNATURE_COLUMNS,
    signature,
)
from haq.models.spec import LayerSpec, reduced_elements


def _key(values: Any) -> tuple[Any, ...]:
    return (str(values[0]), *(int(v) for v in values[1:]))


def interpolate(xs: np.ndarray, ys: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Piecewise-linear in ``xs`` (sorted, unique), extrapolated linearly, never negative.

    One point: proportional scaling (``ys[0] * x / xs[0]``).
    """
    if len(xs) == 1:
        return ys[0] * x / xs[0] if xs[0] > 0 else np.full_like(x, ys[0], dtype=np.float64)
    y = np.interp(x, xs, ys)
    lo, hi = x < xs[0], x > xs[-1]
    y[lo] = ys[0] + (x[lo] - xs[0]) * (ys[1] - ys[0]) / (xs[1] - xs[0])
    y[hi] = ys[-1] + (x[hi] - xs[-1]) * (ys[-1] - ys[-2]) / (xs[-1] - xs[-2])
    return np.maximum(y, 0.0)


def mean_line(xs: np.ndarray, ys: np.ndarray, x: np.ndarray) -> np.ndarray:
    """`interpolate` through the mean of the rows (``xs``, ``ys``, not aggregated) per size."""
    sizes = np.unique(xs)
    return interpolate(sizes, np.array([ys[xs == v].mean() for v in sizes]), x)


def robust_line(xs: np.ndarray, ys: np.ndarray, x: np.ndarray) -> np.ndarray:
    """A boundary's cost at ``x`` elements from its pair's rows (``xs``, ``ys``, not aggregated):
    the Theil-Sen line (median of the pairwise slopes, not below 0; median intercept), never
    negative. Fewer than three distinct sizes: `mean_line`.

    Why not the piecewise line through the means: a row is the extra time one network's
    boundary took, which also holds whatever its graph puts there (a residual Add, a channel
    shuffle, nothing at all), so rows at neighbouring sizes differ several-fold and a boundary
    of an unprofiled network read off the two nearest means inherits their graphs' noise
    (`experiments/transition_estimators.py`)."""
    from scipy.stats import theilslopes

    if len(np.unique(xs)) < 3:
        return mean_line(xs, ys, x)
    slope = max(float(theilslopes(ys, xs).slope), 0.0)
    intercept = float(np.median(ys - slope * xs))
    return np.maximum(intercept + slope * x, 0.0)


class LookupCostModel(MatrixCostModel):
    """Table look-ups with learned / roofline fallback and transition costs."""

    name = "lookup"
    primary = LOOKUP

    def __init__(
        self,
        profile: HardwareProfile,
        layers: list[LayerSpec],
        threads: int | None = None,
        batch: int | None = None,
        granularity: str | None = "channel",
        learned: LearnedCostModel | str | None = "auto",
        weight_only_group: int | None = None,
        activations: str = "static",
        weight_only_zero_points: bool = False,
        calibration: str | dict[str, Any] | None = "auto",
    ) -> None:
        """``calibration``: "auto" scales by this network's measured configs when there are
        enough (`_calibrate`), a saved ``{"ratio", "configs"}`` re-applies one (a resumed
        search keeps the scale its first run scored with), None leaves the rows as they are."""
        super().__init__(profile, layers, threads, batch, granularity, weight_only_group,
                         activations, weight_only_zero_points)  # fmt: skip
        if "layers" not in profile.tables:
            raise HaqError(f"target {profile.id} has no latency table; use the analytic cost model")
        self.learned = LearnedCostModel.find(profile) if learned == "auto" else learned
        if self.learned is not None and not isinstance(self.learned, LearnedCostModel):
            raise HaqError(f"learned must be 'auto', None or a LearnedCostModel, not {learned!r}")
        tables = load_tables(profile)  # shipped + the user's measured overlay
        self.overlay_rows = tables.overlay_rows
        self._fill_table(tables.layers)
        self._fill_learned()
        self.peaks = {**fitted_peaks(profile, tables.layers, self.threads), **profile.peaks}
        fill_roofline(self, peaks=self.peaks)
        if tables.transitions is not None:
            self._fill_transitions(tables.transitions)
        self.glue_model: str | None = None
        if tables.glue is not None and tables.layer_map is not None:
            self._fill_glue(tables.glue, tables.layer_map)
        if calibration == "auto":
            self.calibration = self._calibrate()
        elif isinstance(calibration, dict):
            self.calibration = self._scale(float(calibration["ratio"]), int(calibration["configs"]))
        elif calibration is None:
            self.calibration = None
        else:
            raise HaqError(
                f"calibration must be 'auto', None or a saved ratio, not {calibration!r}"
            )

    # Measured networks ----------------------------------------------------------------------
    def _calibrate(self) -> dict[str, Any] | None:
        """Scale every latency by the median measured / predicted ratio of this network's
        configs measured on this CPU (`haq.hardware.network_walls`), once there are enough:
        the runtime around these layers and this machine's state, which no row holds."""
        from haq.hardware.network_walls import MIN_CONFIGS, measured_configs

        ratios = []
        for r in measured_configs(self.profile.id, self.layers, self.threads, self.batch,
                                  self.weight_only_group):  # fmt: skip
            ks = np.array([self.kernel_index.get(k, -1) for k in r["kernels"]], dtype=np.intp)
            if len(ks) != len(self.layers) or (ks < 0).any():
                continue
            us = self.total_us(ks)
            if np.isfinite(us) and us > 0:
                ratios.append(float(r["measured_ms"]) * 1e3 / us)
        if len(ratios) < MIN_CONFIGS:
            return None
        return self._scale(float(np.median(ratios)), len(ratios))

    def _scale(self, ratio: float, configs: int) -> dict[str, Any]:
        ratio = round(ratio, 4)
        self.latency_us *= ratio
        self.trans_us *= ratio
        self.name = f"{self.name}+measured({configs} configs)"
        return {"ratio": ratio, "configs": configs}

    # Table ----------------------------------------------------------------------------------
    def _select(self, frame: pd.DataFrame, what: str) -> pd.DataFrame:
        path = self.profile.tables[what]
        classes = sorted(
            set(frame["precision" if what == "layers" else "from_kernel"].astype(str))
            | (set(frame["to_kernel"].astype(str)) if what == "transitions" else set())
        )
        unknown = [k for k in classes if k not in self.kernel_index]
        if unknown:
            raise HaqError(f"{path} names kernel classes {unknown} that profile {self.profile.id} "
                           "does not declare; add them under 'kernels' or fix the table")  # fmt: skip
        rows = frame[frame["batch"] == self.batch]
        if "threads" in rows:
            rows = rows[rows["threads"] == self.threads]
        return rows

    def _fill_table(self, table: pd.DataFrame) -> None:
        if self.profile.energy and "energy_uj" not in table:
            raise HaqError(f"profile {self.profile.id} says energy: true but "
                           f"{self.profile.tables['layers']} has no energy_uj column; fix one of them")  # fmt: skip
        rows = self._select(table, "layers")
        self.has_energy = "energy_uj" in rows
        cols = (
            SIGNATURE_COLUMNS
            + ["precision", "latency_us"]
            + (["energy_uj"] if self.has_energy else [])
        )
        grouped = rows[cols].groupby(SIGNATURE_COLUMNS + ["precision"], sort=False).mean()
        hits: dict[tuple[Any, ...], tuple[float, float]] = {}
        for key, rec in zip(grouped.index, grouped.itertuples(index=False), strict=True):
            energy = float(rec.energy_uj) if self.has_energy else np.nan
            hits[(*_key(key[:-1]), str(key[-1]))] = (float(rec.latency_us), energy)
        self.layer_keys = [_key(list(signature(s, self.batch).values())) for s in self.layers]
        for i, k in self.reachable():
            hit = hits.get((*self.layer_keys[i], self.kernels[k]))
            if hit is not None:
                self.latency_us[i, k], self.energy_uj[i, k] = hit
                self.source[i, k] = LOOKUP

    def _fill_learned(self) -> None:
        if self.learned is None:
            return
        cells = [(i, k) for i, k in self.reachable() if np.isnan(self.latency_us[i, k])
                 and self.learned.knows(self.kinds[i], self.kernels[k])]  # fmt: skip
        if not cells:
            return
        reduced = reduced_elements(self.layers)
        frame = pd.DataFrame(
            [
                {
                    **signature(self.layers[i], self.batch),
                    "precision": self.kernels[k],
                    "threads": self.threads,
                    "act": self.layers[i].act,
                    "reduced_elements": reduced[i],
                }
                for i, k in cells
            ]  # fmt: skip
        )
        pred = self.learned.predict_us(frame)
        for (i, k), value in zip(cells, pred, strict=True):
            self.latency_us[i, k] = float(value)
            self.source[i, k] = LEARNED

    # Transitions ------------------------------------------------------------------------------
    def _fill_transitions(self, table: pd.DataFrame) -> None:
        self.has_transitions = True
        rows = self._select(table, "transitions")
        has_energy = "energy_uj" in rows
        n = len(self.layers)
        # the tensor crossing boundary i is the input of layer i + 1; where a pool sits in
        # front of that layer the class change happens before the pool, on the bigger tensor:
        # when the table keys rows by it (``reduced_elements``), the elements the boundary
        # touches are what the line is read at, and the exact key includes them
        pooled = [0] * max(n - 1, 0)
        if "reduced_elements" in rows:
            pooled = reduced_elements(self.layers)[1:]
        else:
            rows = rows.assign(reduced_elements=0)
        x = np.array(
            [float(s.in_elements + p) for s, p in zip(self.layers[1:], pooled, strict=True)]
        )
        shapes = [
            (s.in_channels, *s.in_hw, p) for s, p in zip(self.layers[1:], pooled, strict=True)
        ]
        self.trans_known[:] = False
        if n < 2:
            return
        size = rows["channels"] * rows["h"] * rows["w"] + rows["reduced_elements"]
        rows = rows.assign(size=size.astype(np.float64))
        groups = {(str(a), str(b)): g for (a, b), g in rows.groupby(["from_kernel", "to_kernel"])}
        alias = self.profile.transition_aliases
        for src in self.kernels:  # pairs without rows take their aliases' rows (the profile's)
            for dst in self.kernels:
                stand_in = (alias.get(src, src), alias.get(dst, dst))
                if (src, dst) not in groups and stand_in in groups and src != dst:
                    groups[(src, dst)] = groups[stand_in]
        for (src, dst), grp in groups.items():
            if src == dst:
                continue
            f, t = self.kernel_index[src], self.kernel_index[dst]
            xs = grp["size"].to_numpy(np.float64)
            self.trans_us[:, f, t] = robust_line(xs, grp["latency_us"].to_numpy(np.float64), x)
            if has_energy:
                self.trans_uj[:, f, t] = robust_line(xs, grp["energy_uj"].to_numpy(np.float64), x)
            self.trans_known[:, f, t] = True
            exact = grp.groupby(["channels", "h", "w", "reduced_elements"]).mean(numeric_only=True)
            for i, shape in enumerate(shapes):  # an exact row beats the line
                if shape in exact.index:
                    self.trans_us[i, f, t] = exact.at[shape, "latency_us"]
                    if has_energy:
                        self.trans_uj[i, f, t] = exact.at[shape, "energy_uj"]

    def breakdown(self, config: Any) -> dict[str, Any]:
        """`MatrixCostModel.breakdown` plus the profiled model whose glue rows are included
        (in the first / last layer's latency and in the boundaries' costs) and the glue of the
        boundaries between layers of the same class, which ``boundaries`` does not list."""
        out = super().breakdown(config)
        ks = [self.kernel_index[r["kernel"]] for r in out["layers"]]
        pairs = enumerate(zip(ks[:-1], ks[1:], strict=True))
        same = [self.trans_us[i, a, b] for i, (a, b) in pairs if a == b]
        return {**out, "glue_model": self.glue_model, "same_class_glue_us": float(sum(same))}

    # Glue -----------------------------------------------------------------------------------
    def profiled_as(self, layer_map: pd.DataFrame) -> str | None:
        """The profiled model whose layer table is this network's (names and signatures, in
        execution order), or None."""
        missing = [c for c in ["model", "name", "index", *SHAPE_COLUMNS] if c not in layer_map]
        if missing:
            raise HaqError(f"{self.profile.tables['layer_map']} lacks columns {missing}; "
                           "re-measure the target or restore the file")  # fmt: skip
        ours = [(s.name, *_key(list(signature(s).values())[:-1])) for s in self.layers]
        for model, rows in layer_map.groupby("model", sort=True):
            if len(rows) != len(ours):
                continue
            rows = rows.sort_values("index")
            theirs = [(str(r[0]), *_key(r[1:])) for r in rows[["name", *SHAPE_COLUMNS]].to_numpy()]
            if theirs == ours:
                return str(model)
        return None

    def _fill_glue(self, glue: pd.DataFrame, layer_map: pd.DataFrame) -> None:
        """Add the profiled model's glue rows: boundary 0 / n onto the first / last layer's
        cells, boundary j onto the (j - 1 -> j) pair, same-class pairs included."""
        model = self.profiled_as(layer_map)
        if model is None:
            return
        rows = glue[(glue["model"] == model) & (glue["batch"] == self.batch)
                    & (glue["threads"] == self.threads)]  # fmt: skip
        if rows.empty:
            return
        n = len(self.layers)
        index = {**self.kernel_index, INPUT: -1, OUTPUT: -1}
        cols = ["index", "from_kernel", "to_kernel", "latency_us"]
        for j, src, dst, us in rows[cols].itertuples(index=False, name=None):
            f, t = index.get(str(src)), index.get(str(dst))
            if f is None or t is None:
                raise HaqError(f"{self.profile.tables['glue']} names kernel class "
                               f"{src if f is None else dst!r} that profile {self.profile.id} "
                               "does not declare; re-measure the target")  # fmt: skip
            j = int(j)
            if j == 0 and t >= 0:
                self.latency_us[0, t] += us
            elif j == n and f >= 0:
                self.latency_us[n - 1, f] += us
            elif 0 < j < n and f >= 0 and t >= 0:
                self.trans_us[j - 1, f, t] += us
        self.glue_model = model
        self.name = "lookup+glue"
