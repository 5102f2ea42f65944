"""torchvision zoo: preprocessing matches torchvision; weights from the hub cache, downloaded
into it with the hash checked, or a one-line error offline."""

from __future__ import annotations

from collections.abc import Iterator
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


@pytest.fixture
def mirror(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[str, list[str]]]:
    """A local HTTP server standing in for download.pytorch.org: it serves junk under every
    name (so a download fails its checksum) and records the paths asked for."""
    import http.server
    import threading

    asked: list[str] = []

    class Junk(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - http.server's name
            asked.append(self.path)
            body = b"not a checkpoint" * 64
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Junk)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}/"
    monkeypatch.setenv("HAQ_TORCHVISION_URL", url)
    yield url, asked
    server.shutdown()


def _closed_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # nothing listens once it is closed


def test_default_weights_offline_is_one_line_naming_the_alternatives(
    torch_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import time

    monkeypatch.setenv("HAQ_TORCHVISION_URL", f"http://127.0.0.1:{_closed_port()}/")
    t0 = time.time()
    with pytest.raises(HaqError) as info:
        load_model("resnet50", "default")
    msg = str(info.value)
    assert time.time() - t0 < 10
    assert msg.startswith(
        "cannot download the torchvision weights of resnet50 from 127.0.0.1 (no network"
    )
    assert "resnet50-11ad3fa6.pth" in msg and str(torch_home) in msg
    assert "--weights PATH" in msg and "--weights none" in msg and "\n" not in msg
    assert not torch_home.exists() or not any(torch_home.iterdir())


def test_default_weights_download_checks_the_hash(torch_home: Path, mirror: tuple) -> None:
    """torch's downloader fetches the file from the mirror; a file whose hash differs from the
    one in its name is refused in one line and not kept in the cache."""
    url, asked = mirror
    with pytest.raises(HaqError) as info:
        load_model("resnet18", "default")
    msg = str(info.value)
    assert asked == ["/resnet18-f37072fd.pth"]
    assert (
        f"the weights downloaded for resnet18 from {url}resnet18-f37072fd.pth fail their checksum"
        in msg
    )
    assert "--weights none" in msg and "\n" not in msg
    assert not (torch_home / "resnet18-f37072fd.pth").exists()


def test_download_fetches_into_the_cache_with_the_hash_checked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The success path of `download_weights`: a file whose name carries the prefix of its
    sha256 (as torchvision's do) comes from the mirror into the cache, whole."""
    import hashlib
    import http.server
    import threading

    from haq.models.zoo import download_weights

    body = b"weights " * 4096
    name = f"tiny-{hashlib.sha256(body).hexdigest()[:8]}.pth"
    served = tmp_path / "mirror"
    served.mkdir()
    (served / name).write_bytes(body)
    handler = lambda *a, **k: http.server.SimpleHTTPRequestHandler(*a, directory=str(served), **k)  # noqa: E731
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    monkeypatch.setenv("HAQ_TORCHVISION_URL", f"http://127.0.0.1:{server.server_address[1]}")
    try:
        dest = tmp_path / "hub" / "checkpoints" / name
        download_weights("tiny", f"https://download.pytorch.org/models/{name}", dest)
    finally:
        server.shutdown()
    assert dest.read_bytes() == body


def test_any_torchvision_classifier_by_name() -> None:
    """Names torchvision knows but haq's table does not: entries from torchvision's own
    weights metadata and transforms."""
    e = get_entry("regnet_x_400mf")
    tf = models.get_model_weights("regnet_x_400mf").DEFAULT.transforms()
    assert e.family == "torchvision" and e.num_classes == 1000
    assert e.preprocess.input_size == (3, tf.crop_size[0], tf.crop_size[0])
    assert e.preprocess.resize == tf.resize_size[0]
    lm = load_model("regnet_x_400mf", "none")
    assert lm.model(lm.example_input()).shape == (1, 1000)
    with pytest.raises(HaqError, match="any torchvision classifier's name"):
        get_entry("fcn_resnet50")  # a segmentation model, not a classifier


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
