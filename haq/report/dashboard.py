"""optuna-dashboard on a run's study: a live view of a running (or finished) search.

The study is opened read-mostly on the run's SQLite file (WAL mode, so a search still writing
to it is not blocked); only objective names are set where an older run lacks them.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from haq.errors import HaqError
from haq.search.results import ResultsDir


@dataclass(frozen=True)
class DashboardOptions:
    run_dir: Path
    host: str = "127.0.0.1"
    port: int = 8080


def require_dashboard() -> Any:
    """The optional dependency, or a one-line error naming the extra."""
    try:
        import optuna_dashboard
    except ImportError as e:
        raise HaqError("`haq dashboard` needs optuna-dashboard; pip install -e \".[dashboard]\" "
                       "(or pip install optuna-dashboard)") from e  # fmt: skip
    return optuna_dashboard


def open_storage(run_dir: Path) -> Any:
    """The run's Optuna storage with its study's objective names set."""
    import optuna

    from haq.search.storage import STUDY_NAME, sqlite_storage

    rd = ResultsDir(run_dir)
    if not rd.study_db.is_file():
        raise HaqError(
            f"{rd.path} is not a haq results directory (no study.db); pass a directory `haq search` wrote"
        )
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = sqlite_storage(rd.study_db)
    try:
        study = optuna.load_study(study_name=STUDY_NAME, storage=storage)
    except KeyError as e:
        raise HaqError(
            f"{rd.study_db} holds no haq study; pass a directory `haq search` wrote"
        ) from e
    names = rd.read_run().get("objectives") if rd.run_path.is_file() else None
    if names and study.metric_names is None and len(names) == len(study.directions):
        study.set_metric_names(names)
    return storage


def serve(opts: DashboardOptions) -> None:
    """Blocks until Ctrl-C; prints the URL first."""
    dashboard = require_dashboard()
    storage = open_storage(opts.run_dir)
    print(
        f"dashboard of {opts.run_dir}: http://{opts.host}:{opts.port}/dashboard (Ctrl-C stops it)",
        flush=True,
    )
    try:
        dashboard.run_server(storage, host=opts.host, port=opts.port)
    except OSError as e:
        raise HaqError(
            f"cannot listen on {opts.host}:{opts.port} ({e.strerror}); pass another --port"
        ) from e
    except KeyboardInterrupt:
        pass
    print("dashboard stopped", file=sys.stderr)
