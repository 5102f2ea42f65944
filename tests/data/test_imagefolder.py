"""ImageFolder roots: torchvision's order and labels, preprocessing, one-line errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from haq.data import load_data
from haq.data.imagefolder import _Decoder, decode_images, list_images
from haq.errors import HaqError
from haq.models.registry import Preprocess

RGB = Preprocess(input_size=(3, 8, 8), mean=(0.5,) * 3, std=(0.5,) * 3)
COLOURS = {"b_red": (255, 0, 0), "a_blue": (0, 0, 255), "c_grey": (128, 128, 128)}


def _tree(root: Path, per_class: int = 4, size: int = 8) -> Path:
    """Solid-colour images (PNG, plus one JPEG per class) in class folders."""
    for cls, colour in COLOURS.items():
        (root / cls).mkdir(parents=True)
        for i in range(per_class):
            ext = "jpg" if i == 0 else "png"
            Image.new("RGB", (size, size), colour).save(root / cls / f"{i:03d}.{ext}")
    (root / "notes.txt").write_text("ignored: not in a class folder")
    (root / "a_blue" / "readme.txt").write_text("ignored: not an image")
    return root


def _one_line(e: pytest.ExceptionInfo[HaqError]) -> str:
    msg = str(e.value)
    assert "\n" not in msg
    return msg


def test_order_labels_and_values(tmp_path: Path) -> None:
    root = _tree(tmp_path / "data")
    d = load_data(str(root), RGB)
    assert d.classes == ["a_blue", "b_red", "c_grey"]
    assert d.x.shape == (12, 3, 8, 8) and d.x.dtype == torch.float32
    assert d.y is not None and d.y.tolist() == [0] * 4 + [1] * 4 + [2] * 4
    assert np.array_equal(d.indices, np.arange(12))
    # Normalised with mean/std 0.5: full red -> (1, -1, -1); JPEG is lossy, PNG exact.
    assert torch.equal(d.x[5], torch.tensor([1.0, -1.0, -1.0]).view(3, 1, 1).expand(3, 8, 8))
    assert torch.allclose(d.x[4, 0], torch.ones(8, 8), atol=0.05)
    samples, _ = list_images(root)
    assert [Path(p).name for p, _ in samples[:4]] == ["000.jpg", "001.png", "002.png", "003.png"]


def test_resizes_to_the_model_input(tmp_path: Path) -> None:
    root = _tree(tmp_path / "data", per_class=1, size=20)
    assert load_data(str(root), RGB).x.shape == (3, 3, 8, 8)


def test_limit_seed_and_exclude(tmp_path: Path) -> None:
    root = str(_tree(tmp_path / "data"))
    a = load_data(root, RGB, limit=5, seed=1)
    assert len(a) == 5 and np.array_equal(a.indices, load_data(root, RGB, limit=5, seed=1).indices)
    full = load_data(root, RGB)
    assert torch.equal(a.x, full.x[torch.from_numpy(a.indices)])
    assert torch.equal(a.y, full.y[torch.from_numpy(a.indices)])
    b = load_data(root, RGB, exclude=a.indices)
    assert len(b) == 7 and not set(a.indices) & set(b.indices)


def test_grayscale_images_become_rgb_for_colour_models(tmp_path: Path) -> None:
    (tmp_path / "c").mkdir()
    Image.new("L", (8, 8), 200).save(tmp_path / "c" / "g.png")
    d = load_data(str(tmp_path), RGB)
    assert d.x.shape == (1, 3, 8, 8) and torch.equal(d.x[0, 0], d.x[0, 2])


def test_grayscale_model_converts_colour_images(tmp_path: Path) -> None:
    gray = Preprocess(input_size=(1, 8, 8), mean=(0.5,), std=(0.5,), grayscale=True)
    assert load_data(str(_tree(tmp_path / "d", 1)), gray).x.shape == (3, 1, 8, 8)


def test_colour_images_for_a_one_channel_model(tmp_path: Path) -> None:
    one = Preprocess(input_size=(1, 8, 8), mean=(0.5,), std=(0.5,))
    with pytest.raises(HaqError) as e:
        load_data(str(_tree(tmp_path / "d", 1)), one)
    msg = _one_line(e)
    assert "(3, 8, 8)" in msg and "expects input size (1, 8, 8)" in msg and "000.jpg" in msg


def test_wrong_spatial_size(tmp_path: Path) -> None:
    crop_only_resize = Preprocess(input_size=(3, 8, 8), mean=(0.5,) * 3, std=(0.5,) * 3, resize=8)
    (tmp_path / "c").mkdir()
    Image.new("RGB", (16, 8)).save(tmp_path / "c" / "wide.png")  # resize 8 -> 8x16, no crop
    with pytest.raises(HaqError) as e:
        load_data(str(tmp_path), crop_only_resize)
    assert "wide.png" in _one_line(e)


def test_missing_directory(tmp_path: Path) -> None:
    with pytest.raises(HaqError) as e:
        load_data(str(tmp_path / "missing"), RGB)
    msg = _one_line(e)
    assert "not found" in msg and "ImageFolder root (<root>/<class>/<image>)" in msg


def test_file_instead_of_directory(tmp_path: Path) -> None:
    f = tmp_path / "x.jpg"
    f.write_bytes(b"")
    with pytest.raises(HaqError) as e:
        load_data(str(f), RGB)
    assert "not a directory" in _one_line(e)


@pytest.mark.parametrize("layout", ["empty", "empty_classes", "flat_images"])
def test_no_images_in_class_folders(tmp_path: Path, layout: str) -> None:
    root = tmp_path / "d"
    root.mkdir()
    if layout == "empty_classes":
        (root / "cat").mkdir()
    if layout == "flat_images":
        Image.new("RGB", (8, 8)).save(root / "a.png")
    with pytest.raises(HaqError) as e:
        load_data(str(root), RGB)
    msg = _one_line(e)
    assert "holds no images in class subfolders" in msg and "ImageFolder root" in msg


def test_corrupt_image_is_named(tmp_path: Path) -> None:
    root = _tree(tmp_path / "d", per_class=1)
    (root / "b_red" / "broken.png").write_bytes(b"not an image at all")
    with pytest.raises(HaqError) as e:
        load_data(str(root), RGB)
    msg = _one_line(e)
    assert "broken.png" in msg and "remove or replace" in msg


def test_truncated_jpeg_is_named(tmp_path: Path) -> None:
    (tmp_path / "c").mkdir()
    good = tmp_path / "c" / "ok.jpg"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), np.uint8)).save(good)
    (tmp_path / "c" / "cut.jpg").write_bytes(good.read_bytes()[:300])
    with pytest.raises(HaqError) as e:
        load_data(str(tmp_path), RGB)
    assert "cut.jpg" in _one_line(e)


def test_worker_processes_match_in_process_decoding(tmp_path: Path) -> None:
    """Large requests decode in worker processes: same values, errors still one line."""
    rng = np.random.default_rng(0)
    (tmp_path / "c").mkdir()
    paths = []
    for i in range(520):
        p = tmp_path / "c" / f"{i:04d}.png"
        Image.fromarray(rng.integers(0, 255, (8, 8, 3), np.uint8)).save(p)
        paths.append(str(p))
    x = decode_images(paths, RGB)
    ds = _Decoder(paths, RGB)
    ref = torch.stack([RGB.transform()(Image.open(p).convert("RGB")) for p in paths[:50]])
    assert torch.equal(x[:50], ref)
    assert torch.equal(x, ds.finish(torch.stack([ds[i][1] for i in range(len(ds))])))
    (tmp_path / "c" / "0300.png").write_bytes(b"junk")
    with pytest.raises(HaqError) as e:
        decode_images(paths, RGB)
    assert "0300.png" in _one_line(e)


@pytest.mark.shared
def test_cifar10_test_split(shared: Path) -> None:
    from haq.models.cifar_resnet import CIFAR_PREPROCESS

    d = load_data(str(shared / "data" / "cifar10-jpeg" / "test"), CIFAR_PREPROCESS, limit=500)
    assert d.x.shape == (500, 3, 32, 32)
    assert d.classes == [
        "airplane", "automobile", "bird", "cat", "deer",
        "dog", "frog", "horse", "ship", "truck",
    ]  # fmt: skip
    counts = np.bincount(d.y.numpy(), minlength=10)
    assert counts.min() >= 25 and counts.max() <= 80
    assert abs(float(d.x.mean())) < 0.5  # normalised, not raw [0, 1] pixels
