"""Learned roundings of one model, computed once per (layer, bits, granularity) and cached on disk.

A search tries hundreds of configs that share layer precisions; each (layer, weight bits)
rounding is learned once (`haq.quant.adaround` or `haq.quant.gptq`, the settings' learned
rounding) and reused by every config holding it, by every Ray actor, and by later searches:
roundings live under the per-user cache keyed by the method, the BN-folded (and equalized)
weights, the calibration images and the rounding settings. Input moments are gathered only
when a rounding is missing.
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
from haq.quant.gptq import DAMP, gptq
from haq.quant.input_moments import input_moments
from haq.quant.settings import QuantSettings

VERSION = 1  # bump when a rounding algorithm changes what it returns
MAX_BITS = 8  # wider grids round to nearest: their rounding error is below any noise
PROGRESS_EVERY = 5.0  # seconds between progress lines
#: One rounding: (layer, weight bits, weight granularity, symmetric grid).
RoundingKey = tuple[str, int, str, bool]


def _say(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


class LearnedRounding:
    """Learned integer weights of one model's layers (AdaRound or GPTQ), from disk or computed."""

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
        method = settings.learned_rounding
        assert method is not None, "the settings learn no rounding"
        self.method = method
        self.key = self._key()
        self.dir = cache_dir() / method / self.key
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
        knob = s.adaround_iterations if self.method == "adaround" else DAMP
        h.update(f"{s.granularity}|{s.group_size}|{knob}|v{VERSION}".encode())
        return h.hexdigest()[:20]

    def applies(self, bits: int) -> bool:
        return bits <= MAX_BITS

    def _path(self, layer: str, bits: int, granularity: str | None, symmetric: bool) -> Path:
        own = granularity in (None, self.settings.granularity)  # earlier caches: no suffix
        name = f"{layer}-w{bits}" + ("" if own else f"-{granularity}")
        return self.dir / (name + ("" if symmetric else "-asym") + ".pt")

    def w_int(
        self, layer: str, bits: int, granularity: str | None = None, symmetric: bool = True
    ) -> torch.Tensor:
        """Learned integer weights of ``layer`` at ``bits`` on the grid of ``granularity``
        (default: the settings'), symmetric or with zero points (centred integers), float
        dtype holding integers."""
        path = self._path(layer, bits, granularity, symmetric)
        if path.exists():
            return torch.load(path, weights_only=True)["w_int"].float()
        return self._learn(layer, bits, granularity or self.settings.granularity, symmetric).w_int

    def missing(self, wanted: Iterable[RoundingKey]) -> list[RoundingKey]:
        return [key for key in wanted if not self._path(*key).exists()]

    def prepare(self, wanted: Iterable[RoundingKey]) -> int:
        """Learn every missing rounding of these (layer, bits, granularity, symmetric), with
        progress; returns how many were learned."""
        wanted = [key for key in dict.fromkeys(wanted) if self.applies(key[1])]
        todo = self.missing(wanted)
        m = self.method
        if not todo:
            if self.say and wanted:
                self.say(f"{m}: all {len(wanted)} roundings cached in {self.dir}")
            return 0
        start = last = time.perf_counter()
        if self.say:
            each = (
                f"{self.settings.adaround_iterations} iterations each; " if m == "adaround" else ""
            )
            self.say(f"{m}: learning {len(todo)} roundings ({each}cached in {self.dir})")
        self._preparing = True
        try:
            for i, key in enumerate(todo, 1):
                self.w_int(*key)
                now = time.perf_counter()
                if self.say and (now - last > PROGRESS_EVERY or i == len(todo)):
                    eta = (now - start) / i * (len(todo) - i)
                    self.say(f"{m}: {i}/{len(todo)} roundings, {now - start:.0f}s, ETA {eta:.0f}s")
                    last = now
        finally:
            self._preparing = False
        return len(todo)

    def _learn(self, layer: str, bits: int, granularity: str, symmetric: bool) -> Rounding:
        start = time.perf_counter()
        if self._moments is None:
            self._moments = input_moments(self.model, self.layers, self.images)
        s = self.settings
        weight = self.model.get_submodule(layer).weight.detach()
        moments = self._moments[layer]
        if self.method == "gptq":
            r = gptq(weight, moments, bits, granularity, s.group_size, symmetric=symmetric)
        else:
            r = adaround(weight, moments, bits, granularity, s.group_size, s.adaround_iterations,
                         symmetric=symmetric)  # fmt: skip
        buf = io.BytesIO()
        torch.save({"w_int": r.w_int.to(torch.int16), "error": r.error,
                    "nearest_error": r.nearest_error}, buf)  # fmt: skip
        atomic_write_bytes(self._path(layer, bits, granularity, symmetric), buf.getvalue())
        now = time.perf_counter()
        self.seconds += now - start
        self.learned += 1
        if self.say and not self._preparing and now - self._said > PROGRESS_EVERY:
            self.say(f"{self.method}: {self.learned} roundings learned so far "
                     f"({self.seconds:.0f}s; cached in {self.dir})")  # fmt: skip
            self._said = now
        return r
