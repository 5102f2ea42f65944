"""Hardware profile loading, validation (one-line errors) and kernel-class rules."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from haq.config import Precision
from haq.errors import HaqError
from haq.hardware.profile import get_target, list_targets, load_profile, target_ids
from tests.cost.synthetic import profile_dict, write_target


def _error(tmp_path: Path, data: dict[str, Any] | None = None, text: str | None = None) -> str:
    path = write_target(tmp_path, data)
    if text is not None:
        path.write_text(text)
    with pytest.raises(HaqError) as info:
        load_profile(path)
    msg = str(info.value)
    assert "\n" not in msg and str(path) in msg, msg
    return msg


def test_shipped_profiles_load() -> None:
    ids = {p.id for p in list_targets()}
    assert {"gpu-h100", "gpu-t4"} <= ids
    h100 = get_target("gpu-h100")
    assert h100.provenance == "measured" and h100.provenance_details["version"]
    assert h100.tables["layers"].is_file() and h100.threads == (1,)
    t4 = get_target("gpu-t4")
    assert t4.provenance == "published" and "HAWQ-V3" in t4.provenance_details["source"]
    assert t4.batch == 8


def test_gpu_h100_rules() -> None:
    p = get_target("gpu-h100")
    assert p.kernel_for("conv", "fp32") == "fp32"
    assert p.kernel_for("conv", "w8a8") == "w8a8"
    assert p.kernel_for("linear", Precision(4, 6)) == "w8a8"
    assert p.kernel_for("conv", "w8a8", "tensor") == "w8a8"
    # no integer kernel: the fp32 fallback, never a faster class
    assert p.kernel_for("dwconv", "w8a8") == "fp32"
    assert p.kernel_for("conv", "w16a16") == "fp32"
    assert p.kernel_for("conv", "w4a32") == "fp32"
    assert p.kernel_for("conv", "w8a8", "group") == "fp32"


def test_gpu_t4_rules() -> None:
    p = get_target("gpu-t4")
    assert p.kernel_for("conv", "w4a4") == "int4"
    assert p.kernel_for("conv", "w3a3") == "int4"
    assert p.kernel_for("conv", "w4a8") == "int8"
    assert p.kernel_for("linear", "w8a8") == "int8"
    assert p.kernel_for("gconv", "fp32") == "fp32"
    assert p.kernel_for("conv", "w16a16") is None and not p.can_run("conv", "w16a16")
    assert not p.can_run("dwconv", "w8a8") and not p.can_run("conv", "w4a32")
    assert "int4" in p.supported("conv")
    with pytest.raises(HaqError, match="unknown op kind"):
        p.kernel_for("matmul", "w8a8")


def test_unknown_target_lists_targets() -> None:
    with pytest.raises(HaqError) as info:
        get_target("tpu-v9")
    msg = str(info.value)
    assert "unknown target 'tpu-v9'" in msg and "gpu-h100" in msg and "gpu-t4" in msg
    assert "gpu-t4" in target_ids()


def test_load_by_path_any_and_remap(tmp_path: Path) -> None:
    data = profile_dict()
    data["rules"].append({"ops": ["conv"], "w": "any", "a": 16, "kernel": "fp32"})
    p = get_target(write_target(tmp_path, data))
    assert p.id == "toy" and p.path is not None
    assert p.kernel_for("conv", "w12a16") == "fp32" and p.kernel_for("conv", "w32a16") == "fp32"
    assert p.kernel_for("conv", "w12a12") is None
    assert p.storage_bits("int8") == (8, 8) and p.storage_bits("fp32") == (32, 32)
    q = p.remap({"int8": "fp32"})
    assert q.kernel_for("conv", "w8a8") == "fp32" and p.kernel_for("conv", "w8a8") == "int8"
    with pytest.raises(HaqError, match="not a kernel class"):
        p.remap({"fp32": "bf16"})


def test_dynamic_activations_pick_their_own_kernel(tmp_path: Path) -> None:
    data = profile_dict()
    data["kernels"]["dynamic-int8"] = "DynamicQuantizeMatMul"
    data["rules"].insert(0, {"ops": ["linear"], "w": [2, 8], "a": 8, "kernel": "dynamic-int8",
                             "activations": "dynamic"})  # fmt: skip
    p = get_target(write_target(tmp_path, data))
    assert p.kernel_for("linear", "w8a8", activations="dynamic") == "dynamic-int8"
    assert p.kernel_for("linear", "w8a8") != "dynamic-int8"  # static grids: the int8 kernel
    assert p.kernel_for("conv", "w8a8", activations="dynamic") is None
    assert p.kernel_for("linear", "fp32", activations="dynamic") == "fp32"  # float: either
    assert p.kernel_for("linear", "w8a8", activations="dynamic-token") is None  # its own rule


def _without(key: str) -> dict[str, Any]:
    data = profile_dict()
    del data[key]
    return data


def _rule(**fields: Any) -> dict[str, Any]:
    rule = {"ops": ["conv"], "w": [2, 8], "a": [2, 8], "kernel": "int8", **fields}
    return profile_dict(rules=[rule])


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (_without("rules"), "rules: missing"),
        (_without("provenance_details"), "provenance_details: missing"),
        (profile_dict(provenance="guessed"), "not a provenance"),
        (profile_dict(provenance="published"), "lacks source"),
        (profile_dict(provenance_details={"machine": "x"}), "lacks runtime, version, date"),
        (profile_dict(kind="tpu"), "kind"),
        (profile_dict(id="other"), "differs from the file name"),
        (profile_dict(colour="red"), "unknown field"),
        (_rule(kernel="int4"), "rules[0].kernel: 'int4' is not a kernel class"),
        (_rule(w=[8, 2]), "rules[0].w: bad bit range [8, 2]"),
        (_rule(a=[1, 8]), "rules[0].a: bad bit range [1, 8]"),
        (_rule(w=[2, 40]), "bad bit range"),
        (_rule(w="eight"), "is not a bit range"),
        (_rule(ops=["matmul"]), "unknown op kinds"),
        (_rule(granularity="row"), "granularity"),
        (_rule(activations="per-token"), "rules[0].activations: 'per-token' is unknown"),
        (_rule(stride=2), "unknown keys"),
        (profile_dict(rules=[]), "non-empty list"),
        (profile_dict(tables={"layers": "toy/nope.csv"}), "tables.layers: file"),
        (profile_dict(tables={"weights": "toy/layers.csv"}), "unknown table"),
        (profile_dict(peaks={"int4_gops": 3.0}), "peaks.int4_gops"),
        (profile_dict(peaks={"int8_gops": -1}), "not a positive number"),
        (profile_dict(batch=0), "batch"),
        (profile_dict(threads=[]), "threads"),
        (profile_dict(tables={}, peaks={}), "neither latency tables nor compute peaks"),
        (profile_dict(kernel_bits={"int8": [8]}), "kernel_bits.int8"),
    ],
)
def test_malformed_profiles(tmp_path: Path, data: dict[str, Any], expected: str) -> None:
    assert expected in _error(tmp_path, data)


def test_bad_yaml_and_missing_file(tmp_path: Path) -> None:
    assert "not valid YAML" in _error(tmp_path, text="id: toy\nrules: [\n")
    assert "is not a mapping" in _error(tmp_path, text="- just a list\n")
    with pytest.raises(HaqError, match="not found"):
        load_profile(tmp_path / "absent.yaml")
