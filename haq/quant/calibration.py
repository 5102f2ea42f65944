"""Calibration: activation statistics of every quantizable layer, gathered once.

Statistics are collected on the BN-folded float model (the state every config starts from),
so they depend only on (layer, calibration data); qparams for any (bits, observer) are derived
from them on demand and memoised.
"""

from __future__ import annotations

import io
import time
from collections.abc import Iterable
from dataclasses import dataclass, field

import torch
from torch import nn

from haq.progress import Task, task
from haq.quant.observers import StatsCollector, TensorStats, observe_range
from haq.quant.quantizers import act_qparams


@dataclass
class Calibration:
    """Per-layer input (and output) statistics plus a memo of derived activation qparams."""

    inputs: dict[str, TensorStats]
    outputs: dict[str, TensorStats]
    n_images: int
    seconds: float
    percentile: float = 99.99
    _memo: dict[tuple[str, int, str, str], tuple[float, int]] = field(
        default_factory=dict, repr=False
    )

    def act_qparams(
        self, layer: str, bits: int, observer: str = "minmax", where: str = "input"
    ) -> tuple[float, int]:
        """(scale, zero_point) of ``layer``'s input (or output) at ``bits`` under ``observer``."""
        key = (layer, bits, observer, where)
        if key not in self._memo:
            stats = (self.inputs if where == "input" else self.outputs)[layer]
            lo, hi = observe_range(stats, bits, observer, self.percentile)
            self._memo[key] = act_qparams(lo, hi, bits)
        return self._memo[key]

    def to_bytes(self) -> bytes:
        buf = io.BytesIO()
        torch.save({"inputs": self.inputs, "outputs": self.outputs, "n_images": self.n_images,
                    "seconds": self.seconds, "percentile": self.percentile}, buf)  # fmt: skip
        return buf.getvalue()

    @classmethod
    def from_bytes(cls, data: bytes) -> Calibration:
        d = torch.load(io.BytesIO(data), weights_only=False)
        return cls(d["inputs"], d["outputs"], d["n_images"], d["seconds"], d["percentile"])


def _batches(x: torch.Tensor, batch_size: int) -> Iterable[torch.Tensor]:
    for i in range(0, x.shape[0], batch_size):
        yield x[i : i + batch_size]


@torch.no_grad()
def calibrate(
    model: nn.Module,
    layer_names: list[str],
    images: torch.Tensor,
    batch_size: int = 128,
    relu_after: frozenset[str] = frozenset(),
) -> Calibration:
    """Two passes over ``images`` (range, then histogram) with hooks on ``layer_names``.

    Output statistics of layers in ``relu_after`` are taken after that ReLU.
    """
    if images.shape[0] == 0:
        raise ValueError("calibration needs at least one image")
    start = time.perf_counter()
    dims = {n: -1 if isinstance(model.get_submodule(n), nn.Linear) else 1 for n in layer_names}
    ins = {n: StatsCollector(dims[n]) for n in layer_names}
    outs = {n: StatsCollector(dims[n]) for n in layer_names}
    model.eval()
    n_batches = -(-int(images.shape[0]) // batch_size)
    step = f"calibrating on {images.shape[0]} images (range, then histograms)"
    with task(step, 2 * n_batches, "batches", lazy=True) as progress:
        for phase in ("range", "hist"):
            _pass(model, layer_names, images, batch_size, relu_after, phase, ins, outs, progress)
    return Calibration(
        inputs={n: c.finish() for n, c in ins.items()},
        outputs={n: c.finish() for n, c in outs.items()},
        n_images=int(images.shape[0]),
        seconds=time.perf_counter() - start,
    )


def _pass(model: nn.Module, layer_names: list[str], images: torch.Tensor, batch_size: int,
          relu_after: frozenset[str], phase: str, ins: dict[str, StatsCollector],
          outs: dict[str, StatsCollector], progress: Task) -> None:  # fmt: skip
    """One pass of `calibrate` over the images: ranges or histograms."""
    handles = []
    for name in layer_names:

        def hook(
            _m: nn.Module,
            inp: tuple[torch.Tensor, ...],
            out: torch.Tensor,
            name: str = name,
            phase: str = phase,
        ) -> None:
            if name in relu_after:
                out = out.clamp_min(0)
            if phase == "range":
                ins[name].update_range(inp[0])
                outs[name].update_range(out)
            else:
                ins[name].update_hist(inp[0])
                outs[name].update_hist(out)

        handles.append(model.get_submodule(name).register_forward_hook(hook))
    try:
        for batch in _batches(images, batch_size):
            model(batch)
            progress.advance()
    finally:
        for h in handles:
            h.remove()
