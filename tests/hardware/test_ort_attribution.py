"""Attribution of ORT's profiled nodes: nodes ORT makes itself keep their time."""

from __future__ import annotations

import onnx
import pytest
import torch
from torch import nn

from haq.export.onnx_export import export_onnx
from haq.hardware.ort.attribution import Attributor, profile_nodes
from haq.hardware.ort.target import class_config
from haq.quant import Quantizer


def _hardswish_net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 16, 3, padding=1), nn.BatchNorm2d(16), nn.Hardswish(),
        nn.Conv2d(16, 16, 3, padding=1, groups=16), nn.BatchNorm2d(16), nn.Hardswish(),
        nn.Conv2d(16, 8, 1),
    ).eval()  # fmt: skip


@pytest.mark.parametrize("kernel", ["int8", "fp32"])
def test_every_profiled_node_is_attributed(kernel: str) -> None:
    # in an int8 graph ORT inlines HardSwish as nameless HardSigmoid + Mul nodes, which its
    # profile calls "<op>_<index>": they must still land in a layer or a boundary
    x = torch.randn(1, 3, 16, 16)
    q = Quantizer(_hardswish_net(), x, calibration_images=torch.randn(4, 3, 16, 16))
    data, _ = export_onnx(q, class_config(q.layer_names, [kernel] * len(q.layer_names)))
    prof = profile_nodes(data, threads=1, warmup=1, runs=2)
    attr = Attributor(onnx.load_model_from_string(data), prof.optimized, q.layer_names)
    unassigned = [node for node in prof.times if attr.assign(node) is None]
    assert unassigned == []
    if kernel == "int8":
        assert any(op == "HardSigmoid" for op in prof.ops.values())
