"""`haq report`: one self-contained HTML file of a run, or of several runs compared."""

from __future__ import annotations

import argparse
from typing import Any


def register(sub: Any) -> None:
    p = sub.add_parser(
        "report", help="offline HTML report of a results dir (several dirs: compared)"
    )
    p.add_argument(
        "runs", nargs="+", metavar="RUN_DIR", help="results directories written by `haq search`"
    )
    p.add_argument("--out", "-o", default=None,
                   help="HTML file (default: RUN_DIR/report.html for one run, ./report.html for several)")  # fmt: skip
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from haq.report import write_report

    path = write_report(args.runs, args.out)
    print(f"report: {path} ({path.stat().st_size / 1e6:.1f} MB, opens offline in any browser)")
    return 0
