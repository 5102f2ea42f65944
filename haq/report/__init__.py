"""Pictures of results directories: the offline HTML report (`haq report`) and the live
dashboard (`haq dashboard`).

Nothing heavy is imported here: plotly and optuna-dashboard are optional extras
(``pip install -e ".[report]"`` / ``".[dashboard]"``) loaded by the functions that draw.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path


def write_report(run_dirs: Sequence[str | Path], out: str | Path | None = None) -> Path:
    """Write one self-contained HTML report of one run (or a comparison of several runs);
    returns its path (default: ``report.html`` in the single run's dir, else the cwd)."""
    from haq.report.html import write_report as _write

    return _write(run_dirs, out)


__all__ = ["write_report"]
