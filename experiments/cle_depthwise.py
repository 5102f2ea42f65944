"""Does cross-layer equalization rescue per-tensor weights on a BatchNorm + ReLU6 depthwise net?

Trains (CPU, one thread, seed 0) a small MobileNetV2-style network (inverted residual blocks:
1x1 expand, 3x3 depthwise, 1x1 project, BatchNorm + ReLU6) on the 10,000 CIFAR-10 train JPEGs
of ../shared, saves it as experiments/results/cle_depthwise.pt (reused when present), then
scores on the full test split: fp32, and per-tensor weights at w8a8 / w6a8 / w4a8 with
``--ptq none``, ``cle`` (ReLU6 -> ReLU, equalization, high-bias absorption) and CLE without
absorption, plus per-channel weights for reference. Calibration: 256 train images. The fp32
top-1 of each CLE quantizer's float model is recorded too: replacing the ReLU6s (and absorbing
biases) changes the float function, unlike the scaling itself. Also recorded, to read the
result by: how uneven the depthwise convs' channel ranges are (what CLE evens out) and how many
channels have a BatchNorm shift above 3 sigma (what absorption moves).

    python experiments/cle_depthwise.py [--epochs 6]
"""

from __future__ import annotations

import argparse
import copy
import time
from typing import Any

import torch
from torch import nn

from common import RESULTS, SHARED, save

CHECKPOINT = RESULTS / "cle_depthwise.pt"
DATA = SHARED / "data" / "cifar10-jpeg"
BLOCKS = [(1, 16, 1, 1), (6, 24, 2, 1), (6, 32, 2, 2), (6, 64, 2, 2), (6, 96, 1, 1)]  # t, c, n, s
CONFIGS = ["w8a8", "w6a8", "w4a8"]


def _conv_bn(cin: int, cout: int, kernel: int, stride: int = 1, groups: int = 1,
             act: bool = True) -> list[nn.Module]:  # fmt: skip
    conv = nn.Conv2d(cin, cout, kernel, stride, kernel // 2, groups=groups, bias=False)
    return [conv, nn.BatchNorm2d(cout), *([nn.ReLU6(inplace=True)] if act else [])]


class InvertedResidual(nn.Module):
    """MobileNetV2's block: expand, depthwise, linear projection, residual when shapes match."""

    def __init__(self, cin: int, cout: int, stride: int, expand: int) -> None:
        super().__init__()
        hidden = cin * expand
        layers = _conv_bn(cin, hidden, 1) if expand != 1 else []
        layers += _conv_bn(hidden, hidden, 3, stride, groups=hidden)
        layers += _conv_bn(hidden, cout, 1, act=False)
        self.conv = nn.Sequential(*layers)
        self.residual = stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv(x) if self.residual else self.conv(x)


class DepthwiseNet(nn.Module):
    """MobileNetV2 shrunk for 32x32 inputs: 16x16 after the stem, 4x4 at the end, 0.2 M
    parameters (what one CPU thread trains in about a minute an epoch)."""

    def __init__(self, num_classes: int = 10) -> None:
        super().__init__()
        layers: list[nn.Module] = _conv_bn(3, 16, 3, stride=2)
        cin = 16
        for t, c, n, s in BLOCKS:
            for i in range(n):
                layers.append(InvertedResidual(cin, c, s if i == 0 else 1, t))
                cin = c
        layers += _conv_bn(cin, 320, 1)
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Linear(320, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x).mean(dim=(2, 3)))


