"""Check a Ray cluster address before handing it to ``ray.init``, so a wrong or unreachable
address fails in seconds with one line (ray.init itself retries for minutes and prints native
log lines meanwhile)."""

from __future__ import annotations

import os
import socket
import sys
import tempfile
import threading
from typing import Any

from haq.errors import HaqError

CONNECT_TIMEOUT_S = 5.0
JOIN_TIMEOUT_S = 10.0  # ray.init against a reachable port; with the probe, under 15 s in all
#: Addresses Ray resolves itself (the local cluster file, RAY_ADDRESS).
SELF_RESOLVED = ("auto", "local")


def parse_address(address: str) -> tuple[str, int] | None:
    """(host, port) of ``HOST:PORT`` or ``ray://HOST:PORT``; None for `SELF_RESOLVED`."""
    if address in SELF_RESOLVED:
        return None
    hostport = address.removeprefix("ray://")
    host, sep, port = hostport.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise HaqError(f"--ray-address {address!r} is not HOST:PORT (e.g. 10.0.0.5:6379, "
                       "ray://10.0.0.5:10001, or auto)")  # fmt: skip
    return host.strip("[]"), int(port)


def check_reachable(address: str, timeout: float = CONNECT_TIMEOUT_S) -> None:
    """Raise a one-line `HaqError` unless something listens at ``address``."""
    target = parse_address(address)
    if target is None:
        return
    try:
        with socket.create_connection(target, timeout=timeout):
            return
    except OSError as e:
        why = (
            "timed out" if isinstance(e, TimeoutError) else (e.strerror or type(e).__name__).lower()
        )
        raise HaqError(f"no Ray cluster at {address} ({why} within {timeout:.0f} s); start one "
                       "with `ray start --head` and pass the address it prints") from None  # fmt: skip


class _NativeStderrHidden:
    """Ray's C++ core logs connection retries straight to fd 2: send fd 2 to a sink while
    joining. ``keep()`` leaves it there for the rest of the process (a join thread that
    never returned keeps logging) and gives Python's ``sys.stderr`` the real stream."""

    def __enter__(self) -> _NativeStderrHidden:
        sys.stderr.flush()
        self.saved = os.dup(2)
        self.sink = tempfile.TemporaryFile()
        os.dup2(self.sink.fileno(), 2)
        self.kept = False
        return self

    def keep(self) -> None:
        self.kept = True
        sys.stderr = os.fdopen(self.saved, "w", buffering=1)

    def __exit__(self, *exc: object) -> None:
        if not self.kept:
            os.dup2(self.saved, 2)
            os.close(self.saved)
            self.sink.close()


def join_cluster(address: str, kwargs: dict[str, Any], timeout: float = JOIN_TIMEOUT_S) -> None:
    """``ray.init(address=...)`` that gives up after ``timeout`` seconds with one line."""
    import ray

    check_reachable(address)
    box: dict[str, BaseException] = {}

    def connect() -> None:
        try:
            ray.init(address=address, **kwargs)
        except BaseException as e:  # re-raised below as one line
            box["error"] = e

    with _NativeStderrHidden() as hidden:
        thread = threading.Thread(target=connect, name="haq-ray-join", daemon=True)
        thread.start()
        thread.join(timeout)
        if thread.is_alive():
            hidden.keep()
    if thread.is_alive():
        raise HaqError(f"the Ray cluster at {address} did not answer within {timeout:.0f} s; "
                       "check the address `ray start --head` printed and that its port is open")  # fmt: skip
    if "error" in box:
        text = (str(box["error"]).strip().splitlines() or [type(box["error"]).__name__])[0]
        raise HaqError(f"cannot join the Ray cluster at {address}: {text}; check the address "
                       "`ray start --head` printed")  # fmt: skip
