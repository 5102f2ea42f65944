"""CIFAR ResNets: layout, layer table, export, and the shared Idelbayev checkpoints."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from haq.errors import HaqError
from haq.models import discover_layers, get_entry, load_model
from haq.models.cifar_resnet import ShortcutA, cifar_resnet
from haq.models.weights import RandomWeightsWarning


@pytest.mark.parametrize("depth", [20, 32, 44, 56])
def test_depths(depth: int) -> None:
    model = cifar_resnet(depth)
    convs = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d | torch.nn.Linear)]
    assert len(convs) == depth
    assert get_entry(f"cifar_resnet{depth}").family == "cifar"


@pytest.mark.parametrize("depth", [20, 56])
def test_layer_table(depth: int) -> None:
    with pytest.warns(RandomWeightsWarning):
        lm = load_model(f"cifar_resnet{depth}", "none")
    assert not lm.model.training
    layers = discover_layers(lm.model, lm.example_input())
    # Stem conv + 2 convs per block (3 stages of (depth - 2) / 6 blocks) + the linear head.
    assert len(layers) == depth
    stem, head = layers[0], layers[-1]
    assert stem.name == "conv1" and stem.kind == "conv"
    assert stem.macs == 32 * 32 * 16 * 3 * 3 * 3
    assert head.name == "linear" and head.kind == "linear" and head.macs == 64 * 10
    assert [s.out_hw for s in layers[-3:-1]] == [(8, 8), (8, 8)]
    # Option A: no 1x1 projection anywhere.
    assert all(s.kernel == (3, 3) for s in layers[:-1])


def test_shortcut_a_subsamples_and_pads() -> None:
    x = torch.randn(2, 16, 8, 8)
    out = ShortcutA(32)(x)
    assert out.shape == (2, 32, 4, 4)
    assert torch.equal(out[:, 8:24], x[:, :, ::2, ::2])
    assert out[:, :8].abs().sum() == 0 and out[:, 24:].abs().sum() == 0


def test_entry_metadata() -> None:
    e = get_entry("cifar_resnet20")
    assert e.family == "cifar" and e.num_classes == 10 and e.default_data is None
    assert e.preprocess.input_size == (3, 32, 32)
    assert e.preprocess.mean == (0.485, 0.456, 0.406)
    assert e.preprocess.resize is None and e.preprocess.crop is None


def test_default_weights_explain_the_fix() -> None:
    with pytest.raises(HaqError, match=r"no built-in weights; pass --weights PATH"):
        load_model("cifar_resnet20", "default")


def test_onnx_export(tmp_path: Path) -> None:
    onnx = pytest.importorskip("onnx")
    model = cifar_resnet(20).eval()
    path = tmp_path / "r20.onnx"
    torch.onnx.export(model, (torch.zeros(1, 3, 32, 32),), str(path), dynamo=False)
    ops = {n.op_type for n in onnx.load(str(path)).graph.node}
    assert "Conv" in ops and "Pad" in ops


@pytest.mark.shared
def test_idelbayev_checkpoints_load(shared: Path) -> None:
    for depth, file in ((20, "resnet20-12fca82f.th"), (56, "resnet56-4bfd9763.th")):
        lm = load_model(f"cifar_resnet{depth}", str(shared / "models" / file))
        ref = torch.load(shared / "models" / file, map_location="cpu", weights_only=True)
        w = ref["state_dict"]["module.layer3.0.conv1.weight"]
        assert torch.equal(lm.model.layer3[0].conv1.weight, w)


@pytest.mark.shared
def test_wrong_checkpoint_for_architecture(shared: Path) -> None:
    with pytest.raises(HaqError, match=r"do not fit cifar_resnet20: 180 unexpected keys"):
        load_model("cifar_resnet20", str(shared / "models" / "resnet56-4bfd9763.th"))
    with pytest.raises(HaqError, match=r"do not fit cifar_resnet56: 180 missing keys"):
        load_model("cifar_resnet56", str(shared / "models" / "resnet20-12fca82f.th"))


@pytest.mark.shared
def test_resnet20_accuracy_sanity(shared: Path) -> None:
    """200 JPEG test images: the README's 81 % model must be far above chance."""
    from PIL import Image

    lm = load_model("cifar_resnet20", str(shared / "models" / "resnet20-12fca82f.th"))
    tf = lm.preprocess.transform()
    root = shared / "data" / "cifar10-jpeg" / "test"
    classes = sorted(p.name for p in root.iterdir() if p.is_dir())
    xs, ys = [], []
    for label, cls in enumerate(classes):
        for f in sorted((root / cls).iterdir())[:20]:
            xs.append(tf(Image.open(f).convert("RGB")))
            ys.append(label)
    with torch.no_grad():
        pred = lm.model(torch.stack(xs)).argmax(1)
    acc = (pred == torch.tensor(ys)).float().mean().item()
    assert acc >= 0.7, acc
