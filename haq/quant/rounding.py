"""Learned roundings of one model, computed once per (layer, bits) and cached on disk.

A search tries hundreds of configs that share layer precisions; each (layer, weight bits)
rounding is learned once (`haq.quant.adaround`) and reused by every config holding it, by
every Ray actor, and by later searches: roundings live under the per-user cache keyed by the
BN-folded (and equalized) weights, the calibration images and the rounding settings. Input
moments are gathered only when a rounding is missing.
"""

from __future__ import annotations

import hashlib
import io
import sys
import time
from collections.abc import Callable, Iterable
from pathlib import Path

import torch
from torch import nn

from haq.io import atomic_write_bytes
from haq.models.fingerprint import state_hash
from haq.paths import cache_dir
from haq.quant.adaround import Rounding, adaround
from haq.quant.input_moments import input_moments
from haq.quant.settings import QuantSettings

VERSION = 1  # bump when the rounding algorithm changes what it returns
MAX_BITS = 8  # wider grids round to nearest: their rounding error is below any noise
PROGRESS_EVERY = 5.0  # seconds between progress lines


def _say(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


class LearnedRounding:
    """AdaRound integer weights of one model's layers, from memory, disk or computed."""

    def __init__(
        self,
        model: nn.Module,
        layers: list[str],
        images: torch.Tensor,
        settings: QuantSettings,
        say: Callable[[str], None] | None = _say,
    ) -> None:
        self.model = model
        self.layers = layers
        self.images = images
        self.settings = settings
        self.say = say
        self.key = self._key()
        self.dir = cache_dir() / "adaround" / self.key
        self._moments: dict[str, torch.Tensor] | None = None
        self.seconds = 0.0  # time spent learning roundings in this process (not loading them)
        self.learned = 0  # roundings learned in this process
        self._said = time.perf_counter()
        self._preparing = False  # prepare() reports its own progress

    def _key(self) -> str:
        s = self.settings
        h = hashlib.sha256()
        h.update(state_hash(self.model).encode())
        h.update(self.images.detach().contiguous().numpy().tobytes())
        h.update(f"{s.granularity}|{s.group_size}|{s.adaround_iterations}|v{VERSION}".encode())
        return h.hexdigest()[:20]

    def applies(self, bits: int) -> bool:
        return bits <= MAX_BITS

    def _path(self, layer: str, bits: int) -> Path:
        return self.dir / f"{layer}-w{bits}.pt"

    def w_int(self, layer: str, bits: int) -> torch.Tensor:
        """Learned integer weights of ``layer`` at ``bits`` (float dtype holding integers)."""
        path = self._path(layer, bits)
        if path.exists():
            return torch.load(path, weights_only=True)["w_int"].float()
        return self._learn(layer, bits).w_int

    def missing(self, pairs: Iterable[tuple[str, int]]) -> list[tuple[str, int]]:
        return [(n, b) for n, b in pairs if not self._path(n, b).exists()]

    def prepare(self, pairs: Iterable[tuple[str, int]]) -> int:
        """Learn every missing rounding of these (layer, bits), with progress; returns how
        many were learned."""
        wanted = [(n, b) for n, b in dict.fromkeys(pairs) if self.applies(b)]
        todo = self.missing(wanted)
        if not todo:
            if self.say and wanted:
                self.say(f"adaround: all {len(wanted)} roundings cached in {self.dir}")
            return 0
        start = last = time.perf_counter()
        if self.say:
            self.say(f"adaround: learning {len(todo)} roundings ({self.settings.adaround_iterations} "
                     f"iterations each; cached in {self.dir})")  # fmt: skip
        self._preparing = True
        try:
            for i, (layer, b) in enumerate(todo, 1):
                self.w_int(layer, b)
                now = time.perf_counter()
                if self.say and (now - last > PROGRESS_EVERY or i == len(todo)):
                    eta = (now - start) / i * (len(todo) - i)
                    self.say(
                        f"adaround: {i}/{len(todo)} roundings, {now - start:.0f}s, ETA {eta:.0f}s"
                    )
                    last = now
        finally:
            self._preparing = False
        return len(todo)

    def _learn(self, layer: str, bits: int) -> Rounding:
        start = time.perf_counter()
        if self._moments is None:
            self._moments = input_moments(self.model, self.layers, self.images)
        s = self.settings
        weight = self.model.get_submodule(layer).weight.detach()
        r = adaround(weight, self._moments[layer], bits, s.granularity, s.group_size,
                     s.adaround_iterations)  # fmt: skip
        buf = io.BytesIO()
        torch.save({"w_int": r.w_int.to(torch.int8), "error": r.error,
                    "nearest_error": r.nearest_error}, buf)  # fmt: skip
        atomic_write_bytes(self._path(layer, bits), buf.getvalue())
        now = time.perf_counter()
        self.seconds += now - start
        self.learned += 1
        if self.say and not self._preparing and now - self._said > PROGRESS_EVERY:
            self.say(
                f"adaround: {self.learned} roundings learned so far ({self.seconds:.0f}s; cached in {self.dir})"
            )
            self._said = now
        return r
