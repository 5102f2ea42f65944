"""Data-free calibration images (ZeroQ, Cai et al. 2020, "Distilled Data").

Gaussian noise is optimised so that at every BatchNorm layer the per-channel mean and
standard deviation of the layer's *input* match the running statistics the model learned on
its training data. Quantization ranges calibrated on such images track the real activation
ranges closely, without a single real image. Results are cached per model weights.
"""

from __future__ import annotations

import hashlib
import io
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from haq.errors import HaqError
from haq.io import atomic_write_bytes
from haq.paths import cache_dir

DEFAULT_N = 64
DEFAULT_STEPS = 100  # resnet20, 64 images: ~20 s on 2 cores; BN gap 162 -> ~10 (real batch: ~36)
# Default steps shrink for large networks so a data-free search starts in minutes: at most
# STEP_BUDGET_GMAC of forward MACs (images x steps x GMACs per image; a step is forward and
# backward), never fewer than MIN_STEPS. resnet50 (4.1 GMACs), 64 images: 6 steps, ~2 minutes
# on 2 cores; resnet20/56 keep all 100 (experiments/distill_budget.py measures what steps buy).
STEP_BUDGET_GMAC = 1600.0
MIN_STEPS = 4
DEFAULT_LR = 0.3  # peak of a cosine schedule (mean 0.15): beat constant 0.1-0.2 here
CHUNK = 32  # images optimised together: bounds memory for large inputs
_VERSION = "zeroq-v1"  # bump when the optimisation changes, to invalidate old caches
NO_BN_HINT = "data-free calibration needs BatchNorm statistics; pass --calib-data DIR"


def bn_layers(model: nn.Module) -> list[_BatchNorm]:
    """BatchNorm layers that carry running statistics (the distillation targets)."""
    return [
        m
        for m in model.modules()
        if isinstance(m, _BatchNorm) and m.running_mean is not None and m.running_var is not None
    ]


def _bn_gap(bn: _BatchNorm, x: torch.Tensor) -> torch.Tensor:
    """||mu - running_mean||_2 + ||sigma - running_std||_2 of a BN layer's input batch."""
    dims = [d for d in range(x.dim()) if d != 1]
    var, mu = torch.var_mean(x, dims, unbiased=False)  # one pass over the activations
    sigma = torch.sqrt(var + bn.eps)
    assert bn.running_mean is not None and bn.running_var is not None
    target_sigma = torch.sqrt(bn.running_var + bn.eps)
    return torch.linalg.vector_norm(mu - bn.running_mean) + torch.linalg.vector_norm(
        sigma - target_sigma
    )


@contextmanager
def _eval_mode(model: nn.Module) -> Iterator[None]:
    """Eval mode for the duration, then every module's own flag restored."""
    flags = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        yield
    finally:
        for m, flag in flags:
            m.train(flag)


def _bn_loss(model: nn.Module, layers: list[_BatchNorm], x: torch.Tensor) -> torch.Tensor:
    """Sum of the BN statistic gaps for one forward pass of ``x`` (hooks removed after)."""
    terms: list[torch.Tensor] = []

    def hook(module: nn.Module, args: tuple[torch.Tensor, ...]) -> None:
        assert isinstance(module, _BatchNorm)
        terms.append(_bn_gap(module, args[0]))

    handles = [bn.register_forward_pre_hook(hook) for bn in layers]
    try:
        model(x)
    finally:
        for h in handles:
            h.remove()
    if not terms:
        raise HaqError(f"no BatchNorm layer ran on the input; {NO_BN_HINT}")
    return torch.stack(terms).sum()


def _device(model: nn.Module) -> torch.device:
    p = next(model.parameters(), None)
    return p.device if p is not None else torch.device("cpu")


def bn_stat_gap(model: nn.Module, x: torch.Tensor) -> float:
    """How far ``x`` is from the model's BatchNorm statistics (the distillation loss)."""
    layers = bn_layers(model)
    if not layers:
        raise HaqError(NO_BN_HINT)
    with _eval_mode(model), torch.no_grad():
        return float(_bn_loss(model, layers, x.to(_device(model))))


