"""One status line on stderr while a search runs: trials done / budget, evaluations per minute,
the phase the driver is in, front size, hypervolume, ETA. A TTY gets a live line; a log gets
a line every few seconds."""

from __future__ import annotations

import math
import sys
import time


def fmt_secs(s: float) -> str:
    if not math.isfinite(s):
        return "--"
    s = int(s)
    return f"{s // 60}m{s % 60:02d}s" if s >= 60 else f"{s}s"


class Progress:
    def __init__(self, budget: int, start_done: int, enabled: bool) -> None:
        self.budget = budget
        self.start_done = start_done
        self.enabled = enabled
        self.t0 = time.time()
        self.tty = sys.stderr.isatty()
        self.last_print = 0.0

    def update(self, done: int, phase: str, front: int, hv: float | None) -> None:
        if not self.enabled:
            return
        now = time.time()
        if self.tty or now - self.last_print > 5 or done >= self.budget:
            rate = (done - self.start_done) / max(now - self.t0, 1e-9) * 60
            eta = (self.budget - done) / rate * 60 if rate > 0 else float("nan")
            line = (f"[{done:>4}/{self.budget}] {rate:5.1f} trials/min | {phase:<11} | front {front} | "
                    f"HV {hv if hv is not None else float('nan'):.4g} | ETA {fmt_secs(eta)}")  # fmt: skip
            print(("\r" + line) if self.tty else line, end="" if self.tty else "\n",
                  file=sys.stderr, flush=True)  # fmt: skip
            self.last_print = now

    def close(self) -> None:
        if self.enabled and self.tty:
            print(file=sys.stderr)
