"""Metrics of evaluated configs, shared across searches on the same images (``--eval-cache``).

Accuracy depends on the model weights, the quantization settings, the calibration and the
validation images, never on the target or the driver, so benchmarks that run many drivers,
seeds and targets on one model evaluate each config once. One SQLite file (WAL, safe for
parallel searches) holds rows keyed by (context, config hash); the context is a digest of
everything the metrics depend on. A search that reads a row still counts it as one of its
evaluations (``TrialRecord.reused``): the cache saves wall time, not budget.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import time
from pathlib import Path

from haq.config import BitConfig
from haq.errors import HaqError
from haq.evaluate.metrics import Metrics

LOCK_TIMEOUT = 30.0  # seconds a search waits for another one's write to the file
_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS metrics (context TEXT NOT NULL, config_hash TEXT NOT NULL, "
    "metrics TEXT NOT NULL, PRIMARY KEY (context, config_hash))"
)


def context_key(*parts: object) -> str:
    """Digest of what an evaluation's metrics depend on."""
    return hashlib.sha256("|".join(map(str, parts)).encode()).hexdigest()[:24]


class EvaluationCache:
    """Read and write metrics of one evaluation context in a shared SQLite file."""

    def __init__(self, path: Path, context: str) -> None:
        self.path = Path(path)
        self.context = context
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(self.path, timeout=LOCK_TIMEOUT)
            self._set_up()
        except (sqlite3.Error, OSError) as e:
            raise HaqError(
                f"--eval-cache {self.path} is not a usable SQLite file ({e}); pass a new path"
            ) from None

    def _set_up(self) -> None:
        """WAL mode and the table. Switching a new file to WAL does not wait for a lock
        (SQLite answers "database is locked" at once), so searches that open one new cache
        together retry until the first of them has set it up."""
        deadline = time.monotonic() + LOCK_TIMEOUT
        while True:
            try:
                self._db.execute("PRAGMA journal_mode=WAL")
                self._db.execute(_SCHEMA)
                self._db.commit()
                return
            except sqlite3.OperationalError as e:
                if "locked" not in str(e) or time.monotonic() > deadline:
                    raise
                time.sleep(0.05)

    def for_context(self, context: str) -> EvaluationCache:
        """The same file under another context (e.g. the test images)."""
        return EvaluationCache(self.path, context)

    def get(self, config: BitConfig) -> Metrics | None:
        row = self._db.execute(
            "SELECT metrics FROM metrics WHERE context = ? AND config_hash = ?",
            (self.context, config.hash),
        ).fetchone()
        return Metrics(**json.loads(row[0])) if row else None

    def put(self, config: BitConfig, metrics: Metrics) -> None:
        self._db.execute(
            "INSERT OR REPLACE INTO metrics VALUES (?, ?, ?)",
            (self.context, config.hash, json.dumps(metrics.to_dict())),
        )
        self._db.commit()

    def __len__(self) -> int:
        row = self._db.execute(
            "SELECT COUNT(*) FROM metrics WHERE context = ?", (self.context,)
        ).fetchone()
        return int(row[0])
