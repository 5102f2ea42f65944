"""Ctrl-C or SIGTERM in the middle of a real search (Ray workers running): one line saying
how to resume, exit 130 / 143, no native stack dumps, and the results dir resumes."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest


def _start(out: Path, *extra: str) -> subprocess.Popen[str]:
    cmd = [sys.executable, "-m", "haq", "search", "--model", "digits_cnn", "--budget", "400",
           "--out", str(out), *extra]  # fmt: skip
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _wait_for_trials(out: Path, proc: subprocess.Popen[str], n: int, limit_s: float = 120) -> None:
    deadline = time.time() + limit_s
    while time.time() < deadline and proc.poll() is None:
        path = out / "trials.parquet"
        try:
            if path.is_file() and len(pd.read_parquet(path)) >= n:
                return
        except Exception:  # written atomically, but a read may race the rename on some FS
            pass
        time.sleep(0.2)
    raise AssertionError(f"no {n} trials within {limit_s} s (rc {proc.poll()})")


@pytest.mark.parametrize(
    ("sig", "code", "workers"), [(signal.SIGTERM, 143, "2"), (signal.SIGINT, 130, "0")]
)
def test_signal_mid_search_stops_cleanly_and_resumes(
    tmp_path: Path, sig: int, code: int, workers: str
) -> None:
    out = tmp_path / "run"
    proc = _start(out, "--workers", workers)
    _wait_for_trials(out, proc, 3)
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == code, err
    lines = [ln for ln in err.splitlines() if ln.startswith("haq:")]
    assert lines and f"haq search --resume {out}" in lines[-1], err
    assert "Traceback" not in err and "*** SIG" not in err and "absl" not in err, err[-3000:]
    done = len(pd.read_parquet(out / "trials.parquet"))
    resumed = subprocess.run([sys.executable, "-m", "haq", "search", "--resume", str(out), "--budget",
                              str(done + 3), "--workers", "0", "-q"], capture_output=True, text=True,
                             timeout=300)  # fmt: skip
    assert resumed.returncode == 0, resumed.stderr
    assert len(pd.read_parquet(out / "trials.parquet")) >= done
    assert json.loads((out / "pareto.json").read_text())["points"]
