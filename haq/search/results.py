"""The results directory of one search: files people can open, written atomically.

```
<out>/study.db          Optuna study (SQLite): the single source of truth, resumable
<out>/driver.pkl        the driver's saved state, if it keeps one (a pickled Optuna sampler)
<out>/trials.parquet    every trial: config, objectives, per-class accuracy, cost provenance, timings
<out>/pareto.json       the front: each point's config, objectives, validation and test accuracy
<out>/configs/<p>.yaml  one BitConfig per front point, ready for `haq export --bits`
<out>/run.json          versions, seed, model and weights hash, target, command line
<out>/sensitivity.csv   per-layer sensitivity the driver used (sensitivity-guided drivers)
<out>/layers.csv        the model's layer table in execution order (kind, shapes, MACs)
<out>/report.html       the offline HTML report (`haq report`, `haq search --report`)
<out>/measured.json     front configs timed on the target's runtime (`haq measure`)
```
Measurements are keyed by config hash and merged into every later write of trials.parquet
and pareto.json, so a resumed search keeps them for the configs it still holds.
"""

from __future__ import annotations

import io
import json
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from haq.io import atomic_write_bytes, atomic_write_text, ensure_writable_dir, write_error

if TYPE_CHECKING:
    from haq.evaluate.metrics import Metrics
    from haq.search.trials import TrialRecord


# the end of the line a search's unwritable results dir fails with (`ensure_writable_dir`)
WRITABLE_FIX = ("make {dir} writable (e.g. chmod u+w {dir}) or pass --out in a writable place; "
                "a search kept there resumes from a writable copy (cp -r DIR COPY, then "
                "haq search --resume COPY)")  # fmt: skip
MEASURED_COLUMNS = ("measured_latency_ms", "latency_error_pct", "dominated_when_measured")


class ResultsDir:
    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._measured: dict[str, Any] | None = None

    @property
    def study_db(self) -> Path:
        return self.path / "study.db"

    @property
    def storage_url(self) -> str:
        return f"sqlite:///{self.study_db.resolve()}"

    @property
    def trials_path(self) -> Path:
        return self.path / "trials.parquet"

    @property
    def pareto_path(self) -> Path:
        return self.path / "pareto.json"

    @property
    def run_path(self) -> Path:
        return self.path / "run.json"

    def exists(self) -> bool:
        return self.study_db.is_file() and self.run_path.is_file()

    def clear_unstarted(self) -> bool:
        """Remove what a search stopped during its set-up left (a study with no run.json, so
        no trial either); True when there was something."""
        if self.run_path.is_file() or not self.study_db.is_file():
            return False
        for name in ("study.db", "study.db-wal", "study.db-shm", "driver.pkl"):
            (self.path / name).unlink(missing_ok=True)
        return True

    def create(self) -> None:
        """Make the directory, proving first that files can be written in it (a read-only
        or full disk fails here in one line, before any trial runs)."""
        ensure_writable_dir(self.path, WRITABLE_FIX)
        try:
            (self.path / "configs").mkdir(exist_ok=True)
        except OSError as e:
            raise write_error(self.path / "configs", e) from None

    def check_writable(self) -> None:
        """Fail in one line before the model loads when no file can be made here (a new
        search: in the existing folder it would be made in); creates nothing."""
        where = next((p for p in (self.path, *self.path.parents) if p.exists()), Path.cwd())
        ensure_writable_dir(where, WRITABLE_FIX)

    # run.json -----------------------------------------------------------------------------
    def write_run(self, info: dict[str, Any]) -> None:
        atomic_write_text(self.run_path, json.dumps(info, indent=2, sort_keys=True, default=str))

    def read_run(self) -> dict[str, Any]:
        return json.loads(self.run_path.read_text())

    # driver state -------------------------------------------------------------------------
    @property
    def driver_state_path(self) -> Path:
        return self.path / "driver.pkl"

    def save_driver_state(self, state: bytes | None) -> None:
        if state is not None:
            atomic_write_bytes(self.driver_state_path, state)

    def load_driver_state(self) -> bytes | None:
        path = self.driver_state_path
        return path.read_bytes() if path.is_file() else None

    # tables -------------------------------------------------------------------------------
    def write_trials(self, frame: pd.DataFrame) -> None:
        measured = self.measured_configs()
        if measured and "config_hash" in frame:
            for col in MEASURED_COLUMNS:
                frame[col] = frame["config_hash"].map({h: r.get(col) for h, r in measured.items()})
        buf = io.BytesIO()
        frame.to_parquet(buf, index=False)
        atomic_write_bytes(self.trials_path, buf.getvalue())

    @property
    def layers_path(self) -> Path:
        return self.path / "layers.csv"

    def write_layers(self, layers: Sequence[Any]) -> None:
        """The layer table (`LayerSpec` rows), so a report needs no model to label its layers."""
        from dataclasses import asdict

        frame = pd.DataFrame([asdict(spec) for spec in layers])
        atomic_write_text(self.layers_path, frame.to_csv(index=False))

    def write_sensitivity(self, rows: pd.DataFrame) -> None:
        atomic_write_text(self.path / "sensitivity.csv", rows.to_csv(index=False))

    def write_front(self, payload: dict[str, Any], configs: dict[str, str]) -> None:
        """``pareto.json`` plus ``configs/<name>.yaml``; stale config files are removed."""
        cfg_dir = self.path / "configs"
        cfg_dir.mkdir(exist_ok=True)
        for name, text in configs.items():
            atomic_write_text(cfg_dir / f"{name}.yaml", text)
        for old in cfg_dir.glob("*.yaml"):
            if old.stem not in configs:
                old.unlink()
        measured = self.measured_configs()
        if measured:
            _annotate_front(payload, measured, self.read_measured())
        atomic_write_text(self.pareto_path, json.dumps(payload, indent=2, default=str))

    # measurements -------------------------------------------------------------------------
    @property
    def measured_path(self) -> Path:
        return self.path / "measured.json"

    def read_measured(self) -> dict[str, Any]:
        """measured.json (`haq.search.measure`), {} when the run was never measured."""
        if self._measured is None:
            path = self.measured_path
            self._measured = json.loads(path.read_text()) if path.is_file() else {}
        return self._measured

    def measured_configs(self) -> dict[str, dict[str, Any]]:
        return dict(self.read_measured().get("configs", {}))

    def write_measured(self, doc: dict[str, Any]) -> None:
        """Write measured.json, then merge it into trials.parquet and pareto.json."""
        atomic_write_text(self.measured_path, json.dumps(doc, indent=2, default=str))
        self._measured = doc
        if self.trials_path.is_file():
            self.write_trials(pd.read_parquet(self.trials_path))
        if self.pareto_path.is_file():
            atomic_write_text(self.pareto_path, json.dumps(_annotated(
                json.loads(self.pareto_path.read_text()), doc), indent=2, default=str))  # fmt: skip


