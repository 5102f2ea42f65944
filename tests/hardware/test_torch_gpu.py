"""The torch GPU latency harness, exercised on CPU (the CUDA-graph path needs a GPU); the job
runner around it: tests/hardware/test_torch_gpu_jobs.py."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
import torch
import torch.nn.functional as F

from haq.hardware import torch_gpu as tg
from haq.hardware import torch_gpu_models as tgm
from haq.hardware.tables import COLUMNS, SIGNATURE_COLUMNS, read_table, write_table

QUICK = tg.TimingSettings.quick()


def _sig(kind: str = "conv", cin: int = 3, cout: int = 8, k: int = 3, s: int = 1, hw: int = 8,
         groups: int = 1, batch: int = 1) -> dict:  # fmt: skip
    if kind == "linear":
        return dict(kind=kind, in_channels=cin, out_channels=cout, kernel_h=1, kernel_w=1,
                    stride_h=1, stride_w=1, groups=1, in_h=1, in_w=1, out_h=1, out_w=1,
                    batch=batch)  # fmt: skip
    out = (hw + 2 * ((k - 1) // 2) - k) // s + 1
    return dict(kind=kind, in_channels=cin, out_channels=cout, kernel_h=k, kernel_w=k,
                stride_h=s, stride_w=s, groups=groups, in_h=hw, in_w=hw, out_h=out, out_w=out,
                batch=batch)  # fmt: skip


def test_conv_padding() -> None:
    assert tg.conv_padding(_sig(k=3, s=1, hw=8)) == (1, 1)
    assert tg.conv_padding(_sig(k=7, s=2, hw=224)) == (3, 3)
    assert tg.conv_padding(_sig(k=1, s=2, hw=56)) == (0, 0)
    assert tg.conv_padding({**_sig(k=3, hw=8), "out_h": 6, "out_w": 6}) == (0, 0)  # valid conv
    with pytest.raises(ValueError, match="no padding"):
        tg.conv_padding({**_sig(k=3, hw=8), "out_h": 20})


@pytest.mark.parametrize(("cin", "k", "s", "hw"), [(3, 3, 1, 9), (8, 3, 2, 10), (8, 1, 2, 7),
                                                   (8, 1, 1, 5), (3, 7, 2, 15)])  # fmt: skip
def test_im2col_matches_conv(cin: int, k: int, s: int, hw: int) -> None:
    torch.manual_seed(0)
    x, w = torch.randn(2, cin, hw, hw), torch.randn(6, cin, k, k)
    ref = F.conv2d(x, w, None, s, (k - 1) // 2)
    oh, ow = ref.shape[-2:]
    cols = tg.im2col_nhwc(x.permute(0, 2, 3, 1).contiguous(), (k, k), (s, s),
                          ((k - 1) // 2,) * 2, (oh, ow))  # fmt: skip
    out = (cols @ w.reshape(6, -1).t()).reshape(2, oh, ow, 6).permute(0, 3, 1, 2)
    torch.testing.assert_close(out, ref, rtol=1e-4, atol=1e-4)
    # byte dtypes go through the same views/copies (int8 activations, float8 as uint8)
    q = torch.randint(-5, 5, (2, hw, hw, cin), dtype=torch.int8)
    cols8 = tg.im2col_nhwc(q, (k, k), (s, s), ((k - 1) // 2,) * 2, (oh, ow))
    assert cols8.dtype == torch.int8 and cols8.shape == (2 * oh * ow, cin * k * k)


def test_gemm_shape_and_kinds() -> None:
    assert tg.gemm_shape(_sig(cin=16, k=1, hw=8, batch=2)) == tg.Gemm(128, 16, 8, "view")
    assert tg.gemm_shape(_sig(cin=16, k=1, s=2, hw=8)).im2col == "strided-slice"
    assert tg.gemm_shape(_sig(cin=3, k=3, hw=8)) == tg.Gemm(64, 27, 8, "im2col")
    assert tg.gemm_shape(_sig("linear", cin=64, cout=10, batch=4)) == tg.Gemm(4, 64, 10, "none")
    dw = _sig("dwconv", cin=8, cout=8, groups=8)
    with pytest.raises(tg.Unsupported, match="depthwise or grouped"):
        tg.build_op(dw, "w8a8", "cpu")
    assert not tg.applicable("dwconv", "w8a8") and not tg.applicable("gconv", "fp8")
    assert tg.applicable("dwconv", "fp16") and tg.applicable("linear", "w8a8-gemm")


def test_cpu_probe() -> None:
    reasons = tg.probe("cpu")
    assert set(reasons) == set(tg.PRECISIONS)
    assert reasons["tf32"] and reasons["fp32"] is None
    # torch._int_mm has a CPU kernel in recent torch
    assert reasons["w8a8"] is None


@pytest.mark.parametrize("kind", ["conv", "linear"])
def test_measure_rows_follow_schema(kind: str, tmp_path: Path) -> None:
    sig = _sig(kind, cin=3 if kind == "conv" else 16, cout=8, hw=8)
    reasons = tg.probe("cpu")
    rows = []
    for precision in tg.PRECISIONS:
        if reasons[precision]:
            with pytest.raises(tg.Unsupported):
                tg.build_op(sig, precision, "cpu")
            continue
        row = tg.measure(sig, precision, "cpu", QUICK)
        assert list(row) == COLUMNS + ["reps", "method"]
        assert {k: row[k] for k in SIGNATURE_COLUMNS} == sig
        assert row["precision"] == precision and row["method"] == "perf_counter"
        assert 0 < row["p10_us"] <= row["latency_us"] <= row["p90_us"]
        assert row["runs"] == QUICK.samples and row["reps"] >= 1 and row["threads"] >= 1
        rows.append(row)
    kernels = {r["precision"]: r["kernel"] for r in rows}
    assert "w8a8" in kernels and "w8a8-gemm" in kernels
    if kind == "conv":  # K = 3*3*3 = 27 must be padded for _int_mm
        assert "im2col" in kernels["w8a8"] and "padded K 27->32" in kernels["w8a8-gemm"]
    else:  # batch-1 linear: M = 1 must be padded past 16
        assert "padded M 1->32" in kernels["w8a8"]
    path = tmp_path / "layers.csv"
    write_table(pd.DataFrame(rows), path, meta={"provenance": "measured"})
    frame = read_table(path)
    assert len(frame) == len(rows) and list(frame.columns[: len(COLUMNS)]) == COLUMNS


def test_int8_whole_layer_output() -> None:
    sig = _sig(cin=16, cout=24, k=3, s=2, hw=9, batch=2)
    op = tg.build_op(sig, "w8a8", "cpu")
    out = op.fn()
    assert out.dtype == torch.bfloat16 and out.shape == (2 * 5 * 5, 24)


def test_fp8_or_clean_skip() -> None:
    try:
        tg.resolve_scaled_mm("cpu")
    except tg.Unsupported as exc:
        pytest.skip(f"no float8 _scaled_mm here: {exc}")
    op = tg.build_op(_sig(cin=3, cout=10, k=3, hw=8), "fp8", "cpu")
    out = op.fn()
    assert out.shape == (64, 10) and "padded K 27->32" in op.kernel


def test_e2e_cpu() -> None:
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.BatchNorm2d(8),
                              torch.nn.ReLU()).eval()  # fmt: skip
    prepared, label = tgm.prepare_model(net, "fp32", "cpu", fold_bn=True)
    assert "bn-folded" in label
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in prepared.modules())
    timing = tgm.measure_model(prepared, (1, 3, 8, 8), "fp32", "cpu", tg.TimingSettings.e2e(True))
    assert timing.median_us > 0 and timing.method == "perf_counter"
