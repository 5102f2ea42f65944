"""Sanity checks of the analytic Bit Fusion / BISMO simulators and their generated profiles."""

from __future__ import annotations

import dataclasses
import warnings
from collections import defaultdict
from pathlib import Path

import pandas as pd
import pytest
import yaml

from haq.hardware.profile import load_profile
from haq.hardware.simulators import TABLE_BITS, TARGETS, Gemm, bismo, bitfusion
from haq.hardware.simulators.base import dram_traffic_bytes, packed_k_tiles
from haq.hardware.tables import SIGNATURE_COLUMNS, read_table

ROOT = Path(__file__).resolve().parents[2]
PROFILES = ROOT / "hardware_profiles"


def _sig(kind: str, cin: int, cout: int, k: int, stride: int, groups: int, hw: int) -> dict:
    out = (hw + 2 * (k // 2) - k) // stride + 1
    return {
        "kind": kind, "in_channels": cin, "out_channels": cout, "kernel_h": k, "kernel_w": k,
        "stride_h": stride, "stride_w": stride, "groups": groups, "in_h": hw, "in_w": hw,
        "out_h": out, "out_w": out, "batch": 1,
    }  # fmt: skip


# A compute-heavy 3x3 conv (ResNet-50 stage 3), a depthwise conv, and a batch-1 classifier.
CONV = Gemm.from_signature(_sig("conv", 256, 256, 3, 1, 1, 14))
DW = Gemm.from_signature(_sig("dwconv", 144, 144, 3, 1, 144, 56))
FC = Gemm.from_signature(
    {**_sig("linear", 1280, 1000, 1, 1, 1, 1), "in_h": 1, "in_w": 1, "out_h": 1, "out_w": 1}
)


def test_gemm_mapping() -> None:
    assert (CONV.m, CONV.k, CONV.n, CONV.groups) == (196, 2304, 256, 1)
    assert (DW.m, DW.k, DW.n, DW.groups) == (3136, 9, 1, 144)
    assert (FC.m, FC.k, FC.n) == (1, 1280, 1000)
    assert CONV.macs == 196 * 2304 * 256
    # dense: plain tiling; depthwise: block-diagonal packing over 32-channel column tiles
    assert packed_k_tiles(CONV, 32, 16) == 8 * 144
    assert packed_k_tiles(DW, 32, 16) == 4 * 18 + 1 * 9  # 4 full tiles (288 rows), one of 16 ch
    assert packed_k_tiles(DW, 8, 256) == 18  # BISMO: 8 channels * 9 taps fit one dk tile


def test_every_parameter_names_its_source() -> None:
    for tid, target in TARGETS.items():
        described = target.describe()
        assert described, tid
        for name, entry in described.items():
            assert entry["source"].strip(), f"{tid}.{name} has no source"
            assert entry["unit"], f"{tid}.{name} has no unit"
        assert dataclasses.is_dataclass(target.params)
        with pytest.raises(dataclasses.FrozenInstanceError):
            target.params.clock_mhz = 1.0  # type: ignore[misc]


@pytest.mark.parametrize("tid", sorted(TARGETS))
def test_monotonic_in_bits_for_compute_bound_layer(tid: str) -> None:
    target = TARGETS[tid]
    bits = target.kernel_bits()
    costs = [target.simulate(CONV, b, b) for b in bits]  # ascending bits
    assert all(c.bound == "compute" for c in costs)
    for lo, hi in zip(costs, costs[1:], strict=False):
        assert lo.latency_us < hi.latency_us
        assert lo.energy_uj < hi.energy_uj
    # lowering one side at a time never costs more
    for w in bits:
        lat = [target.simulate(CONV, w, a).latency_us for a in bits]
        assert lat == sorted(lat)


def test_bitfusion_8x8_vs_2x2_is_16x_compute() -> None:
    for params in bitfusion.PRESETS.values():
        c8 = bitfusion.simulate(CONV, 8, 8, params)
        c2 = bitfusion.simulate(CONV, 2, 2, params)
        assert 15.5 < c8.compute_cycles / c2.compute_cycles <= 16.0
        assert params.peak_gops(2, 2) == 16 * params.peak_gops(8, 8)


def test_bitfusion_rounds_up_to_fused_widths() -> None:
    for w, a, nw, na in [(3, 5, 4, 8), (1, 1, 2, 2), (6, 3, 8, 4), (7, 7, 8, 8)]:
        got = bitfusion.simulate(CONV, w, a)
        want = bitfusion.simulate(CONV, nw, na)
        assert got.latency_us == want.latency_us and got.energy_uj == want.energy_uj
    # 16-bit: four temporal iterations of 8-bit
    c16 = bitfusion.simulate(CONV, 16, 16)
    c8 = bitfusion.simulate(CONV, 8, 8)
    assert c16.compute_cycles == pytest.approx(4 * c8.compute_cycles, rel=0.01)


def test_bismo_latency_proportional_to_w_times_a() -> None:
    for params in bismo.PRESETS.values():
        base = bismo.simulate(CONV, 8, 8, params)
        for w in range(1, 9):
            for a in range(1, 9):
                c = bismo.simulate(CONV, w, a, params)
                assert c.compute_cycles * 64 == base.compute_cycles * w * a
                if c.bound == "compute":
                    assert c.latency_us == pytest.approx(base.latency_us * w * a / 64)


@pytest.mark.parametrize("tid", ["npu-bitfusion-edge", "npu-bismo-edge"])
def test_batch1_classifier_is_memory_bound(tid: str) -> None:
    target = TARGETS[tid]
    w8a8, w8a2, w2a2 = (target.simulate(FC, w, a) for w, a in [(8, 8), (8, 2), (2, 2)])
    assert w8a2.bound == "memory" and w2a2.bound == "memory"
    # latency follows the bytes moved (weights), not the 16x compute: activations hardly matter
    assert w8a2.latency_us == pytest.approx(w8a8.latency_us, rel=0.02)
    assert 3.5 < w8a8.latency_us / w2a2.latency_us < 4.1


def test_memory_model_reuses_resident_operand() -> None:
    w, i, o = CONV.weight_elems, CONV.in_elems, CONV.out_elems
    bias = CONV.bias_elems * 4
    big = dram_traffic_bytes(CONV, 8, 8, 8, 1e9, 1e9)
    assert big == w + i + o + bias  # everything fits: each operand once
    small = dram_traffic_bytes(CONV, 8, 8, 8, 64 * 1024, 16 * 1024)
    assert small > big  # tiling re-streams an operand


@pytest.fixture(scope="module")
def mobilenet_v2_layers() -> list:
    from haq.models.layers import discover_layers
    from haq.models.registry import load_model

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        loaded = load_model("mobilenet_v2", "none")
    return discover_layers(loaded.model, loaded.example_input())


def _kind(spec) -> str:
    return "pointwise" if spec.kind == "conv" and spec.kernel == (1, 1) else spec.kind


def test_haq_flavour_mobilenet_v2(mobilenet_v2_layers: list) -> None:
    """Uniform w4a4 beats w8a8 everywhere; the per-layer gain pattern differs by accelerator."""
    gain: dict[str, dict[str, list[float]]] = {}
    for tid, target in TARGETS.items():
        total = {8: 0.0, 4: 0.0}
        per_kind: dict[str, list[float]] = defaultdict(list)
        for spec in mobilenet_v2_layers:
            g = Gemm.from_spec(spec)
            l8, l4 = (target.simulate(g, b, b).latency_us for b in (8, 4))
            total[8] += l8
            total[4] += l4
            per_kind[_kind(spec)].append(l8 / l4)
        assert total[4] < total[8] / 1.4, tid
        gain[tid] = per_kind

    def mean(v: list[float]) -> float:
        return sum(v) / len(v)

    # Bit Fusion (edge): depthwise layers stay compute-bound and gain more from 4 bits than
    # pointwise ones, several of which turn memory-bound.
    bf = gain["npu-bitfusion-edge"]
    assert mean(bf["dwconv"]) > mean(bf["pointwise"]) + 0.3
    assert min(bf["pointwise"]) < 2.0
    # BISMO (edge, batch 1): every conv is compute-bound and gains exactly w*a (4x) whatever
    # its kind, so the ratio pattern differs from Bit Fusion's.
    bs = gain["npu-bismo-edge"]
    for kind in ("dwconv", "pointwise", "conv"):
        assert all(r == pytest.approx(4.0) for r in bs[kind]), kind


# Generated profiles ---------------------------------------------------------------------


@pytest.mark.parametrize("tid", sorted(TARGETS))
def test_generated_profile_yaml(tid: str) -> None:
    path = PROFILES / f"{tid}.yaml"
    data = yaml.safe_load(path.read_text())
    for key in ("id", "kind", "description", "provenance", "provenance_details", "kernels",
                "rules", "batch", "threads", "tables", "energy", "peaks"):  # fmt: skip
        assert key in data, key
    assert data["id"] == tid and data["kind"] == "npu"
    assert data["provenance"] == "simulated" and data["energy"] is True
    details = data["provenance_details"]
    assert details["simulator"].startswith("haq.hardware.simulators.")
    assert details["sources"] and details["model"]
    for name, entry in details["parameters"].items():
        assert entry["source"], name
    for rule in data["rules"]:
        assert rule["w"] is not None and rule["a"] is not None  # no float rule
        assert rule["kernel"] in data["kernels"]

    profile = load_profile(path)
    target = TARGETS[tid]
    for op in ("conv", "dwconv", "gconv", "linear"):
        assert profile.kernel_for(op, "fp32") is None
        assert profile.kernel_for(op, "w4a32") is None  # weight-only needs float activations
        for w in TABLE_BITS:
            for a in TABLE_BITS:
                assert profile.kernel_for(op, f"w{w}a{a}") == target.kernel_class(w, a)
    if target.family == "bitfusion":
        assert profile.kernel_for("conv", "w3a5") == "w4a8"
        assert profile.storage_bits("w4a8") == (4, 8)


@pytest.mark.parametrize("tid", sorted(TARGETS))
def test_generated_table(tid: str) -> None:
    path = PROFILES / tid / "layers.csv"
    assert path.stat().st_size < 2_000_000
    frame = read_table(path)
    assert (path.with_suffix(".meta.json")).is_file()
    assert {"energy_uj", "compute_us", "memory_us", "kernel"} <= set(frame.columns)
    assert (frame["batch"] == 1).all() and (frame["latency_us"] > 0).all()
    assert (frame["energy_uj"] > 0).all()
    kernels = set(yaml.safe_load((PROFILES / f"{tid}.yaml").read_text())["kernels"])
    assert set(frame["precision"]) == kernels
    per_sig = frame.groupby(SIGNATURE_COLUMNS)["precision"].nunique()
    assert (per_sig == len(kernels)).all()
    # rows agree with the simulator
    row = frame.iloc[len(frame) // 2]
    w, a = (int(x) for x in row["precision"][1:].split("a"))
    cost = TARGETS[tid].simulate(Gemm.from_signature(row.to_dict()), w, a)
    assert row["latency_us"] == pytest.approx(cost.latency_us, rel=1e-4)
    assert row["energy_uj"] == pytest.approx(cost.energy_uj, rel=1e-4)
    assert isinstance(frame, pd.DataFrame)