def distill(
    model: nn.Module,
    n: int,
    input_size: tuple[int, int, int],
    *,
    seed: int = 0,
    steps: int = DEFAULT_STEPS,
    lr: float = DEFAULT_LR,
    on_step: Callable[[], None] | None = None,
) -> torch.Tensor:
    """``n`` images of ``input_size`` whose BatchNorm input statistics match the model's.

    Adam with a cosine learning-rate decay on the pixels only (gradients are taken w.r.t. the
    images, so the model's weights, modes and hooks are left as they were); chunks of `CHUNK`
    images are optimised apart. ``on_step`` is called after every step of every chunk.
    """
    layers = bn_layers(model)
    if not layers:
        raise HaqError(NO_BN_HINT)
    device = _device(model)
    gen = torch.Generator().manual_seed(seed)
    init = torch.randn((n, *input_size), generator=gen)
    out = torch.empty_like(init)
    with _eval_mode(model), torch.enable_grad():  # callers often hold torch.no_grad()
        for start in range(0, n, CHUNK):
            x = init[start : start + CHUNK].to(device).clone().requires_grad_(True)
            opt = torch.optim.Adam([x], lr=lr)
            sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, max(steps, 1))
            for _ in range(steps):
                loss = _bn_loss(model, layers, x)
                (x.grad,) = torch.autograd.grad(loss, [x])
                opt.step()
                sched.step()
                if on_step is not None:
                    on_step()
            out[start : start + CHUNK] = x.detach().cpu()
    return out


def _model_digest(model: nn.Module) -> str:
    """Hash of the weights and buffers: the distilled images are a function of them."""
    h = hashlib.sha256()
    for name, t in model.state_dict().items():
        h.update(name.encode())
        if not isinstance(t, torch.Tensor):
            h.update(repr(t).encode())
            continue
        t = t.detach().cpu().contiguous()
        h.update(f"{t.dtype}{tuple(t.shape)}".encode())
        try:
            h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
        except (RuntimeError, TypeError):  # quantized or exotic tensors
            h.update(repr(t.tolist()).encode())
    return h.hexdigest()


def cache_key(
    model: nn.Module, n: int, input_size: tuple[int, int, int], seed: int, steps: int, lr: float
) -> str:
    """File-name-safe identity of one distillation (weights + every setting that matters)."""
    spec = f"{_VERSION}|{_model_digest(model)}|{n}|{tuple(input_size)}|{seed}|{steps}|{lr}"
    return hashlib.sha256(spec.encode()).hexdigest()[:24]


def macs_per_image(model: nn.Module, input_size: tuple[int, int, int]) -> float:
    """Multiply-accumulates of one forward pass of one image, over convs and linears."""
    total = 0.0

    def hook(module: nn.Module, args: tuple[torch.Tensor, ...], out: torch.Tensor) -> None:
        nonlocal total
        if isinstance(module, nn.Conv2d):
            kh, kw = module.kernel_size
            total += out.numel() * (module.in_channels // module.groups) * kh * kw
        elif isinstance(module, nn.Linear):
            total += out.numel() * module.in_features

    handles = [m.register_forward_hook(hook) for m in model.modules()
               if isinstance(m, nn.Conv2d | nn.Linear)]  # fmt: skip
    try:
        with _eval_mode(model), torch.no_grad():
            model(torch.zeros((1, *input_size), device=_device(model)))
    finally:
        for h in handles:
            h.remove()
    return total


def default_steps(model: nn.Module, n: int, input_size: tuple[int, int, int]) -> int:
    """`DEFAULT_STEPS`, fewer for a network so large that they would exceed `STEP_BUDGET_GMAC`."""
    gmacs = macs_per_image(model, input_size) / 1e9
    fit = int(STEP_BUDGET_GMAC / max(n * gmacs, 1e-9))
    return max(MIN_STEPS, min(DEFAULT_STEPS, fit))


def distilled_images(
    model: nn.Module,
    n: int,
    input_size: tuple[int, int, int],
    *,
    seed: int = 0,
    steps: int | None = None,
    lr: float = DEFAULT_LR,
    name: str = "model",
) -> tuple[torch.Tensor, str]:
    """`distill`, through the user cache (``steps`` None: `default_steps`); returns the images
    and their cache key. Distilling shows its progress (`haq.progress`), naming ``name``."""
    if not bn_layers(model):
        raise HaqError(NO_BN_HINT)
    if steps is None:
        steps = default_steps(model, n, input_size)
    key = cache_key(model, n, input_size, seed, steps, lr)
    path = cache_dir() / "distilled" / f"{key}.pt"
    if path.is_file():
        try:
            x = torch.load(path, map_location="cpu", weights_only=True)
            if isinstance(x, torch.Tensor) and tuple(x.shape) == (n, *input_size):
                return x, key
        except Exception:  # a corrupt cache entry is recomputed, never fatal
            pass
    from haq.progress import task

    chunks = -(-n // CHUNK)
    step = f"distilling {n} data-free images from {name}'s BatchNorm statistics ({steps} steps)"
    with task(step, chunks * steps, "steps", enabled=steps > 0) as t:
        x = distill(model, n, input_size, seed=seed, steps=steps, lr=lr, on_step=t.advance)
    buf = io.BytesIO()
    torch.save(x, buf)
    atomic_write_bytes(path, buf.getvalue())
    return x, key
