"""`haq dashboard` on a real run: its HTTP API on 127.0.0.1 serves the study with its trials
and objective names; Ctrl-C stops it; without optuna-dashboard it is a one-line error."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from typing import Any

import pytest

from haq.search import SearchResult


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _get(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=10) as r:
        return json.load(r)


def test_dashboard_serves_the_study(run_a: SearchResult) -> None:
    pytest.importorskip("optuna_dashboard", reason="pip install optuna-dashboard (in .[dev])")
    port = _free_port()
    proc = subprocess.Popen([sys.executable, "-m", "haq", "dashboard", str(run_a.path), "--port", str(port)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip
    try:
        assert f"http://127.0.0.1:{port}/dashboard" in proc.stdout.readline()
        base = f"http://127.0.0.1:{port}/api"
        deadline = time.monotonic() + 30
        while True:
            try:
                studies = _get(f"{base}/studies")["study_summaries"]
                break
            except OSError:
                assert time.monotonic() < deadline and proc.poll() is None, (
                    "dashboard did not start"
                )
                time.sleep(0.2)
        (study,) = [s for s in studies if s["study_name"] == "haq"]
        detail = _get(f"{base}/studies/{study['study_id']}")
        assert detail["objective_names"] == list(run_a.objectives)
        assert len(detail["trials"]) == len(run_a.trials)
        attrs = {a["key"] for a in detail["trials"][0]["user_attrs"]}
        assert {"summary", "cost_provenance", "metrics", "cost"} <= attrs
    finally:
        proc.send_signal(signal.SIGINT)
        code = proc.wait(timeout=20)
    assert code == 0


def test_missing_dashboard_is_one_line_error(run_a: SearchResult) -> None:
    code = ("import sys; sys.modules['optuna_dashboard'] = None; from haq.cli import main; "
            f"sys.exit(main(['dashboard', {str(run_a.path)!r}]))")  # fmt: skip
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 2
    err = out.stderr.strip()
    assert err.startswith("haq: error:") and "optuna-dashboard" in err and "\n" not in err, err
