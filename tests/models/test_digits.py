"""The embedded digits_cnn: trains fast, scores well, caches, and leaves RNG state alone."""

from __future__ import annotations

import pytest
import torch

from haq.data.digits import digits_arrays
from haq.models import digits as digits_mod
from haq.models import discover_layers, get_entry, load_model
from haq.models.weights import RandomWeightsWarning


def _accuracy(model: torch.nn.Module) -> float:
    x, y = digits_arrays("test")
    entry = get_entry("digits_cnn")
    xt = (torch.from_numpy(x) - entry.preprocess.mean[0]) / entry.preprocess.std[0]
    with torch.no_grad():
        pred = model(xt).argmax(1).numpy()
    return float((pred == y).mean())


def test_default_trains_scores_and_caches(monkeypatch: pytest.MonkeyPatch) -> None:
    state = torch.get_rng_state()
    lm = load_model("digits_cnn")
    assert torch.equal(state, torch.get_rng_state()), "building must not perturb the global RNG"
    assert digits_mod.cache_path().is_file()
    assert _accuracy(lm.model) >= 0.95

    def no_training() -> None:
        raise AssertionError("second load must come from the cache")

    monkeypatch.setattr(digits_mod, "train_digits_cnn", no_training)
    again = load_model("digits_cnn").model
    for a, b in zip(lm.model.state_dict().values(), again.state_dict().values(), strict=True):
        assert torch.equal(a, b)


def test_corrupt_cache_is_retrained(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    monkeypatch.setenv("HAQ_CACHE_DIR", str(tmp_path))
    digits_mod.cache_path().write_bytes(b"garbage")
    calls = []
    monkeypatch.setattr(
        digits_mod, "train_digits_cnn", lambda: calls.append(1) or digits_mod.DigitsCNN().eval()
    )
    load_model("digits_cnn")
    assert calls == [1]
    assert torch.load(digits_mod.cache_path(), weights_only=True)  # replaced by a valid file


def test_entry_and_layers() -> None:
    e = get_entry("digits_cnn")
    assert e.family == "embedded" and e.default_data == "digits" and e.num_classes == 10
    assert e.preprocess.input_size == (1, 8, 8) and e.preprocess.grayscale
    with pytest.warns(RandomWeightsWarning):
        lm = load_model("digits_cnn", "none")
    layers = discover_layers(lm.model, lm.example_input())
    assert [s.kind for s in layers] == ["conv", "conv", "dwconv", "conv", "linear", "linear"]
    assert layers[2].name == "conv3_dw" and layers[2].groups == 32
    assert layers[4].in_channels == 64 * 4 * 4


def test_weights_path_roundtrip(tmp_path) -> None:
    with pytest.warns(RandomWeightsWarning):
        src = load_model("digits_cnn", "none").model
    torch.save({"state_dict": src.state_dict()}, tmp_path / "d.pt")
    dst = load_model("digits_cnn", str(tmp_path / "d.pt")).model
    assert torch.equal(src.fc2.weight, dst.fc2.weight)
