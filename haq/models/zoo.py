"""torchvision ImageNet classifiers, registered under torchvision's own names.

Twelve are described below; any other torchvision classification model is registered on
first request by its torchvision name (`torchvision_entry`: ``densenet121``, ``regnet_x_400mf``).
Pretrained weights come from the local torch hub cache, or are downloaded into it by torch's
own downloader (progress on stderr, the file's hash checked) when the download host answers
within seconds; offline, one line says to pass ``--weights PATH`` or ``--weights none``.
``HAQ_TORCHVISION_URL`` points the download at a mirror of torchvision's weight files.

The preprocessing table below copies each DEFAULT weights' ``transforms()`` (a test checks it
still matches torchvision) so listing models does not have to import ``torchvision.models``.
One known gap: torchvision resizes efficientnet_b0's inputs bicubic, `Preprocess` bilinear.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from haq.errors import HaqError
from haq.models.registry import ModelEntry, Preprocess, register
from haq.models.weights import load_state_dict_file, warn_random_weights

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class ZooModel:
    """What haq needs to know about one torchvision classifier and its DEFAULT weights."""

    name: str  # torchvision.models.get_model name
    title: str
    weights: str  # DEFAULT weights enum member, e.g. "ResNet50_Weights.IMAGENET1K_V2"
    filename: str  # file name of those weights in <torch hub>/checkpoints
    resize: int
    crop: int
    top1: float  # ImageNet-1k acc@1 torchvision reports for the DEFAULT weights
    params_m: float
    gflops: float
    note: str = ""
    tags: tuple[str, ...] = ()


ZOO: tuple[ZooModel, ...] = (
    ZooModel("resnet18", "ResNet-18", "ResNet18_Weights.IMAGENET1K_V1", "resnet18-f37072fd.pth",
             256, 224, 69.758, 11.7, 1.814, tags=("resnet",)),
    ZooModel("resnet34", "ResNet-34", "ResNet34_Weights.IMAGENET1K_V1", "resnet34-b627a593.pth",
             256, 224, 73.314, 21.8, 3.664, tags=("resnet",)),
    ZooModel("resnet50", "ResNet-50", "ResNet50_Weights.IMAGENET1K_V2", "resnet50-11ad3fa6.pth",
             232, 224, 80.858, 25.6, 4.089, tags=("resnet",)),
    ZooModel("resnet101", "ResNet-101", "ResNet101_Weights.IMAGENET1K_V2",
             "resnet101-cd907fc2.pth", 232, 224, 81.886, 44.5, 7.801, tags=("resnet",)),
    ZooModel("mobilenet_v2", "MobileNetV2", "MobileNet_V2_Weights.IMAGENET1K_V2",
             "mobilenet_v2-7ebf99e0.pth", 232, 224, 72.154, 3.5, 0.301,
             note="depthwise-separable", tags=("depthwise",)),
    ZooModel("mobilenet_v3_large", "MobileNetV3-Large", "MobileNet_V3_Large_Weights.IMAGENET1K_V2",
             "mobilenet_v3_large-5c1a4163.pth", 232, 224, 75.274, 5.5, 0.217,
             note="depthwise + squeeze-excite", tags=("depthwise",)),
    ZooModel("mobilenet_v3_small", "MobileNetV3-Small", "MobileNet_V3_Small_Weights.IMAGENET1K_V1",
             "mobilenet_v3_small-047dcff4.pth", 256, 224, 67.668, 2.5, 0.057,
             note="depthwise + squeeze-excite", tags=("depthwise",)),
    ZooModel("efficientnet_b0", "EfficientNet-B0", "EfficientNet_B0_Weights.IMAGENET1K_V1",
             "efficientnet_b0_rwightman-7f5810bc.pth", 256, 224, 77.692, 5.3, 0.386,
             note="depthwise + squeeze-excite", tags=("depthwise",)),
    ZooModel("shufflenet_v2_x1_0", "ShuffleNetV2 1.0x", "ShuffleNet_V2_X1_0_Weights.IMAGENET1K_V1",
             "shufflenetv2_x1-5666bf0f80.pth", 256, 224, 69.362, 2.3, 0.145,
             note="depthwise + channel shuffle", tags=("depthwise",)),
    ZooModel("regnet_y_400mf", "RegNetY-400MF", "RegNet_Y_400MF_Weights.IMAGENET1K_V2",
             "regnet_y_400mf-e6988f5f.pth", 232, 224, 75.804, 4.3, 0.402,
             note="grouped convs + squeeze-excite", tags=("grouped",)),
    ZooModel("convnext_tiny", "ConvNeXt-Tiny", "ConvNeXt_Tiny_Weights.IMAGENET1K_V1",
             "convnext_tiny-983f1562.pth", 236, 224, 82.52, 28.6, 4.456,
             note="7x7 depthwise + Linear MLPs", tags=("depthwise", "linear-heavy")),
    ZooModel("vit_b_16", "ViT-B/16", "ViT_B_16_Weights.IMAGENET1K_V1", "vit_b_16-c867db91.pth",
             256, 224, 81.072, 86.6, 17.564,
             note="transformer, attention projections as explicit Linear layers",
             tags=("transformer", "linear-heavy")),
)  # fmt: skip


class SelfAttention(nn.Module):
    """Drop-in for a batch-first self-attention ``nn.MultiheadAttention``, with its input and
    output projections as real ``nn.Linear`` modules.

    ``nn.MultiheadAttention`` keeps the QKV projection as a bare parameter and calls
    ``out_proj`` functionally, so forward hooks (layer discovery, quantizers) never see a
    third of a ViT's Linear compute; this module makes it visible.
    """

    def __init__(self, mha: nn.MultiheadAttention) -> None:
        super().__init__()
        if not mha.batch_first or not mha._qkv_same_embed_dim or mha.in_proj_bias is None:
            raise ValueError("only batch-first self-attention with packed QKV bias is supported")
        dim = mha.embed_dim
        self.num_heads = mha.num_heads
        self.dropout = float(mha.dropout)
        self.in_proj = nn.Linear(dim, 3 * dim)
        self.out_proj = nn.Linear(dim, dim, bias=mha.out_proj.bias is not None)
        with torch.no_grad():
            self.in_proj.weight.copy_(mha.in_proj_weight)
            self.in_proj.bias.copy_(mha.in_proj_bias)
            self.out_proj.weight.copy_(mha.out_proj.weight)
            if mha.out_proj.bias is not None:
                self.out_proj.bias.copy_(mha.out_proj.bias)

    def forward(
        self,
        query: torch.Tensor,
        key: torch.Tensor,
        value: torch.Tensor,
        need_weights: bool = False,
    ) -> tuple[torch.Tensor, None]:
        # Self-attention only: key and value are the query (as in torchvision's EncoderBlock).
        b, n, d = query.shape
        qkv = self.in_proj(query).reshape(b, n, 3, self.num_heads, d // self.num_heads)
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)
        drop = self.dropout if self.training else 0.0
        out = F.scaled_dot_product_attention(q, k, v, dropout_p=drop)
        return self.out_proj(out.transpose(1, 2).reshape(b, n, d)), None


def expose_attention(model: nn.Module) -> nn.Module:
    """Replace every ``nn.MultiheadAttention`` of a torchvision ViT by `SelfAttention`.

    Done after the weights are loaded, so torchvision-format checkpoints keep working.
    """
    for parent in list(model.modules()):
        for child_name, child in list(parent.named_children()):
            if isinstance(child, nn.MultiheadAttention):
                setattr(parent, child_name, SelfAttention(child))
    return model


def hub_checkpoint_path(filename: str) -> Path:
    """Where ``torch.hub`` keeps (and torchvision looks for) a downloaded weights file."""
    return Path(torch.hub.get_dir()) / "checkpoints" / filename


MIRROR_ENV = "HAQ_TORCHVISION_URL"  # base URL of a mirror of torchvision's weight files
CONNECT_TIMEOUT_S = 5.0  # the download host must answer within this, or we are offline
READ_TIMEOUT_S = 30.0  # a download that stalls this long fails


def _default_weights(spec: ZooModel) -> nn.Module:
    """The DEFAULT pretrained model, from the hub cache (downloaded into it if missing)."""
    from torchvision import models

    enum = models.get_model_weights(spec.name).DEFAULT
    filename = Path(enum.url).name
    cached = hub_checkpoint_path(filename)
    if not cached.is_file():
        download_weights(spec.name, enum.url, cached)
    try:
        return models.get_model(spec.name, weights=enum)
    except Exception as exc:
        first = (str(exc).strip().splitlines() or [""])[0]
        raise HaqError(
            f"cached torchvision weights {cached} for {spec.name} are unreadable "
            f"({type(exc).__name__}: {first}); delete the file and fetch it again, "
            "or pass --weights PATH / --weights none"
        ) from exc


def download_weights(name: str, url: str, dest: Path) -> None:
    """Download ``url`` into ``dest`` with torch's downloader (progress bar, the hash in the
    file name checked, nothing left behind on failure); a host that does not answer within
    `CONNECT_TIMEOUT_S` is an offline one-line `HaqError` naming the alternatives."""
    import os
    import socket
    import urllib.error
    from urllib.parse import urlsplit

    from torch.hub import HASH_REGEX, download_url_to_file

    mirror = os.environ.get(MIRROR_ENV)
    if mirror:
        url = mirror.rstrip("/") + "/" + dest.name
    parts = urlsplit(url)
    host, port = parts.hostname or "", parts.port or (443 if parts.scheme == "https" else 80)
    instead = (f"pass --weights PATH (e.g. {dest.name} fetched elsewhere, or put it in "
               f"{dest.parent}) or --weights none")  # fmt: skip
    try:
        socket.create_connection((host, port), timeout=CONNECT_TIMEOUT_S).close()
    except OSError as e:
        raise HaqError(f"cannot download the torchvision weights of {name} from {host} (no "
                       f"network: {e.strerror or e}); {instead}") from None  # fmt: skip
    match = HASH_REGEX.search(dest.name)
    dest.parent.mkdir(parents=True, exist_ok=True)
    from haq.progress import emit, mode

    emit("download", f"downloading the torchvision weights of {name} into {dest}", url=url)
    old = socket.getdefaulttimeout()
    socket.setdefaulttimeout(READ_TIMEOUT_S)
    try:
        download_url_to_file(url, str(dest), hash_prefix=match.group(1) if match else None,
                             progress=mode() == "auto")  # fmt: skip
    except RuntimeError as e:  # torch: "invalid hash value (expected ..., got ...)"
        dest.unlink(missing_ok=True)
        raise HaqError(f"the weights downloaded for {name} from {url} fail their checksum "
                       f"({str(e).strip()}); nothing was kept; try again, or {instead}") from None  # fmt: skip
    except (OSError, urllib.error.URLError) as e:
        dest.unlink(missing_ok=True)
        raise HaqError(f"downloading the torchvision weights of {name} from {url} failed "
                       f"({e}); {instead}") from None  # fmt: skip
    finally:
        socket.setdefaulttimeout(old)


def _builder(spec: ZooModel) -> Callable[[str], nn.Module]:
    def build(weights: str) -> nn.Module:
        """``default``: torchvision's weights; ``none``: random; else a checkpoint."""
        from torchvision import models

        if weights == "default":
            model = _default_weights(spec)
        else:
            model = models.get_model(spec.name, weights=None, num_classes=1000)
            if weights == "none":
                warn_random_weights(spec.name)
            else:
                load_state_dict_file(model, weights, spec.name)
        if "transformer" in spec.tags:
            expose_attention(model)
        return model.eval()

    return build


