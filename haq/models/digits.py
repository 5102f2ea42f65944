"""``digits_cnn``: the embedded default model that works anywhere, offline, in seconds.

A small CNN for scikit-learn's 8x8 digits, trained deterministically on first use and cached,
so haq can demonstrate a full search (regular, depthwise and linear layers) with no
downloads and no user data.
"""

from __future__ import annotations

import io
import logging
import time
from pathlib import Path

import torch
from torch import nn

from haq.io import atomic_write_bytes
from haq.models.registry import ModelEntry, Preprocess, register
from haq.models.weights import load_state_dict_file, warn_random_weights
from haq.paths import cache_dir

log = logging.getLogger(__name__)

NAME = "digits_cnn"
VERSION = 2  # bump when the architecture or the training recipe changes
DIGITS_PREPROCESS = Preprocess(input_size=(1, 8, 8), mean=(0.5,), std=(0.5,), grayscale=True)
SEED = 0
EPOCHS = 8
BATCH = 128
LR = 1e-2


class DigitsCNN(nn.Module):
    """conv -> strided conv -> depthwise conv -> pointwise conv -> two Linear layers."""

    def __init__(self, num_classes: int = 10) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 16, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        self.relu1 = nn.ReLU()
        self.conv2 = nn.Conv2d(16, 32, 3, stride=2, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(32)
        self.relu2 = nn.ReLU()
        self.conv3_dw = nn.Conv2d(32, 32, 3, padding=1, groups=32, bias=False)
        self.bn3 = nn.BatchNorm2d(32)
        self.relu3 = nn.ReLU()
        self.conv4_pw = nn.Conv2d(32, 64, 1, bias=False)
        self.bn4 = nn.BatchNorm2d(64)
        self.relu4 = nn.ReLU()
        self.fc1 = nn.Linear(64 * 4 * 4, 64)
        self.relu5 = nn.ReLU()
        self.fc2 = nn.Linear(64, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu1(self.bn1(self.conv1(x)))
        x = self.relu2(self.bn2(self.conv2(x)))
        x = self.relu3(self.bn3(self.conv3_dw(x)))
        x = self.relu4(self.bn4(self.conv4_pw(x)))
        x = self.relu5(self.fc1(torch.flatten(x, 1)))
        return self.fc2(x)


def _normalise(x: torch.Tensor) -> torch.Tensor:
    """[0, 1] images to the network's input range, exactly as `DIGITS_PREPROCESS` does."""
    mean, std = DIGITS_PREPROCESS.mean[0], DIGITS_PREPROCESS.std[0]
    return (x - mean) / std


def cache_path() -> Path:
    """Where the trained state dict lives (versioned, so recipe changes retrain)."""
    return cache_dir() / f"{NAME}-v{VERSION}.pt"


def train_digits_cnn() -> DigitsCNN:
    """Train from a fixed seed on the digits 'train' split (a few seconds on 2 cores).

    The global RNG state is left as it was, so building the model never perturbs the
    caller's randomness.
    """
    from haq.data.digits import digits_arrays

    x_np, y_np = digits_arrays("train")
    x = _normalise(torch.from_numpy(x_np))
    y = torch.from_numpy(y_np)
    start = time.perf_counter()
    # One thread: the net is too small to gain from more, oversubscribed CPUs make OpenMP
    # threads crawl (seconds become a minute), and the result no longer depends on the host.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        model = _train(x, y)
    finally:
        torch.set_num_threads(threads)
    log.info("trained %s in %.1f s", NAME, time.perf_counter() - start)
    return model


def _train(x: torch.Tensor, y: torch.Tensor) -> DigitsCNN:
    """The fixed training recipe (Adam, one-cycle schedule, seeded init and shuffling)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(SEED)
        model = DigitsCNN()
        gen = torch.Generator().manual_seed(SEED)
        opt = torch.optim.Adam(model.parameters(), lr=LR)
        sched = torch.optim.lr_scheduler.OneCycleLR(
            opt, max_lr=LR, total_steps=EPOCHS * ((len(y) + BATCH - 1) // BATCH)
        )
        loss_fn = nn.CrossEntropyLoss()
        model.train()
        for _ in range(EPOCHS):
            order = torch.randperm(len(y), generator=gen)
            for i in range(0, len(y), BATCH):
                idx = order[i : i + BATCH]
                opt.zero_grad()
                loss_fn(model(x[idx]), y[idx]).backward()
                opt.step()
                sched.step()
    return model.eval()


def _load_cached(path: Path) -> DigitsCNN | None:
    """The cached model, or None when the cache is absent or unusable (then we retrain)."""
    if not path.is_file():
        return None
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
        with torch.random.fork_rng(devices=[]):  # construction draws random init weights
            model = DigitsCNN()
        model.load_state_dict(state)
        return model.eval()
    except Exception as exc:  # a stale or damaged cache is ours to replace, not the user's
        log.warning("ignoring unusable %s cache %s (%s); retraining", NAME, path, exc)
        return None


def trained_digits_cnn() -> DigitsCNN:
    """The trained model: from the cache, else trained now and cached atomically."""
    path = cache_path()
    model = _load_cached(path)
    if model is not None:
        return model
    model = train_digits_cnn()
    buf = io.BytesIO()
    torch.save(model.state_dict(), buf)
    atomic_write_bytes(path, buf.getvalue())
    return model


def build(weights: str) -> nn.Module:
    """``default``: trained and cached; ``none``: random; else a checkpoint file."""
    if weights == "default":
        return trained_digits_cnn()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(SEED)
        model = DigitsCNN()
    if weights == "none":
        warn_random_weights(NAME)
        return model.eval()
    return load_state_dict_file(model, weights, NAME).eval()


register(
    ModelEntry(
        name=NAME,
        build=build,
        preprocess=DIGITS_PREPROCESS,
        num_classes=10,
        description=(
            "small CNN for scikit-learn's 8x8 digits (conv, strided conv, depthwise, "
            "pointwise, 2 Linear); trained on first use in seconds and cached, works offline"
        ),
        family="embedded",
        default_data="digits",
        tags=("digits", "depthwise", "offline"),
    )
)
