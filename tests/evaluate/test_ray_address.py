"""A wrong or unreachable --ray-address fails in seconds with one line, exit 2, and leaves a
results dir a later search can start in."""

from __future__ import annotations

import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from haq.cli import main
from haq.errors import HaqError
from haq.evaluate.ray_address import parse_address


def test_parse_address() -> None:
    assert parse_address("10.0.0.5:6379") == ("10.0.0.5", 6379)
    assert parse_address("ray://head:10001") == ("head", 10001)
    assert parse_address("[::1]:6379") == ("::1", 6379)
    assert parse_address("auto") is None
    for bad in ("nonsense", "host:", ":6379", "host:0", "host:99999", "host:port"):
        with pytest.raises(HaqError, match="is not HOST:PORT"):
            parse_address(bad)


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_refused_address_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "run"
    args = ["search", "--model", "digits_cnn", "--budget", "3", "--out", str(out)]
    for address, expect in ((f"127.0.0.1:{_closed_port()}", "no Ray cluster at"),
                            ("nonsense", "is not HOST:PORT")):  # fmt: skip
        code = main([*args, "--ray-address", address])
        err = capsys.readouterr().err
        assert code == 2 and err.startswith("haq: error:") and err.count("\n") == 1, err
        assert expect in err
    assert not out.exists()  # refused before anything was written


def test_a_port_that_is_not_ray_times_out_in_one_line(tmp_path: Path) -> None:
    """Something listens but never speaks Ray: `ray.init` would retry for minutes."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    port = server.getsockname()[1]
    held: list[socket.socket] = []
    threading.Thread(target=lambda: [held.append(server.accept()[0]) for _ in range(8)],
                     daemon=True).start()  # fmt: skip
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "haq", "search", "--model", "digits_cnn", "--budget", "3",
           "--out", str(out), "--ray-address", f"127.0.0.1:{port}"]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    server.close()
    assert proc.returncode == 2, proc.stderr
    lines = [ln for ln in proc.stderr.splitlines() if ln.startswith("haq: error:")]
    assert len(lines) == 1 and "did not answer" in lines[0], proc.stderr
    assert "Traceback" not in proc.stderr and "rpc_client" not in proc.stderr
    # the set-up it began (a study, no run.json) does not block a new search there
    assert main(["search", "--model", "digits_cnn", "--budget", "3", "--workers", "0", "-q",
                 "--out", str(out)]) == 0  # fmt: skip
    assert (out / "pareto.json").is_file()
