"""`haq dashboard`: optuna-dashboard on a run's study (live while the search runs)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any


def register(sub: Any) -> None:
    p = sub.add_parser("dashboard", help="optuna-dashboard on a results dir's study (live view)")
    p.add_argument("run", metavar="RUN_DIR", help="results directory written by `haq search`")
    p.add_argument("--port", "-p", type=int, default=8080, help="port to listen on (default 8080)")
    p.add_argument(
        "--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)"
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from haq.report.dashboard import DashboardOptions, serve

    serve(DashboardOptions(Path(args.run), args.host, args.port))
    return 0
