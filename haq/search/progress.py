"""One status line on stderr while a search runs: trials done / budget, evaluations per minute,
the phase the driver is in, front size, hypervolume, ETA. A TTY gets a live line; a log gets
a line every few seconds; `haq.progress`'s json mode gets one JSON object per line."""

from __future__ import annotations

import math
import sys
import time

from haq import progress
from haq.progress import fmt_secs


class Progress:
    def __init__(self, budget: int, start_done: int, enabled: bool) -> None:
        self.budget = budget
        self.start_done = start_done
        self.enabled = enabled and progress.mode() != "quiet"
        self.json = progress.mode() == "json"
        self.t0 = time.time()
        self.tty = sys.stderr.isatty() and not self.json
        self.last_print = 0.0

    def update(self, done: int, phase: str, front: int, hv: float | None) -> None:
        if not self.enabled:
            return
        now = time.time()
        if self.tty or now - self.last_print > progress.PLAIN_EVERY_S or done >= self.budget:
            rate = (done - self.start_done) / max(now - self.t0, 1e-9) * 60
            eta = (self.budget - done) / rate * 60 if rate > 0 else float("nan")
            self.last_print = now
            if self.json:
                progress.emit("trials", "", done=done, total=self.budget, phase=phase,
                              front=front, hypervolume=hv, trials_per_min=round(rate, 2),
                              eta_s=round(eta, 1) if math.isfinite(eta) else None)  # fmt: skip
                return
            line = (f"[{done:>4}/{self.budget}] {rate:5.1f} trials/min | {phase:<11} | front {front} | "
                    f"HV {hv if hv is not None else float('nan'):.4g} | ETA {fmt_secs(eta)}")  # fmt: skip
            print(("\r" + line) if self.tty else line, end="" if self.tty else "\n",
                  file=sys.stderr, flush=True)  # fmt: skip

    def close(self) -> None:
        if self.enabled and self.tty:
            print(file=sys.stderr)
