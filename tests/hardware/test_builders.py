"""Every shipped target is built by a registered `TargetBuilder` from haq code, with the
provenance its profile states; a build reproduces the shipped rows (gpu-h100's needs a CUDA
device: here its CPU smoke run and its one-line error without CUDA)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
import torch

from haq.errors import HaqError
from haq.hardware.builders import BUILDERS, get_builder
from haq.hardware.profile import get_target, target_ids
from haq.hardware.tables import SIGNATURE_COLUMNS

SHARED = Path(__file__).resolve().parents[3] / "shared"
KEY = [*SIGNATURE_COLUMNS, "precision"]


def test_every_shipped_target_has_a_builder_of_its_provenance() -> None:
    for target in target_ids():
        builder = get_builder(target)
        assert builder.target == target
        assert builder.provenance == get_target(target).provenance
    assert set(BUILDERS) == set(target_ids())
    assert get_builder("gpu-h100").provenance == "measured"


def test_unknown_target_is_one_line() -> None:
    with pytest.raises(HaqError, match="no builder for target 'tpu-v9'; known: cpu-avx512"):
        get_builder("tpu-v9")


def _shipped(target: str) -> pd.DataFrame:
    return pd.read_csv(Path(get_target(target).path).parent / target / "layers.csv")


@pytest.mark.parametrize("target", ["npu-bitfusion-edge", "npu-bismo-cloud"])
def test_simulated_npu_build_reproduces_the_shipped_rows(target: str, tmp_path: Path) -> None:
    built = get_builder(target).build(tmp_path, ["cifar_resnet20"], date="2026-01-01")
    assert {p.name for p in built.files} == {"layers.csv", "layers.meta.json", f"{target}.yaml"}
    assert get_target(tmp_path / f"{target}.yaml").provenance == "simulated"
    mine = pd.read_csv(tmp_path / target / "layers.csv")
    joined = mine.merge(_shipped(target), on=KEY, suffixes=("", "_shipped"))
    assert len(joined) == len(mine) > 0  # every signature of the model is in the shipped table
    assert (joined["latency_us"] == joined["latency_us_shipped"]).all()


@pytest.mark.skipif(not (SHARED / "data" / "published").is_dir(), reason="needs ../shared")
def test_published_t4_build_reproduces_the_shipped_table(tmp_path: Path) -> None:
    source = SHARED / "data" / "published" / "hawq_v3_t4_resnet18.csv"
    built = get_builder("gpu-t4").build(tmp_path, source=source)
    mine = pd.read_csv(tmp_path / "gpu-t4" / "layers.csv")
    pd.testing.assert_frame_equal(mine, _shipped("gpu-t4"))
    assert built.provenance == "published" and len(built.layers) == len(mine)
    with pytest.raises(HaqError, match="not found"):
        get_builder("gpu-t4").build(tmp_path, source=tmp_path / "missing.csv")


def test_ort_profiled_build_measures_into_the_folder(tmp_path: Path) -> None:
    built = get_builder("cpu-avx512").build(
        tmp_path, ["digits_cnn"], threads=(1,), classes=("fp32", "int8"), transitions=False,
        runs=3, profile_runs=2, warmup=1, progress=lambda _: None,
    )  # fmt: skip
    names = {p.name for p in built.files}
    assert {"layers.csv", "observations.jsonl.gz", "cpu-avx512.yaml"} <= names
    assert set(built.layers["precision"]) == {"fp32", "int8"}
    assert get_target(tmp_path / "cpu-avx512.yaml").provenance == "measured"


def test_torch_gpu_without_cuda_is_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(HaqError) as info:
        get_builder("gpu-h100").build(tmp_path, ["digits_cnn"])
    message = str(info.value)
    assert "\n" not in message and "torch.cuda.is_available() is False" in message
    assert message.endswith("run on a machine with an H100")
    assert list(tmp_path.iterdir()) == []  # nothing written before the check


def test_torch_gpu_build_on_cpu_writes_the_target_folder(tmp_path: Path) -> None:
    built = get_builder("gpu-h100").build(
        tmp_path, ["digits_cnn"], device="cpu", quick=True, batches=(1,), precisions=("fp32",),
        e2e_variants=("plain",),
    )  # fmt: skip
    assert (built.target, built.provenance) == ("gpu-h100", "measured")
    assert {p.name for p in built.files} == {"layers.csv", "layers.meta.json", "layer_map.csv",
                                             "e2e.csv", "log.txt"}  # fmt: skip
    assert all(p.parent == tmp_path / "gpu-h100" for p in built.files)
    mine = pd.read_csv(tmp_path / "gpu-h100" / "layers.csv")
    assert len(mine) == len(built.layers) > 0 and set(mine["precision"]) == {"fp32"}
    assert set(mine.columns) == set(_shipped("gpu-h100").columns)  # the shipped table's schema
    assert built.detail.meta["script"] == "haq.hardware.builders.TorchGpu"
