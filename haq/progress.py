"""Progress of a long step on stderr, told the same way by every step that takes a while.

A TTY gets one live line (done / total, rate, ETA); a log gets a plain line every few
seconds and one at the end; ``quiet`` prints nothing but warnings; ``json`` prints one JSON object per
line (``{"event": "progress", "step": ..., "done": ..., "total": ..., "eta_s": ...}``) for
scripts. The mode is process-wide (`configure`), set once by the CLI.
"""

from __future__ import annotations

import json
import math
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

MODES = ("auto", "quiet", "json")
PLAIN_EVERY_S = 5.0  # a log gets a line at most this often (and the last one)
_mode = "auto"


def configure(mode: str) -> None:
    """Set how every step reports: one of `MODES`."""
    global _mode
    if mode not in MODES:
        raise ValueError(f"progress mode {mode!r}; one of {MODES}")
    _mode = mode


def mode() -> str:
    return _mode


def fmt_secs(s: float) -> str:
    if not math.isfinite(s):
        return "--"
    s = int(s)
    return f"{s // 60}m{s % 60:02d}s" if s >= 60 else f"{s}s"


def emit(event: str, text: str, **fields: Any) -> None:
    """One line: ``text`` for people, or ``{"event": event, "message": text, **fields}`` in
    json mode."""
    if _mode == "quiet" and event != "warning":  # quiet hides progress, never a warning
        return
    if _mode == "json":
        message = {"message": text} if text else {}
        print(json.dumps({"event": event, **message, **fields}), file=sys.stderr, flush=True)
    else:
        print(text, file=sys.stderr, flush=True)


class Task:
    """One step of ``total`` units; `advance` as units finish."""

    def __init__(self, step: str, total: int, unit: str, enabled: bool = True) -> None:
        self.step, self.total, self.unit = step, max(total, 1), unit
        self.enabled = enabled
        self.started = False  # the start line is out (at once, or after LAZY_S for a lazy task)
        self.done = 0
        self.t0 = time.time()
        self.tty = _mode == "auto" and sys.stderr.isatty()
        self.last = self.t0  # a log's first line comes after PLAIN_EVERY_S (or at the end)

    def advance(self, n: int = 1) -> None:
        self.done = min(self.done + n, self.total)
        now = time.time()
        if not self.enabled or not self.started:
            return
        if self.tty or now - self.last >= PLAIN_EVERY_S or self.done == self.total:
            self.last = now
            self._line(now)

    def _line(self, now: float) -> None:
        elapsed = now - self.t0
        eta = elapsed / self.done * (self.total - self.done) if self.done else float("nan")
        if _mode == "quiet":
            return
        if _mode == "json":
            emit("progress", "", step=self.step, done=self.done, total=self.total,
                 elapsed_s=round(elapsed, 1), eta_s=round(eta, 1) if self.done else None)  # fmt: skip
            return
        text = (f"{self.step}: {self.done}/{self.total} {self.unit}  elapsed {fmt_secs(elapsed)}"
                f"  ETA {fmt_secs(eta)}")  # fmt: skip
        end = "\n" if not self.tty or self.done == self.total else ""
        print(("\r" + text) if self.tty else text, end=end, file=sys.stderr, flush=True)

    def begin(self) -> None:
        if self.enabled and not self.started:
            self.started = True
            emit("start", f"{self.step}: {self.total} {self.unit}".rstrip(), step=self.step,
                 total=self.total)  # fmt: skip


LAZY_S = 2.0  # a lazy task says nothing unless it is still running after this long


@contextmanager
def task(step: str, total: int, unit: str = "", enabled: bool = True,
         lazy: bool = False) -> Iterator[Task]:  # fmt: skip
    """Report ``step`` while the block runs: a first line at once (nothing waits silently),
    then as units finish; ``enabled`` False reports nothing (a caller's own quiet flag);
    ``lazy``: the first line only once the step has run `LAZY_S` (steps that are often quick,
    such as calibrating a small network, stay silent)."""
    import threading

    t = Task(step, total, unit, enabled)
    timer = threading.Timer(LAZY_S, t.begin) if lazy else None
    if timer is None:
        t.begin()
    else:
        timer.daemon = True
        timer.start()
    try:
        yield t
    finally:
        if timer is not None:
            timer.cancel()
