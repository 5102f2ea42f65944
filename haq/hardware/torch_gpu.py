"""Per-layer kernel latency measurement with torch on a GPU (CPU fallback for testing): the
ops each precision runs, built from a signature, and the row they give (the timing itself:
`haq.hardware.gpu_timing`; whole networks: `haq.hardware.torch_gpu_models`).

One latency-table row is one layer signature (`haq.hardware.tables.signature`) at one batch
and one precision. The harness rebuilds the layer from its signature alone (random data: the
timing does not depend on the values), runs it the way a simple torch deployment would, and
times it:

* CUDA: warm-up on a side stream (cuDNN autotuning happens here), capture ``reps`` back-to-back
  calls in one CUDA graph, replay the graph ``samples`` times between CUDA events; the row
  holds the median, p10 and p90 of the per-call time over those replays. The L2 cache is not
  flushed between calls and clocks are not locked.
* CPU: the same statistics from ``time.perf_counter`` loops (for tests and a smoke run).

Precisions (all layers take a bias, as a BatchNorm-folded deployment does; no activation):

* ``fp32`` / ``tf32``: ``F.conv2d`` / ``F.linear`` in float32, NCHW, with TF32 off / on.
* ``bf16`` / ``fp16``: the same in half precision, convolutions channels_last.
* ``w8a8``: the whole int8 layer as plain torch runs it: per-tensor static activation
  quantisation of the bf16 NHWC input, im2col (a view for 1x1 stride-1 convs), padding to
  ``torch._int_mm``'s shape rules (M > 16, K and N multiples of 8), ``torch._int_mm``, and the
  per-channel dequantisation + bias back to bf16. ``w8a8-gemm`` is the bare ``_int_mm`` on the
  padded operands. Depthwise and grouped convolutions have no int8 kernel in torch: no row
  (`Unsupported`), the cost model must charge their fallback.
* ``fp8`` / ``fp8-gemm``: the same structure with float8 e4m3 operands and
  ``torch._scaled_mm`` (tensor-wise scales, bf16 output; K and N multiples of 16), where the
  device has it (sm89+).

The ``kernel`` column says what really ran, including every padding. Only torch is imported,
so the module loads on machines without CUDA.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from haq.hardware.gpu_timing import (
    TimingSettings,
    first_line,
    is_cuda,
    tf32_mode,
    time_callable,
)

FLOAT_PRECISIONS = ("fp32", "tf32", "bf16", "fp16")
INT8_PRECISIONS = ("w8a8", "w8a8-gemm")
FP8_PRECISIONS = ("fp8", "fp8-gemm")
PRECISIONS = FLOAT_PRECISIONS + INT8_PRECISIONS + FP8_PRECISIONS
FP8_MAX = 448.0  # largest finite float8 e4m3fn value
ACT_SCALE = 0.05  # static per-tensor activation scale (the value does not change the timing)

FLOAT_DTYPES = {
    "fp32": torch.float32,
    "tf32": torch.float32,
    "bf16": torch.bfloat16,
    "fp16": torch.float16,
}

# Why no int8/fp8 row exists for these kinds (copied into the table's metadata).
NO_INTEGER_KERNEL = (
    "torch has no int8/fp8 depthwise or grouped convolution kernel (_int_mm/_scaled_mm need "
    "a dense GEMM); no w8a8/fp8 rows are written for dwconv/gconv, the cost model must charge "
    "their fallback (a float kernel)"
)


class Unsupported(Exception):
    """This precision has no kernel for this signature on this device: write no row."""


@dataclass
class Op:
    """A ready-to-run layer: ``fn()`` launches it; ``kernel`` says what runs."""

    fn: Callable[[], Any]
    kernel: str
    tf32: bool | None = None  # TF32 setting the op must be warmed up and captured under


# -------------------------------------------------------------------------- layer shapes


def conv_padding(sig: dict[str, Any]) -> tuple[int, int]:
    """The symmetric padding that turns in_hw into out_hw (signatures do not store it).

    ``(k - 1) // 2`` ("same"-style, what torchvision uses) when it fits, else the smallest
    padding that does; dilation is assumed to be 1.
    """
    pads = []
    for size, k, s, out in (
        (sig["in_h"], sig["kernel_h"], sig["stride_h"], sig["out_h"]),
        (sig["in_w"], sig["kernel_w"], sig["stride_w"], sig["out_w"]),
    ):
        fits = [p for p in range(k + 1) if (size + 2 * p - k) // s + 1 == out]
        if not fits:
            raise ValueError(
                f"no padding maps {size} to {out} with kernel {k} stride {s} (dilated conv?)"
            )
        pads.append((k - 1) // 2 if (k - 1) // 2 in fits else fits[0])
    return pads[0], pads[1]


def _round_up(n: int, m: int) -> int:
    return -(-n // m) * m


@dataclass(frozen=True)
class Gemm:
    """The GEMM a conv/linear layer becomes: (M x K) @ (K x N), plus the im2col it needs."""

    m: int
    k: int
    n: int
    im2col: str  # "none" (linear), "view" (1x1 stride 1), "strided-slice", "im2col"


def gemm_shape(sig: dict[str, Any]) -> Gemm:
    b = int(sig["batch"])
    if sig["kind"] == "linear":
        return Gemm(b * int(sig["in_h"]), int(sig["in_channels"]), int(sig["out_channels"]), "none")
    if sig["kind"] != "conv" or int(sig["groups"]) != 1:
        raise Unsupported(NO_INTEGER_KERNEL)
    kh, kw = int(sig["kernel_h"]), int(sig["kernel_w"])
    ph, pw = conv_padding(sig)
    if kh == kw == 1 and ph == pw == 0:
        stride1 = sig["stride_h"] == sig["stride_w"] == 1
        mode = "view" if stride1 else "strided-slice"
    else:
        mode = "im2col"
    m = b * int(sig["out_h"]) * int(sig["out_w"])
    return Gemm(m, int(sig["in_channels"]) * kh * kw, int(sig["out_channels"]), mode)


def im2col_nhwc(
    x: torch.Tensor,
    kernel: tuple[int, int],
    stride: tuple[int, int],
    padding: tuple[int, int],
    out_hw: tuple[int, int],
) -> torch.Tensor:
    """(N, H, W, C) -> (N*OH*OW, C*KH*KW), column order (C, KH, KW) like a conv weight.

    Works for any dtype (views and copies only), so int8 and float8 (viewed as uint8) too.
    A 1x1 stride-1 unpadded conv is a free view.
    """
    n, _, _, c = x.shape
    (kh, kw), (sh, sw), (ph, pw), (oh, ow) = kernel, stride, padding, out_hw
    if kh == kw == 1 and ph == pw == 0:
        if sh == sw == 1:
            return x.reshape(n * oh * ow, c)
        return x[:, ::sh, ::sw, :][:, :oh, :ow].reshape(n * oh * ow, c)
    if ph or pw:
        x = F.pad(x, (0, 0, pw, pw, ph, ph))
    cols = x.unfold(1, kh, sh).unfold(2, kw, sw)[:, :oh, :ow]  # (N, OH, OW, C, KH, KW)
    return cols.reshape(n * oh * ow, c * kh * kw)


# -------------------------------------------------------------------------------- builders


def _conv_backend(x: torch.Tensor, w: torch.Tensor, b: torch.Tensor | None, sig, pad) -> str:
    """The aten convolution backend torch picks for these operands ("Cudnn", ...)."""
    try:
        backend = torch._C._select_conv_backend(
            x, w, b, [sig["stride_h"], sig["stride_w"]], list(pad), [1, 1], False, [0, 0],
            int(sig["groups"]),
        )  # fmt: skip
        return str(backend).rsplit(".", 1)[-1]
    except Exception:
        return "aten.conv2d"


def _float_op(sig: dict[str, Any], precision: str, device: torch.device) -> Op:
    dtype = FLOAT_DTYPES[precision]
    tf32 = {"fp32": False, "tf32": True}.get(precision)
    b = int(sig["batch"])
    cin, cout, groups = int(sig["in_channels"]), int(sig["out_channels"]), int(sig["groups"])
    bias = torch.randn(cout, device=device, dtype=dtype)
    if sig["kind"] == "linear":
        x = torch.randn(b * int(sig["in_h"]), cin, device=device, dtype=dtype)
        w = torch.randn(cout, cin, device=device, dtype=dtype) / math.sqrt(cin)
        lib = "cublas" if is_cuda(device) else "aten-cpu"
        return Op(lambda: F.linear(x, w, bias), f"{lib}-linear-{precision}", tf32)
    kh, kw = int(sig["kernel_h"]), int(sig["kernel_w"])
    pad = conv_padding(sig)
    stride = (int(sig["stride_h"]), int(sig["stride_w"]))
    channels_last = dtype in (torch.bfloat16, torch.float16)
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    x = torch.randn(b, cin, int(sig["in_h"]), int(sig["in_w"]), device=device, dtype=dtype)
    x = x.contiguous(memory_format=fmt)
    w = torch.randn(cout, cin // groups, kh, kw, device=device, dtype=dtype)
    w = (w / math.sqrt(cin // groups * kh * kw)).contiguous(memory_format=fmt)
    with tf32_mode(tf32 if is_cuda(device) else None):
        backend = _conv_backend(x, w, bias, sig, pad)
    layout = "nhwc" if channels_last else "nchw"

    def fn() -> torch.Tensor:
        return F.conv2d(x, w, bias, stride, pad, 1, groups)

    return Op(fn, f"{backend}-{precision}-{layout}", tf32)


def _pad_notes(*dims: tuple[str, int, int]) -> list[str]:
    """["padded K 27->32", ...] for every (name, size, padded size) that changed."""
    return [f"padded {name} {size}->{padded}" for name, size, padded in dims if padded != size]


def _activation_and_rows(
    sig: dict[str, Any], g: Any, batch: int, device: Any
) -> tuple[torch.Tensor, Callable[[torch.Tensor], torch.Tensor]]:
    """The bf16 input a quantized GEMM layer receives (2-D for a Linear; channels_last seen as
    NHWC for a conv: what the previous layer hands over) and the function that turns its
    quantized version into GEMM rows (identity, or im2col)."""
    if sig["kind"] == "linear":
        return torch.randn(g.m, g.k, device=device, dtype=torch.bfloat16), lambda q: q
    kernel = (int(sig["kernel_h"]), int(sig["kernel_w"]))
    stride = (int(sig["stride_h"]), int(sig["stride_w"]))
    pad, out_hw = conv_padding(sig), (int(sig["out_h"]), int(sig["out_w"]))
    x = torch.randn(
        batch, int(sig["in_h"]), int(sig["in_w"]), g.k // (kernel[0] * kernel[1]),
        device=device, dtype=torch.bfloat16,
    )  # fmt: skip
    return x, lambda q: im2col_nhwc(q, kernel, stride, pad, out_hw)


def _int8_op(
    sig: dict[str, Any],
    device: torch.device,
    whole: bool,
    row_major_b: bool = False,
    cast_dequant: bool = False,
) -> Op:
    g = gemm_shape(sig)
    mp = g.m if g.m > 16 else 32  # _int_mm: M > 16
    kp, np_ = _round_up(g.k, 8), _round_up(g.n, 8)  # _int_mm: K, N multiples of 8
    notes = _pad_notes(("M", g.m, mp), ("K", g.k, kp), ("N", g.n, np_))
    w = torch.zeros(np_, kp, dtype=torch.int8, device=device)
    w[: g.n, : g.k] = torch.randint(-127, 128, (g.n, g.k), dtype=torch.int8, device=device)
    wt = w.t()  # (K, N) column-major: the int8 tensor-core friendly "TN" layout
    if row_major_b:  # fallback should a cuBLAS version reject the column-major operand
        wt = wt.contiguous()
        notes.append("row-major B")
    suffix = f"({', '.join(notes)})" if notes else ""
    if not whole:
        a = torch.randint(-127, 128, (mp, kp), dtype=torch.int8, device=device)
        return Op(lambda: torch._int_mm(a, wt), f"_int_mm{suffix}")

    b = int(sig["batch"])
    inv_scale = 1.0 / ACT_SCALE
    out_scale = torch.rand(g.n, device=device) * 1e-3 + 1e-4  # act scale x per-channel w scale
    bias = torch.randn(g.n, device=device)
    pad_a = (0, kp - g.k, 0, mp - g.m)
    x, to_rows = _activation_and_rows(sig, g, b, device)

    def fn() -> torch.Tensor:
        q = torch.round(x * inv_scale).clamp_(-128, 127).to(torch.int8)
        a = to_rows(q)
        if any(pad_a):
            a = F.pad(a, pad_a)
        acc = torch._int_mm(a, wt)
        if mp != g.m or np_ != g.n:
            acc = acc[: g.m, : g.n]
        if cast_dequant:
            return (acc.to(torch.float32) * out_scale + bias).to(torch.bfloat16)
        return torch.addcmul(bias, acc, out_scale).to(torch.bfloat16)

    stage = {"none": "", "view": "+view", "strided-slice": "+slice", "im2col": "+im2col"}[g.im2col]
    dequant = "dequant(cast,mul,add,cast)" if cast_dequant else "dequant(addcmul,cast)"
    return Op(fn, f"quant{stage}+_int_mm+{dequant}{suffix}")


# float8 --------------------------------------------------------------------------------

_SCALED_MM: dict[str, Any] = {}  # device type -> (call, description) or error text


def _scaled_mm_variants() -> list[tuple[str, Callable[..., torch.Tensor]]]:
    """Ways to call torch._scaled_mm across torch versions, best first.

    torch 2.1-2.3 returned ``(out, amax)``, later versions the tensor; ``use_fast_accum`` and
    ``bias`` are keyword arguments in every version that has them.
    """

    def first(out: Any) -> torch.Tensor:
        return out[0] if isinstance(out, tuple) else out

    def fast_bias(a, b, sa, sb, bias):
        return first(
            torch._scaled_mm(
                a, b, scale_a=sa, scale_b=sb, bias=bias, out_dtype=torch.bfloat16,
                use_fast_accum=True,
            )
        )  # fmt: skip

    def fast(a, b, sa, sb, bias):
        out = first(
            torch._scaled_mm(a, b, scale_a=sa, scale_b=sb, out_dtype=torch.bfloat16,
                             use_fast_accum=True)
        )  # fmt: skip
        return out if bias is None else out + bias

    def plain(a, b, sa, sb, bias):
        out = first(torch._scaled_mm(a, b, scale_a=sa, scale_b=sb, out_dtype=torch.bfloat16))
        return out if bias is None else out + bias

    def positional(a, b, sa, sb, bias):
        out = first(torch._scaled_mm(a, b, sa, sb, out_dtype=torch.bfloat16))
        return out if bias is None else out + bias

    # name: "<the GEMM call>[+<how the bias is added>]"; the bare GEMM row uses the first part
    return [
        ("_scaled_mm(e4m3, tensorwise, fast_accum)[bias in epilogue]", fast_bias),
        ("_scaled_mm(e4m3, tensorwise, fast_accum)+bias", fast),
        ("_scaled_mm(e4m3, tensorwise)+bias", plain),
        ("_scaled_mm(e4m3, tensorwise, positional scales)+bias", positional),
    ]


def resolve_scaled_mm(device: torch.device | str) -> tuple[Callable[..., torch.Tensor], str]:
    """The first `_scaled_mm_variants` call that works on ``device``; Unsupported if none."""
    device = torch.device(device)
    key = device.type
    if key not in _SCALED_MM:
        if not hasattr(torch, "float8_e4m3fn") or not hasattr(torch, "_scaled_mm"):
            _SCALED_MM[key] = "this torch has no float8_e4m3fn / _scaled_mm"
        elif is_cuda(device) and torch.cuda.get_device_capability(device) < (8, 9):
            cap = torch.cuda.get_device_capability(device)
            _SCALED_MM[key] = f"_scaled_mm needs sm89+, device is sm{cap[0]}{cap[1]}"
        else:
            errors = []
            a = torch.randn(32, 32, device=device).to(torch.float8_e4m3fn)
            b = torch.randn(32, 32, device=device).to(torch.float8_e4m3fn).t()
            one = torch.ones((), device=device)
            bias = torch.zeros(32, device=device, dtype=torch.bfloat16)
            for name, call in _scaled_mm_variants():
                try:
                    out = call(a, b, one, one, bias)
                    if tuple(out.shape) != (32, 32):
                        raise RuntimeError(f"unexpected output shape {tuple(out.shape)}")
                    _SCALED_MM[key] = (call, name)
                    break
                except Exception as exc:  # noqa: BLE001 - probe: any failure means "next"
                    errors.append(f"{name}: {type(exc).__name__}: {first_line(exc)}")
            else:
                _SCALED_MM[key] = "no _scaled_mm call worked: " + " | ".join(errors)
    found = _SCALED_MM[key]
    if isinstance(found, str):
        raise Unsupported(found)
    return found


def _fp8_op(sig: dict[str, Any], device: torch.device, whole: bool, pad_m: bool = False) -> Op:
    call, call_name = resolve_scaled_mm(device)
    g = gemm_shape(sig)
    kp, np_ = _round_up(g.k, 16), _round_up(g.n, 16)  # _scaled_mm: K, N multiples of 16
    # M is free since torch 2.2; older cuBLASLt builds wanted it a multiple of 16 too
    mp = _round_up(g.m, 16) if pad_m else g.m
    notes = _pad_notes(("M", g.m, mp), ("K", g.k, kp), ("N", g.n, np_))
    suffix = f"({', '.join(notes)})" if notes else ""
    f8 = torch.float8_e4m3fn
    w = torch.zeros(np_, kp, device=device)
    w[: g.n, : g.k] = torch.randn(g.n, g.k, device=device)
    wt = w.to(f8).t()  # (K, N) column-major, as _scaled_mm requires
    sa = torch.full((), ACT_SCALE, device=device)
    sb = torch.full((), 0.01, device=device)
    bias = torch.randn(np_, device=device, dtype=torch.bfloat16)
    gemm_label = call_name.split("+")[0].split("[")[0]
    if not whole:
        a = torch.randn(mp, kp, device=device).to(f8)
        return Op(lambda: call(a, wt, sa, sb, None), f"{gemm_label}{suffix}")

    b = int(sig["batch"])
    inv_scale = 1.0 / ACT_SCALE
    x, to_rows = _activation_and_rows(sig, g, b, device)

    def fn() -> torch.Tensor:
        q = (x * inv_scale).clamp_(-FP8_MAX, FP8_MAX).to(f8)
        a = to_rows(q.view(torch.uint8))  # byte view: pad/copy kernels exist for every dtype
        if kp != g.k or mp != g.m:
            a = F.pad(a, (0, kp - g.k, 0, mp - g.m))
        out = call(a.view(f8), wt, sa, sb, bias)
        return out[: g.m, : g.n] if np_ != g.n or mp != g.m else out

    stage = {"none": "", "view": "+view", "strided-slice": "+slice", "im2col": "+im2col"}[g.im2col]
    slice_note = "+slice N" if np_ != g.n else ""
    return Op(fn, f"quant-e4m3{stage}+{call_name}{slice_note}{suffix}")


def build_op(sig: dict[str, Any], precision: str, device: torch.device | str) -> Op:
    """Allocate the operands of ``sig`` on ``device`` and return the op for ``precision``.

    Raises `Unsupported` when no kernel exists (int8/fp8 depthwise, fp8 without sm89, ...).
    """
    device = torch.device(device)
    if precision in FLOAT_PRECISIONS:
        if precision == "tf32" and not is_cuda(device):
            raise Unsupported("TF32 is a CUDA tensor-core mode; the CPU has none")
        return _float_op(sig, precision, device)
    if precision in INT8_PRECISIONS:
        whole = precision == "w8a8"
        return _first_working(
            lambda: _int8_op(sig, device, whole),
            lambda: _int8_op(sig, device, whole, cast_dequant=True),
            lambda: _int8_op(sig, device, whole, row_major_b=True, cast_dequant=True),
        )
    if precision in FP8_PRECISIONS:
        whole = precision == "fp8"
        return _first_working(
            lambda: _fp8_op(sig, device, whole),
            lambda: _fp8_op(sig, device, whole, pad_m=True),
        )
    raise ValueError(f"unknown precision {precision!r}; one of {PRECISIONS}")


def _first_working(*builders: Callable[[], Op]) -> Op:
    """The first op that builds and runs once eagerly; the first error if none does."""
    first_error: Exception | None = None
    for build in builders:
        try:
            op = build()
            with torch.no_grad():
                op.fn()
            return op
        except Unsupported:
            raise
        except RuntimeError as exc:
            first_error = first_error or exc
    assert first_error is not None
    raise first_error


def applicable(kind: str, precision: str) -> bool:
    """Whether a row can exist at all (dwconv/gconv have float rows only)."""
    return precision in FLOAT_PRECISIONS or kind in ("conv", "linear")


def measure(
    sig: dict[str, Any],
    precision: str,
    device: torch.device | str,
    settings: TimingSettings | None = None,
) -> dict[str, Any]:
    """One latency-table row (signature + MEASURE_COLUMNS + ``reps``, ``method``)."""
    settings = settings or TimingSettings()
    device = torch.device(device)
    with torch.no_grad():
        op = build_op(sig, precision, device)
        kernel = op.kernel
        timing = time_callable(op.fn, device, settings, tf32=op.tf32)
    del op
    return {
        **sig,
        "precision": precision,
        "kernel": kernel,
        "latency_us": round(timing.median_us, 3),
        "p10_us": round(timing.p10_us, 3),
        "p90_us": round(timing.p90_us, 3),
        "runs": timing.runs,
        "threads": 1 if is_cuda(device) else torch.get_num_threads(),
        "reps": timing.reps,
        "method": timing.method,
    }


# ---------------------------------------------------------------------------- capabilities


def probe(device: torch.device | str) -> dict[str, str | None]:
    """For every precision: None if it can run on ``device``, else why not (for the meta)."""
    device = torch.device(device)
    out: dict[str, str | None] = dict.fromkeys(PRECISIONS)
    if not is_cuda(device):
        out["tf32"] = "TF32 is a CUDA tensor-core mode; the CPU has none"
    else:
        cap = torch.cuda.get_device_capability(device)
        if cap < (8, 0):
            out["tf32"] = f"TF32 needs sm80+, device is sm{cap[0]}{cap[1]}"
        if not torch.cuda.is_bf16_supported():
            out["bf16"] = "torch.cuda.is_bf16_supported() is False"
    try:
        a = torch.randint(-8, 8, (32, 32), dtype=torch.int8, device=device)
        b = torch.randint(-8, 8, (32, 32), dtype=torch.int8, device=device)
        torch._int_mm(a, b.t())
        if is_cuda(device):
            torch.cuda.synchronize(device)
    except Exception as exc:
        reason = f"torch._int_mm failed: {type(exc).__name__}: {first_line(exc)}"
        out["w8a8"] = out["w8a8-gemm"] = reason
    try:
        resolve_scaled_mm(device)
    except Unsupported as exc:
        out["fp8"] = out["fp8-gemm"] = str(exc)
    return out
