"""Shared checkpoint loading: accepted layouts and one-line errors."""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest
import torch
from torch import nn

from haq.errors import HaqError
from haq.models.weights import RandomWeightsWarning, load_state_dict_file, warn_random_weights


def _net() -> nn.Module:
    return nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.Flatten(), nn.Linear(4, 2))


def _assert_same(a: nn.Module, b: nn.Module) -> None:
    for (ka, va), (kb, vb) in zip(a.state_dict().items(), b.state_dict().items(), strict=True):
        assert ka == kb
        assert torch.equal(va, vb), ka


@pytest.mark.parametrize("layout", ["raw", "state_dict", "model", "module_prefix", "module_obj"])
def test_accepted_layouts(tmp_path: Path, layout: str) -> None:
    src = _net()
    sd = src.state_dict()
    obj = {
        "raw": sd,
        "state_dict": {"state_dict": sd, "best_prec1": 91.0},
        "model": {"model": sd, "epoch": 3},
        "module_prefix": {"state_dict": {f"module.{k}": v for k, v in sd.items()}},
        "module_obj": src,
    }[layout]
    path = tmp_path / "w.pt"
    torch.save(obj, path)
    if layout == "module_obj":  # a pickled module needs the full (trusted) unpickler
        with pytest.warns(UserWarning, match="beyond tensors"):
            dst = load_state_dict_file(_net(), path, "toy")
    else:
        dst = load_state_dict_file(_net(), path, "toy")
    _assert_same(src, dst)


def test_missing_num_batches_tracked_is_fine(tmp_path: Path) -> None:
    src = _net()
    sd = {k: v for k, v in src.state_dict().items() if "num_batches_tracked" not in k}
    torch.save(sd, tmp_path / "w.pt")
    load_state_dict_file(_net(), tmp_path / "w.pt", "toy")


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(HaqError, match="not found; pass an existing checkpoint path"):
        load_state_dict_file(_net(), tmp_path / "nope.pt", "toy")


@pytest.mark.parametrize("content", [b"not a checkpoint at all", b"PK\x03\x04broken zip"])
def test_corrupt_file(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "bad.pt"
    path.write_bytes(content)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # garbage must not reach the full unpickler
        with pytest.raises(HaqError, match="cannot read weights file") as info:
            load_state_dict_file(_net(), path, "toy")
    assert "\n" not in str(info.value)


def test_truncated_checkpoint(tmp_path: Path) -> None:
    path = tmp_path / "w.pt"
    torch.save(_net().state_dict(), path)
    path.write_bytes(path.read_bytes()[:200])
    with pytest.raises(HaqError, match="cannot read weights file"):
        load_state_dict_file(_net(), path, "toy")


def test_shape_mismatch(tmp_path: Path) -> None:
    other = nn.Sequential(nn.Conv2d(3, 4, 5), nn.BatchNorm2d(4), nn.Flatten(), nn.Linear(4, 2))
    torch.save(other.state_dict(), tmp_path / "w.pt")
    with pytest.raises(HaqError, match=r"do not fit toy: 1 shape mismatches, first '0.weight'"):
        load_state_dict_file(_net(), tmp_path / "w.pt", "toy")


def test_missing_and_unexpected_keys(tmp_path: Path) -> None:
    sd = _net().state_dict()
    sd.pop("3.weight")
    sd["extra.weight"] = torch.zeros(1)
    torch.save(sd, tmp_path / "w.pt")
    with pytest.raises(HaqError) as info:
        load_state_dict_file(_net(), tmp_path / "w.pt", "toy")
    msg = str(info.value)
    assert "1 missing keys, first '3.weight'" in msg
    assert "1 unexpected keys, first 'extra.weight'" in msg
    assert "pass the checkpoint saved for this model" in msg


def test_not_a_state_dict(tmp_path: Path) -> None:
    torch.save({"epoch": 3, "lr": 0.1}, tmp_path / "w.pt")
    with pytest.raises(HaqError, match="not a state dict"):
        load_state_dict_file(_net(), tmp_path / "w.pt", "toy")


def test_random_weights_warning() -> None:
    with pytest.warns(RandomWeightsWarning, match="accuracy is meaningless"):
        warn_random_weights("toy")
