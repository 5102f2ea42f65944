"""The durable record of a search: the Optuna study on SQLite, one trial per `TrialRecord`.

Every finished trial is written at once (params of the search variables, objective values,
the record as user attributes, the driver's bookkeeping as system attributes), so a resume,
the results files and optuna-dashboard see the same trials whichever driver proposed them.
SQLite runs in WAL mode: durable across kill -9, with few fsyncs.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from haq.errors import HaqError
from haq.search.space import SearchSpace
from haq.search.trials import COMPLETE, FAILED, PRUNED, TrialRecord

STUDY_NAME = "haq"


def sqlite_storage(path: Path) -> Any:
    """Optuna RDB storage on SQLite in WAL mode."""
    import optuna
    from sqlalchemy import event

    storage = optuna.storages.RDBStorage(f"sqlite:///{path.resolve()}")

    def pragmas(conn: Any, _record: Any) -> None:
        cur = conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.close()

    event.listen(storage.engine, "connect", pragmas)
    storage.engine.dispose()
    return storage


@contextmanager
def _study_errors(path: Path) -> Iterator[None]:
    """SQLite refusing the study (disk full, read-only, locked) as one line; what it had
    committed stays (WAL: a failed write never reaches the database file)."""
    import optuna
    from sqlalchemy.exc import OperationalError

    try:
        yield
    except (OperationalError, optuna.exceptions.StorageInternalError) as e:
        cause = e if isinstance(e, OperationalError) else (e.__cause__ or e)
        reason = str(getattr(cause, "orig", None) or cause).splitlines()[0]
        d = path.parent
        raise HaqError(f"cannot write the study {path} ({reason}); free disk space or make {d} "
                       f"writable, then run again (`haq search --resume {d}` continues a search "
                       "that had started)") from None  # fmt: skip


def _states() -> dict[str, Any]:
    import optuna

    s = optuna.trial.TrialState
    return {COMPLETE: s.COMPLETE, PRUNED: s.PRUNED, FAILED: s.FAIL}


class StudyStore:
    """The on-disk study of one results directory."""

    def __init__(self, path: Path, space: SearchSpace, objectives: list[str],
                 directions: list[str], resume: bool,
                 trial_attrs: dict[str, Any] | None = None) -> None:  # fmt: skip
        """``trial_attrs``: user attributes every trial gets (e.g. the cost model's provenance,
        which optuna-dashboard shows beside each trial)."""
        import optuna
        from optuna.distributions import CategoricalDistribution

        from haq.io import ensure_writable_dir
        from haq.search.results import WRITABLE_FIX

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
        self.path = path
        self.space = space
        self.trial_attrs = dict(trial_attrs or {})
        # before SQLite opens it: a read-only dir would fail later, or (root) let it write
        ensure_writable_dir(path.parent, WRITABLE_FIX)
        with _study_errors(path):
            self.storage = sqlite_storage(path)
            self.study = optuna.create_study(storage=self.storage, study_name=STUDY_NAME,
                                             directions=directions, load_if_exists=resume)  # fmt: skip
            self.study.set_metric_names(objectives)
        self.dists = {v: CategoricalDistribution(o) for v, o in space.sampled_variables()}

    def history(self) -> list[TrialRecord]:
        """Every finished trial, in the order it finished.

        Read with four plain queries over Optuna's RDB schema (as `annotate` writes it):
        Optuna's ORM load took ~1 ms per trial, most of a 10,000-trial resume."""
        import json
        import math

        from sqlalchemy import text

        names = {"COMPLETE": COMPLETE, "PRUNED": PRUNED, "FAIL": FAILED}
        sid = self.study._study_id
        q = {
            "trials": "SELECT trial_id, state FROM trials WHERE study_id = :s",
            "user": "SELECT a.trial_id, a.key, a.value_json FROM trial_user_attributes a "
                    "JOIN trials t ON t.trial_id = a.trial_id WHERE t.study_id = :s",
            "system": "SELECT a.trial_id, a.key, a.value_json FROM trial_system_attributes a "
                      "JOIN trials t ON t.trial_id = a.trial_id WHERE t.study_id = :s",
            "values": "SELECT v.trial_id, v.objective, v.value, v.value_type FROM trial_values v "
                      "JOIN trials t ON t.trial_id = v.trial_id WHERE t.study_id = :s",
        }  # fmt: skip
        with _study_errors(self.path), self.storage.engine.connect() as conn:
            got = {k: conn.execute(text(sql), {"s": sid}).all() for k, sql in q.items()}
        user: dict[int, dict[str, Any]] = {}
        system: dict[int, dict[str, Any]] = {}
        for into, rows in ((user, got["user"]), (system, got["system"])):
            for tid, key, value in rows:
                into.setdefault(tid, {})[key] = json.loads(value)
        special = {"INF_POS": math.inf, "INF_NEG": -math.inf}
        values: dict[int, dict[int, float]] = {}
        for tid, objective, value, kind in got["values"]:
            values.setdefault(tid, {})[objective] = special.get(str(kind).split(".")[-1], value)
        out = []
        for tid, state in got["trials"]:
            state = str(state).split(".")[-1]
            attrs = user.get(tid, {})
            if state in names and "config" in attrs:
                vals = values.get(tid)
                listed = [vals[i] for i in sorted(vals)] if vals else None
                out.append(TrialRecord.from_user_attrs(attrs, names[state], listed,
                                                       system.get(tid, {})))  # fmt: skip
        return sorted(out, key=lambda r: r.number)

    def add(self, record: TrialRecord) -> None:
        import optuna

        state = _states()[record.state]
        in_space = self.space.contains(record.config)
        trial = optuna.trial.create_trial(
            params=self.space.params(record.config) if in_space else {},
            distributions=self.dists if in_space else {}, state=state,
            values=record.values if state == optuna.trial.TrialState.COMPLETE else None,
            user_attrs={**record.to_user_attrs(), **self.trial_attrs}, system_attrs=record.driver_attrs,
        )  # fmt: skip
        with _study_errors(self.path):
            self.study.add_trial(trial)

    def annotate(self, attrs: dict[int, dict[str, Any]]) -> None:
        """Add user attributes to finished trials, by trial number (test top-1 is known only
        after the search). Optuna's API refuses to change a finished trial, so the values go
        straight into its schema's ``trial_user_attributes`` rows (key, JSON value)."""
        import json

        from sqlalchemy import text

        ids = {
            t.user_attrs.get("trial"): t._trial_id for t in self.study.get_trials(deepcopy=False)
        }
        rows = [{"t": ids[n], "k": k, "v": json.dumps(v)}
                for n, kv in attrs.items() if n in ids for k, v in kv.items()]  # fmt: skip
        if not rows:
            return
        with _study_errors(self.path), self.storage.engine.begin() as conn:
            conn.execute(
                text("DELETE FROM trial_user_attributes WHERE trial_id = :t AND key = :k"), rows
            )
            conn.execute(text("INSERT INTO trial_user_attributes (trial_id, key, value_json) "
                              "VALUES (:t, :k, :v)"), rows)  # fmt: skip
