"""SIGTERM stops a `haq` command the way Ctrl-C does: as an exception the command can clean
up after (actors stopped, results dir consistent), never a native stack dump.

Ray's core worker installs a native failure-signal handler (it prints stack traces on
SIGTERM) when a driver joins; `reinstall()` after ``ray.init`` puts ours back.
"""

from __future__ import annotations

import signal
import threading
from types import FrameType

_installed = False


class Terminated(KeyboardInterrupt):
    """SIGTERM arrived: stop like Ctrl-C, exit 143."""


def _on_sigterm(signum: int, frame: FrameType | None) -> None:
    raise Terminated()


def install() -> None:
    """Route SIGTERM to `Terminated` (main thread only; the CLI calls it)."""
    global _installed
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _on_sigterm)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        _installed = True


def reinstall() -> None:
    """After a library replaced the handlers (``ray.init``), if `install` ran before."""
    if _installed:
        install()


def exit_code(e: KeyboardInterrupt) -> int:
    return 143 if isinstance(e, Terminated) else 130


def describe(e: KeyboardInterrupt) -> str:
    return "stopped (SIGTERM)" if isinstance(e, Terminated) else "interrupted"
