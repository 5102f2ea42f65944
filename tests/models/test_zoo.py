"""torchvision zoo: preprocessing matches torchvision, weights only from the hub cache."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torchvision import models

from haq.errors import HaqError
from haq.models import discover_layers, get_entry, list_models, load_model
from haq.models.weights import RandomWeightsWarning
from haq.models.zoo import ZOO, SelfAttention, expose_attention

REQUIRED = {
    "resnet18", "resnet34", "resnet50", "mobilenet_v2", "mobilenet_v3_large",
    "mobilenet_v3_small", "efficientnet_b0",
}  # fmt: skip


@pytest.fixture
def torch_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    return tmp_path / "hub" / "checkpoints"


def test_registered() -> None:
    names = {e.name for e in list_models() if e.family == "torchvision"}
    assert names >= REQUIRED


@pytest.mark.parametrize("spec", ZOO, ids=lambda s: s.name)
def test_table_matches_torchvision(spec) -> None:
    w = models.get_model_weights(spec.name).DEFAULT
    tf = w.transforms()
    assert str(w) == spec.weights
    assert Path(w.url).name == spec.filename
    assert [spec.resize] == list(tf.resize_size) and [spec.crop] == list(tf.crop_size)
    assert w.meta["_metrics"]["ImageNet-1K"]["acc@1"] == spec.top1
    pre = get_entry(spec.name).preprocess
    assert pre.input_size == (3, spec.crop, spec.crop)
    assert list(pre.mean) == list(tf.mean) and list(pre.std) == list(tf.std)


def test_default_weights_absent(torch_home: Path) -> None:
    with pytest.raises(HaqError) as info:
        load_model("resnet50", "default")
    msg = str(info.value)
    assert "no cached torchvision weights for resnet50 (resnet50-11ad3fa6.pth)" in msg
    assert str(torch_home) in msg and "--weights PATH / --weights none" in msg
    assert "\n" not in msg


def test_default_weights_from_cache(torch_home: Path) -> None:
    torch.manual_seed(1)
    ref = models.resnet18()
    torch_home.mkdir(parents=True)
    torch.save(ref.state_dict(), torch_home / "resnet18-f37072fd.pth")
    lm = load_model("resnet18", "default")
    assert torch.equal(lm.model.fc.weight, ref.fc.weight)


def test_corrupt_cached_default(torch_home: Path) -> None:
    torch_home.mkdir(parents=True)
    (torch_home / "mobilenet_v3_small-047dcff4.pth").write_bytes(b"junk")
    with pytest.raises(HaqError, match="are unreadable"):
        load_model("mobilenet_v3_small", "default")


def test_random_and_path_weights(tmp_path: Path) -> None:
    with pytest.warns(RandomWeightsWarning):
        lm = load_model("mobilenet_v3_small", "none")
    layers = discover_layers(lm.model, lm.example_input())
    kinds = {s.kind for s in layers}
    assert {"conv", "dwconv", "linear"} <= kinds
    assert layers[0].in_hw == (224, 224)
    torch.save({"model": lm.model.state_dict()}, tmp_path / "w.pth")
    again = load_model("mobilenet_v3_small", str(tmp_path / "w.pth")).model
    assert torch.equal(again.classifier[3].weight, lm.model.classifier[3].weight)
    with pytest.raises(HaqError, match="do not fit resnet18"):
        load_model("resnet18", str(tmp_path / "w.pth"))


def test_resnet18_layer_table() -> None:
    with pytest.warns(RandomWeightsWarning):
        lm = load_model("resnet18", "none")
    layers = discover_layers(lm.model, lm.example_input())
    assert len(layers) == 21  # stem + 16 block convs + 3 downsample 1x1 + fc
    assert layers[0].macs == 112 * 112 * 64 * 3 * 7 * 7


def test_self_attention_matches_mha() -> None:
    torch.manual_seed(0)
    vit = models.VisionTransformer(
        image_size=32, patch_size=8, num_layers=2, num_heads=2, hidden_dim=32, mlp_dim=64
    ).eval()
    for m in vit.modules():
        if isinstance(m, torch.nn.MultiheadAttention):
            torch.nn.init.normal_(m.in_proj_bias)
            torch.nn.init.normal_(m.out_proj.bias)
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        ref = vit(x)
        expose_attention(vit)
        out = vit(x)
    assert torch.allclose(ref, out, atol=1e-5)
    assert not any(isinstance(m, torch.nn.MultiheadAttention) for m in vit.modules())
    assert sum(isinstance(m, SelfAttention) for m in vit.modules()) == 2
    names = [s.name for s in discover_layers(vit, x)]
    assert "encoder.layers.encoder_layer_0.self_attention.in_proj" in names
    in_proj = next(
        s for s in discover_layers(vit, x) if s.name.endswith("0.self_attention.in_proj")
    )
    assert in_proj.tokens == 17 and in_proj.out_channels == 96
