"""The results directory of one search: files people can open, written atomically.

```
<out>/study.db          Optuna study (SQLite): the single source of truth, resumable
<out>/sampler.pkl       pickled sampler state (Optuna storages do not keep it)
<out>/trials.parquet    every trial: config, objectives, per-class accuracy, cost provenance, timings
<out>/pareto.json       the front: each point's config, objectives, validation and test accuracy
<out>/configs/<p>.yaml  one BitConfig per front point, ready for `haq export --bits`
<out>/run.json          versions, seed, model and weights hash, target, command line
```
"""

from __future__ import annotations

import io
import json
import pickle
from pathlib import Path
from typing import Any

import pandas as pd

from haq.io import atomic_write_bytes, atomic_write_text


class ResultsDir:
    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

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

    def create(self) -> None:
        self.path.mkdir(parents=True, exist_ok=True)
        (self.path / "configs").mkdir(exist_ok=True)

    # run.json -----------------------------------------------------------------------------
    def write_run(self, info: dict[str, Any]) -> None:
        atomic_write_text(self.run_path, json.dumps(info, indent=2, sort_keys=True, default=str))

    def read_run(self) -> dict[str, Any]:
        return json.loads(self.run_path.read_text())

    # sampler ------------------------------------------------------------------------------
    def save_sampler(self, sampler: Any) -> None:
        atomic_write_bytes(self.path / "sampler.pkl", pickle.dumps(sampler))

    def load_sampler(self) -> Any | None:
        path = self.path / "sampler.pkl"
        return pickle.loads(path.read_bytes()) if path.is_file() else None

    # tables -------------------------------------------------------------------------------
    def write_trials(self, frame: pd.DataFrame) -> None:
        buf = io.BytesIO()
        frame.to_parquet(buf, index=False)
        atomic_write_bytes(self.trials_path, buf.getvalue())

    def write_front(self, payload: dict[str, Any], configs: dict[str, str]) -> None:
        """``pareto.json`` plus ``configs/<name>.yaml``; stale config files are removed."""
        cfg_dir = self.path / "configs"
        cfg_dir.mkdir(exist_ok=True)
        for name, text in configs.items():
            atomic_write_text(cfg_dir / f"{name}.yaml", text)
        for old in cfg_dir.glob("*.yaml"):
            if old.stem not in configs:
                old.unlink()
        atomic_write_text(self.pareto_path, json.dumps(payload, indent=2, default=str))
