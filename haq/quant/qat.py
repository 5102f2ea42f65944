"""Quantization-aware fine-tuning of one config (LSQ, Esser et al. 2020), short and on CPU.

The fine-tune starts exactly at the searched point: each quantized layer's weight starts at
its PTQ fake-quantized weight (AdaRound's, where used) and its weight scale at the PTQ scale;
both are trained with a straight-through rounding and LSQ's scale gradient (scaled by
``1 / sqrt(weights per scale * qmax)``), biases are trained in float. BatchNorm stays folded
and frozen (the deployed form; a few thousand images cannot re-estimate its statistics) and
the model runs in eval mode (dropout off). Activation grids stay the calibrated ones, so the
exported graph's activation Q/DQ are unchanged and only integer weights, weight scales and
biases move. The loss is cross-entropy on the labels plus KL divergence to the float model
(knowledge distillation, which a short fine-tune on few images needs most).

The result is a `Quantizer` whose weights for this config's (layer, bits) are the fine-tuned
ones: `apply`, evaluation and `haq.export.export_onnx` use them as they use PTQ weights.
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from haq.config import BitConfig
from haq.data import TensorData
from haq.errors import HaqError
from haq.quant.apply import Quantizer
from haq.quant.modules import QuantLayer
from haq.quant.quantizers import per_weight, weight_qrange

PROGRESS_EVERY = 5.0


def _round_ste(x: torch.Tensor) -> torch.Tensor:
    return x + (torch.round(x) - x).detach()


def _grad_scaled(t: torch.Tensor, g: float) -> torch.Tensor:
    """``t`` in the forward pass, gradient multiplied by ``g`` in the backward pass."""
    return (t - t * g).detach() + t * g


def lsq_weight(w: torch.Tensor, scale: torch.Tensor, bits: int, granularity: str,
               group_size: int) -> torch.Tensor:  # fmt: skip
    """Fake-quantized ``w`` on the symmetric grid of ``scale`` with LSQ's gradients."""
    qmin, qmax = weight_qrange(bits)
    per_scale = w.numel() / scale.numel()
    s = per_weight(
        w, _grad_scaled(scale, 1.0 / math.sqrt(per_scale * qmax)), granularity, group_size
    )
    rows = w.reshape(w.shape[0], -1)
    return (torch.clamp(_round_ste(rows / s), qmin, qmax) * s).reshape(w.shape)


