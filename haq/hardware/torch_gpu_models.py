"""Whole networks timed with torch on a GPU (CPU fallback for testing), beside the per-layer
rows of `haq.hardware.torch_gpu`: what a table's sum of layers is checked against."""

from __future__ import annotations

import copy

import torch

from haq.hardware.gpu_timing import Timing, TimingSettings, time_callable
from haq.hardware.torch_gpu import FLOAT_DTYPES, FLOAT_PRECISIONS

E2E_PRECISIONS = FLOAT_PRECISIONS  # whole networks run in the float precisions only


def prepare_model(
    model: torch.nn.Module, precision: str, device: torch.device | str, fold_bn: bool
) -> tuple[torch.nn.Module, str]:
    """A copy of ``model`` for an end-to-end run at ``precision`` and a label of what it is.

    ``fold_bn`` folds every Conv-BatchNorm pair with torch.fx (as a deployment would); if the
    model does not trace, the copy keeps its BatchNorms and the label says so.
    """
    device = torch.device(device)
    dtype = FLOAT_DTYPES[precision]
    label = "eager"
    net = copy.deepcopy(model).eval()
    if fold_bn:
        try:
            from torch.fx.experimental.optimization import fuse

            net = fuse(net)
            label = "eager+bn-folded(fx)"
        except Exception as exc:
            label = f"eager (bn fold failed: {type(exc).__name__})"
    channels_last = dtype in (torch.bfloat16, torch.float16)
    net = net.to(device=device, dtype=dtype)
    if channels_last:
        net = net.to(memory_format=torch.channels_last)
    layout = "nhwc" if channels_last else "nchw"
    return net, f"{label}-{precision}-{layout}"


def measure_model(
    net: torch.nn.Module,
    input_shape: tuple[int, ...],
    precision: str,
    device: torch.device | str,
    settings: TimingSettings | None = None,
) -> Timing:
    """Time one forward of a `prepare_model` network on a random batch of ``input_shape``."""
    settings = settings or TimingSettings.e2e()
    device = torch.device(device)
    dtype = FLOAT_DTYPES[precision]
    x = torch.randn(*input_shape, device=device, dtype=dtype)
    if dtype in (torch.bfloat16, torch.float16) and x.dim() == 4:
        x = x.contiguous(memory_format=torch.channels_last)
    tf32 = {"fp32": False, "tf32": True}.get(precision)
    return time_callable(lambda: net(x), device, settings, tf32=tf32)