def _entry(spec: ZooModel) -> ModelEntry:
    note = f", {spec.note}" if spec.note else ""
    return ModelEntry(
        name=spec.name,
        build=_builder(spec),
        preprocess=Preprocess(
            input_size=(3, spec.crop, spec.crop),
            mean=IMAGENET_MEAN,
            std=IMAGENET_STD,
            resize=spec.resize,
            crop=spec.crop,
        ),
        num_classes=1000,
        description=(
            f"{spec.title} (torchvision, ImageNet-1k, {spec.params_m:.1f}M params, "
            f"{spec.gflops:g} GFLOPs{note}); default weights {spec.weights.split('.')[-1]} "
            f"({spec.top1:.1f}% top-1), downloaded into the torch hub cache when missing"
        ),
        family="torchvision",
        default_data=None,
        tags=("imagenet", *spec.tags),
    )


for _spec in ZOO:
    register(_entry(_spec))


def torchvision_entry(name: str) -> ModelEntry | None:
    """A registry entry for any torchvision classification model, from its DEFAULT weights'
    metadata and transforms; None when torchvision has no classifier of that name."""
    from torchvision import models

    if name not in models.list_models(module=models):
        return None
    weights = models.get_model_weights(name)
    enum = weights.DEFAULT
    t = enum.transforms()
    meta = enum.meta
    spec = ZooModel(
        name, name, f"{weights.__name__}.{enum.name}", Path(enum.url).name,
        resize=int(t.resize_size[0]), crop=int(t.crop_size[0]),
        top1=float(meta["_metrics"]["ImageNet-1K"]["acc@1"]),
        params_m=meta["num_params"] / 1e6, gflops=float(meta.get("_ops", 0.0)),
        note="registered from torchvision on request",
        tags=("transformer",) if name.startswith("vit_") else (),
    )  # fmt: skip
    return _entry(spec)