def _entry_hash(entry: dict[str, Any]) -> str | None:
    if entry.get("config_hash"):
        return str(entry["config_hash"])
    if "config" in entry:
        from haq.config import BitConfig

        return BitConfig.from_dict(entry["config"]).hash
    return None


def _annotated(payload: dict[str, Any], doc: dict[str, Any]) -> dict[str, Any]:
    _annotate_front(payload, doc.get("configs", {}), doc)
    return payload


def _annotate_front(
    payload: dict[str, Any], measured: dict[str, dict[str, Any]], doc: dict[str, Any]
) -> None:
    """Measured values beside each point's and baseline's prediction, and a summary: the
    points in measured-latency order and the ones a measured config dominates."""
    points = payload.get("points", [])
    for e in [*points, *payload.get("baselines", {}).values()]:
        row = measured.get(_entry_hash(e) or "")
        for col in MEASURED_COLUMNS:
            e.pop(col, None)
            if row is not None and row.get(col) is not None:
                e[col] = row[col]
    timed = [p for p in points if "measured_latency_ms" in p]
    payload["measured"] = {
        "target": doc.get("target"), "threads": doc.get("threads"), "date": doc.get("date"),
        "statistic": doc.get("statistic"), "mape_pct": doc.get("mape_pct"),
        "machine_ratio": (doc.get("machine_check") or {}).get("ratio"),
        "points_measured": len(timed), "points": len(points),
        "order": [p["name"] for p in sorted(timed, key=lambda p: p["measured_latency_ms"])],
        "dominated": [p["name"] for p in timed if p.get("dominated_when_measured")],
    }  # fmt: skip


def trials_frame(
    records: Sequence[TrialRecord], objectives: list[str], test: dict[int, Metrics] | None = None,
    ptq: str = "none",
) -> pd.DataFrame:  # fmt: skip
    """One row per trial, as ``trials.parquet`` holds it (``ptq``: the search's default
    refinement, the column's value for configs that name none)."""
    rows = []
    for r in records:
        m, cost = r.metrics, r.cost
        row: dict[str, Any] = {
            "trial": r.number, "state": r.state, "status": r.status, "source": r.source,
            "label": r.label, "config": r.config.to_json(), "config_hash": r.config.hash,
            "summary": r.config.summary(), "ptq": r.config.ptq or ptq,
            "val_top1": m.top1 if m else None, "val_top5": m.top5 if m else None,
            "val_worst_class": m.worst_class if m else None,
            "val_worst_class_top1": m.worst_class_top1 if m else None,
            "val_agreement": m.agreement if m else None,
            "val_per_class": json.dumps(m.per_class) if m and m.per_class else None,
            "latency_ms": cost.latency_ms if cost else None, "energy_mj": cost.energy_mj if cost else None,
            "size_mb": cost.size_bytes / 1e6 if cost else None, "gbops": cost.bops / 1e9 if cost else None,
            "cost_model": cost.model if cost else None, "repaired": r.repaired, "cached": r.cached,
            "reused": r.reused, "eval_seconds": r.eval_seconds, "cost_seconds": r.cost_seconds,
        }  # fmt: skip
        for name, v in zip(objectives, r.values or [None] * len(objectives), strict=True):
            row[f"obj_{name}"] = v
        if test is not None:
            t = test.get(r.number)
            row["test_top1"] = t.top1 if t else None
            row["test_worst_class_top1"] = t.worst_class_top1 if t else None
        rows.append(row)
    return pd.DataFrame(rows)