class QATLayer(nn.Module):
    """A `QuantLayer` whose weight, weight scale and bias are trainable."""

    def __init__(self, layer: QuantLayer) -> None:
        super().__init__()
        assert layer.w_scale is not None and layer.precision.w_bits is not None
        self.layer = layer
        self.bits = layer.precision.w_bits
        self.weight = nn.Parameter(layer.weight.detach().clone())
        self.scale = nn.Parameter(layer.w_scale.detach().clone())
        bias = layer.bias if layer.bias is not None else torch.zeros(layer.weight.shape[0])
        self.bias = nn.Parameter(bias.detach().clone())

    def quantized_weight(self) -> torch.Tensor:
        return lsq_weight(
            self.weight, self.scale, self.bits, self.layer.granularity, self.layer.group_size
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.layer.weight = self.quantized_weight()
        self.layer.bias = self.bias
        return self.layer(x)

    @torch.no_grad()
    def learned(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """(fake-quant weight, integer weight, scale, bias) after training."""
        qmin, qmax = weight_qrange(self.bits)
        scale = self.scale.detach().clamp_min(torch.finfo(torch.float32).tiny)
        s = per_weight(self.weight, scale, self.layer.granularity, self.layer.group_size)
        rows = self.weight.detach().reshape(self.weight.shape[0], -1)
        w_int = torch.clamp(torch.round(rows / s), qmin, qmax)
        return (
            (w_int * s).reshape(self.weight.shape),
            w_int.reshape(self.weight.shape),
            scale,
            self.bias.detach().clone(),
        )


@dataclass
class FinetuneResult:
    quantizer: Quantizer  # holds the fine-tuned weights of this config's (layer, bits)
    config: BitConfig
    epochs: float
    steps: int
    seconds: float
    losses: list[float] = field(default_factory=list)  # mean loss per (started) epoch


def _say(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def finetune(
    quantizer: Quantizer,
    config: BitConfig | str,
    train: TensorData,
    epochs: float = 1.0,
    lr: float = 0.01,
    batch_size: int = 64,
    distill: bool = True,
    seed: int = 0,
    say: Callable[[str], None] | None = _say,
) -> FinetuneResult:
    """Fine-tune ``config`` on ``train`` (labelled) for ``epochs`` passes (fractions allowed).

    ``lr`` is in quantization steps: each layer's Adam rate is ``lr`` times its mean weight
    scale, so one setting suits layers and networks of any weight magnitude.
    """
    if train.y is None:
        raise HaqError(f"fine-tuning needs labelled training images; {train.source} has no labels")
    if epochs <= 0:
        raise HaqError(f"--epochs {epochs} must be positive")
    resolved = quantizer.resolve(config)
    quantizer = quantizer.for_config(resolved)  # the refinement the point was scored with
    quantizer.learn_roundings(resolved)
    model = quantizer.apply(resolved)
    wrapped: dict[str, QATLayer] = {}
    for name, module in list(model.named_modules()):
        if isinstance(module, QuantLayer) and module.precision.w_bits is not None:
            wrapped[name] = QATLayer(module)
            model.set_submodule(name, wrapped[name])
    if not wrapped:
        raise HaqError("this config quantizes no weights; there is nothing to fine-tune")
    model.eval().requires_grad_(False)
    groups = []  # Adam steps are ~lr in absolute units: give each layer lr in its grid steps
    for layer in wrapped.values():
        own = list(layer.parameters(recurse=False))
        for p in own:
            p.requires_grad_(True)
        groups.append({"params": own, "lr": lr * float(layer.scale.detach().abs().mean())})
    teacher = quantizer.float_model if distill else None
    n = len(train)
    per_epoch = math.ceil(n / batch_size)
    steps = max(1, round(epochs * per_epoch))
    opt = torch.optim.Adam(groups)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)
    gen = torch.Generator().manual_seed(seed)
    losses: list[float] = []
    start = last = time.perf_counter()
    if say:
        say(f"finetune: {steps} steps of {batch_size} images ({epochs:g} epochs of {n}), "
            f"{len(wrapped)} quantized layers")  # fmt: skip
    for step in range(steps):
        if step % per_epoch == 0:
            order = torch.randperm(n, generator=gen)
            losses.append(0.0)
        idx = order[(step % per_epoch) * batch_size :][:batch_size]
        x, y = train.x[idx], train.y[idx]
        logits = model(x)
        loss = F.cross_entropy(logits, y)
        if teacher is not None:
            with torch.no_grad():
                target = F.log_softmax(teacher(x), dim=1)
            loss = loss + F.kl_div(
                F.log_softmax(logits, dim=1), target, log_target=True, reduction="batchmean"
            )
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        losses[-1] += float(loss.detach()) * len(idx) / n  # mean over the epoch's images
        now = time.perf_counter()
        if say and (now - last > PROGRESS_EVERY or step == steps - 1):
            eta = (now - start) / (step + 1) * (steps - step - 1)
            say(
                f"finetune: step {step + 1}/{steps}, loss {float(loss.detach()):.4f}, {now - start:.0f}s, ETA {eta:.0f}s"
            )
            last = now
    tuned = quantizer.with_weights({
        (name, layer.bits): layer.learned() for name, layer in wrapped.items()
    })  # fmt: skip
    return FinetuneResult(tuned, resolved, epochs, steps, time.perf_counter() - start, losses)
