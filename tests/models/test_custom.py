"""User models given as package.module:factory."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from haq.errors import HaqError
from haq.models import discover_layers, get_entry, load_model
from haq.models.weights import RandomWeightsWarning

SPEC = "tests.models.toy_factory:build"


def test_custom_entry_uses_module_settings() -> None:
    e = get_entry(SPEC)
    assert e.family == "custom" and e.name == SPEC
    assert e.preprocess.input_size == (3, 16, 16) and e.preprocess.std == (0.25, 0.25, 0.25)
    assert e.num_classes == 4 and e.default_data == "synthetic"
    assert "Tiny conv net" in e.description
    lm = load_model(SPEC)
    assert lm.model(lm.example_input(2)).shape == (2, 4)
    assert [s.kind for s in discover_layers(lm.model, lm.example_input())] == ["conv", "linear"]


def test_weights_path_and_none(tmp_path: Path) -> None:
    src = load_model(SPEC).model
    torch.save(src.state_dict(), tmp_path / "w.pt")
    dst = load_model(SPEC, str(tmp_path / "w.pt")).model
    assert torch.equal(src[0].weight, dst[0].weight)
    with pytest.warns(RandomWeightsWarning):
        load_model(SPEC, "none")


def test_python_file_spec(tmp_path: Path) -> None:
    f = tmp_path / "mymodel.py"
    f.write_text("from torch import nn\n\ndef make():\n    return nn.Linear(3, 2)\n")
    e = get_entry(f"{f}:make")
    assert e.preprocess.input_size == (3, 224, 224) and e.num_classes == 1000
    assert isinstance(e.build("default"), torch.nn.Linear)


@pytest.mark.parametrize(
    ("spec", "match"),
    [
        ("no_such_pkg_xyz.mod:build", "cannot import module 'no_such_pkg_xyz.mod'"),
        ("tests.models.toy_factory:missing", "has no attribute 'missing'"),
        ("tests.models.toy_factory:NOT_CALLABLE", "not a callable factory"),
        (":build", "must look like 'package.module:factory'"),
    ],
)
def test_entry_errors(spec: str, match: str) -> None:
    with pytest.raises(HaqError, match=match) as info:
        get_entry(spec)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(
    ("spec", "match"),
    [
        ("tests.models.toy_factory:not_a_module", "returned a int, not a torch.nn.Module"),
        ("tests.models.toy_factory:broken", "raised RuntimeError: factory exploded$"),
    ],
)
def test_build_errors(spec: str, match: str) -> None:
    with pytest.raises(HaqError, match=match):
        load_model(spec)