def _augment(x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    """Random 4-pixel-padded crops and horizontal flips, per batch on tensors."""
    n = x.shape[0]
    padded = nn.functional.pad(x, (4, 4, 4, 4), mode="reflect")
    dx, dy = torch.randint(0, 9, (2,), generator=g).tolist()
    out = padded[:, :, dy : dy + 32, dx : dx + 32]
    flip = torch.rand(n, generator=g) < 0.5
    return torch.where(flip.reshape(-1, 1, 1, 1), out.flip(3), out)


def _train(epochs: int, batch: int = 128) -> tuple[DepthwiseNet, dict[str, Any]]:
    from haq.data import load_data
    from haq.models.cifar_resnet import CIFAR_PREPROCESS

    torch.manual_seed(0)
    train = load_data(str(DATA / "train"), CIFAR_PREPROCESS)
    assert train.y is not None
    net = DepthwiseNet().to(memory_format=torch.channels_last)  # ~25% faster on CPU
    opt = torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9, weight_decay=4e-5, nesterov=True)
    steps = epochs * ((len(train) + batch - 1) // batch)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, 0.2, total_steps=steps, pct_start=0.25)
    g = torch.Generator().manual_seed(0)
    start, log = time.perf_counter(), []
    for epoch in range(epochs):
        net.train()
        order = torch.randperm(len(train), generator=g)
        total, correct = 0.0, 0
        for i in range(0, len(train), batch):
            idx = order[i : i + batch]
            x = _augment(train.x[idx], g).contiguous(memory_format=torch.channels_last)
            y = train.y[idx]
            logits = net(x)
            loss = nn.functional.cross_entropy(logits, y)
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            total += float(loss.detach()) * len(idx)
            correct += int((logits.argmax(1) == y).sum())
        log.append({"epoch": epoch + 1, "loss": round(total / len(train), 4),
                    "train_top1": round(100 * correct / len(train), 2),
                    "seconds": round(time.perf_counter() - start, 1)})  # fmt: skip
        print(f"epoch {epoch + 1}: loss {log[-1]['loss']:.3f}, train top-1 "
              f"{log[-1]['train_top1']:.1f}%, {log[-1]['seconds']:.0f} s", flush=True)  # fmt: skip
    net = net.to(memory_format=torch.contiguous_format).eval()
    return net, {"epochs": epochs, "batch": batch, "log": log,
                        "seconds": round(time.perf_counter() - start, 1)}  # fmt: skip


def _score(name: str, loaded: Any, model: nn.Module, settings: Any, setup: Any,
           float_changed: bool) -> dict[str, float]:  # fmt: skip
    """CONFIGS top-1 on the test split, and fp32 where the quantizer's float model is not the
    trained one."""
    from haq.evaluate.evaluator import LocalEvaluator
    from haq.quant import Quantizer

    start = time.perf_counter()
    q = Quantizer(model, loaded.example_input(), settings, calibration_images=setup.calib.x)
    evaluator = LocalEvaluator(q, setup.data, reuse_prefixes=False)
    configs = ["fp32", *CONFIGS] if float_changed else CONFIGS
    out = {c: evaluator.evaluate(c).metrics.top1 for c in configs}
    print(f"  {name:<25} {len(q.equalized):>2} pairs: "
          + ", ".join(f"{c} {v:.2f}%" for c, v in out.items())
          + f" ({time.perf_counter() - start:.0f} s)", flush=True)  # fmt: skip
    return {**out, "pairs": len(q.equalized)}


def _diagnostics(net: nn.Module, x: torch.Tensor) -> dict[str, Any]:
    """Depthwise channel-range spread (max / median range per layer) folded vs after CLE, and
    the channels whose BatchNorm shift exceeds 3 sigma."""
    from haq.quant.equalize import equalize
    from haq.quant.fold import fold_batchnorm

    folded, equalized = copy.deepcopy(net), copy.deepcopy(net)
    fold_batchnorm(folded, x)
    equalize(equalized, x, fold_batchnorm(equalized, x))
    spread: dict[str, list[float]] = {"folded": [], "cle": []}
    for key, model in (("folded", folded), ("cle", equalized)):
        for m in model.modules():
            if isinstance(m, nn.Conv2d) and m.groups == m.in_channels > 1:
                r = m.weight.detach().abs().amax(dim=(1, 2, 3))
                spread[key].append(round(float(r.max() / r.median()), 2))
    stats = fold_batchnorm(copy.deepcopy(net), x)
    high = sum(int((f.beta > 3 * f.gamma).sum()) for f in stats)
    return {"dw_range_max_over_median": spread, "bn_channels": sum(len(f.beta) for f in stats),
            "bn_channels_beta_above_3_gamma": high}  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--epochs", type=int, default=6)
    args = ap.parse_args()
    if not (DATA / "train").is_dir() or not (DATA / "test").is_dir():
        print(f"skipped: needs the CIFAR-10 JPEG folders of ../shared, not found at {DATA}")
        return
    from haq.evaluate import build_setup
    from haq.models.cifar_resnet import CIFAR_PREPROCESS
    from haq.models.registry import LoadedModel, ModelEntry
    from haq.quant import QuantSettings
    from haq.quant.equalize import equalize
    from haq.quant.fold import fold_batchnorm

    torch.set_num_threads(1)
    net = DepthwiseNet().eval()
    if CHECKPOINT.is_file():  # the training record travels with the weights
        saved = torch.load(CHECKPOINT, weights_only=True)
        net.load_state_dict(saved["state_dict"])
        training = {**saved["training"], "checkpoint": "reused"}
    else:
        net, training = _train(args.epochs)
        torch.save({"state_dict": net.state_dict(), "training": training}, CHECKPOINT)
    entry = ModelEntry("cle_depthwise", lambda _w: net, CIFAR_PREPROCESS, 10,
                       "MobileNetV2-style net of experiments/cle_depthwise.py", "custom")  # fmt: skip
    loaded = LoadedModel("cle_depthwise", net, entry, str(CHECKPOINT))
    setup = build_setup(loaded, data=str(DATA / "test"), calib_data=str(DATA / "train"))
    no_absorb = copy.deepcopy(net)  # CLE without absorption: equalized here, with no BN stats
    fold_batchnorm(no_absorb, loaded.example_input())
    no_absorb_pairs = len(equalize(no_absorb, loaded.example_input()))
    rows = {"fp32": setup.evaluator.evaluate("fp32").metrics.top1}
    print(f"fp32 {rows['fp32']:.2f}% on {len(setup.data)} test images", flush=True)
    for name, model, settings in [
        ("tensor/none", net, QuantSettings(granularity="tensor")),
        ("tensor/cle", net, QuantSettings(granularity="tensor", ptq="cle")),
        ("tensor/cle-no-absorption", no_absorb, QuantSettings(granularity="tensor")),
        ("channel/none", net, QuantSettings()),
        ("channel/cle", net, QuantSettings(ptq="cle")),
    ]:
        rows[name] = _score(
            name, loaded, model, settings, setup, model is no_absorb or settings.cle
        )
    rows["tensor/cle-no-absorption"]["pairs"] = no_absorb_pairs
    diagnostics = _diagnostics(net, loaded.example_input())
    print(f"diagnostics: {diagnostics}")
    params = sum(p.numel() for p in net.parameters())
    save("cle_depthwise", {"training": training, "params": params, "test_images": len(setup.data),
                           "calibration_images": len(setup.calib.x), "top1": rows,
                           "diagnostics": diagnostics})  # fmt: skip


if __name__ == "__main__":
    main()
