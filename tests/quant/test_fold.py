import copy

import torch
from torch import nn

from haq.quant.fold import find_conv_bn_pairs, fold_batchnorm


class Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 8, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(8)
        self.block = nn.Sequential(
            nn.Conv2d(8, 8, 3, padding=1, groups=8), nn.BatchNorm2d(8), nn.ReLU()
        )
        self.head_bn = nn.BatchNorm2d(8)  # fed by a ReLU, not a conv: must stay
        self.fc = nn.Linear(8, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.bn1(self.conv1(x)))
        x = self.head_bn(self.block(x))
        return self.fc(x.mean(dim=(2, 3)))


def _randomise_bn(model: nn.Module) -> None:
    g = torch.Generator().manual_seed(0)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.normal_(0, 0.5, generator=g)
            m.running_var.uniform_(0.5, 2.0, generator=g)
            m.weight.data.normal_(1, 0.2, generator=g)
            m.bias.data.normal_(0, 0.2, generator=g)


def test_pairs_follow_dataflow_not_names() -> None:
    model = Net().eval()
    pairs = find_conv_bn_pairs(model, torch.randn(1, 3, 8, 8))
    assert pairs == [("conv1", "bn1"), ("block.0", "block.1")]


def test_fold_preserves_outputs() -> None:
    model = Net().eval()
    _randomise_bn(model)
    x = torch.randn(4, 3, 8, 8)
    ref = model(x)
    folded = copy.deepcopy(model)
    fold_batchnorm(folded, x)
    assert isinstance(folded.bn1, nn.Identity) and isinstance(folded.block[1], nn.Identity)
    assert isinstance(folded.head_bn, nn.BatchNorm2d)
    torch.testing.assert_close(folded(x), ref, atol=1e-5, rtol=1e-5)
