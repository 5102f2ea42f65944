"""CIFAR-10 ResNets of "Deep Residual Learning" (He et al. 2016, section 4.2).

Three stages of 16/32/64 channels, 3x3 convs and option-A shortcuts (stride-2 subsampling plus
zero-padded channels, no 1x1 projection). Module names match Yerlan Idelbayev's widely used
checkpoints (``conv1``/``bn1``, ``layerN.i.conv1/bn1/conv2/bn2``, ``linear``), so those load
as they are. Every op is a plain module (no lambdas) so the net is ONNX-exportable and hooks
see every ReLU.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from haq.errors import HaqError
from haq.models.registry import ModelEntry, Preprocess, register
from haq.models.weights import load_state_dict_file, warn_random_weights

CIFAR_PREPROCESS = Preprocess(
    input_size=(3, 32, 32), mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225)
)
DEPTHS = {20: 3, 32: 5, 44: 7, 56: 9}  # depth -> blocks per stage, depth = 6n + 2


class ShortcutA(nn.Module):
    """Option-A shortcut: take every other pixel and zero-pad the new channels equally.

    Parameter-free, so it adds nothing a quantizer has to handle.
    """

    def __init__(self, planes: int) -> None:
        super().__init__()
        self.pad = planes // 4

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.pad(x[:, :, ::2, ::2], (0, 0, 0, 0, self.pad, self.pad))


class BasicBlock(nn.Module):
    """Two 3x3 conv-BN pairs and a residual; the first conv carries the stride."""

    def __init__(self, in_planes: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu1 = nn.ReLU()
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.relu2 = nn.ReLU()
        self.shortcut: nn.Module = (
            ShortcutA(planes) if stride != 1 or in_planes != planes else nn.Identity()
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu1(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu2(out + self.shortcut(x))


class CifarResNet(nn.Module):
    """Stem conv, three stages of ``blocks`` BasicBlocks, global average pool, linear head."""

    def __init__(self, blocks: int, num_classes: int = 10) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 16, 3, stride=1, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        self.relu = nn.ReLU()
        in_planes = 16
        stages = []
        for planes, stride in ((16, 1), (32, 2), (64, 2)):
            layers = []
            for i in range(blocks):
                layers.append(BasicBlock(in_planes, planes, stride if i == 0 else 1))
                in_planes = planes
            stages.append(nn.Sequential(*layers))
        self.layer1, self.layer2, self.layer3 = stages
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.linear = nn.Linear(64, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d | nn.Linear):
                nn.init.kaiming_normal_(m.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.layer3(self.layer2(self.layer1(out)))
        return self.linear(torch.flatten(self.pool(out), 1))


def cifar_resnet(depth: int, num_classes: int = 10) -> CifarResNet:
    """A randomly initialised CIFAR ResNet of ``depth`` (20, 32, 44 or 56)."""
    if depth not in DEPTHS:
        raise HaqError(f"no CIFAR ResNet of depth {depth}; use one of {sorted(DEPTHS)}")
    return CifarResNet(DEPTHS[depth], num_classes)


def _builder(depth: int, name: str) -> Callable[[str], nn.Module]:
    def build(weights: str) -> torch.nn.Module:
        """Build ``name``; its weights always come from a file (none ship with haq)."""
        model = cifar_resnet(depth)
        if weights == "default":
            raise HaqError(
                f"{name} has no built-in weights; pass --weights PATH "
                "(a {'state_dict': ...} checkpoint) or --weights none"
            )
        if weights == "none":
            warn_random_weights(name)
            return model.eval()
        return load_state_dict_file(model, weights, name).eval()

    return build


for _depth in DEPTHS:
    _name = f"cifar_resnet{_depth}"
    register(
        ModelEntry(
            name=_name,
            build=_builder(_depth, _name),
            preprocess=CIFAR_PREPROCESS,
            num_classes=10,
            description=(
                f"ResNet-{_depth} for CIFAR-10 (He et al. 2016: 16/32/64 channels, option-A "
                f"shortcuts, {_depth} conv/linear layers); no built-in weights, pass a "
                f"checkpoint such as Idelbayev's resnet{_depth}-*.th"
            ),
            family="cifar",
            default_data=None,
            tags=("cifar10", "resnet"),
        )
    )
