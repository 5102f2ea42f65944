"""Shared fixtures. ``../shared`` (real CIFAR data and checkpoints) is optional: tests that
need it take the ``shared`` fixture and skip with a reason when it is absent."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("HAQ_SHARED_DIR", ROOT.parent / "shared"))


@pytest.fixture(scope="session")
def shared() -> Path:
    if not (SHARED / "models" / "resnet20-12fca82f.th").is_file():
        pytest.skip(f"needs ../shared (CIFAR data and checkpoints), not found at {SHARED}")
    return SHARED


@pytest.fixture(autouse=True)
def _isolate_cache(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Keep tests out of the user's cache, but share one cache across the session."""
    cache = tmp_path_factory.getbasetemp() / "haq-cache"
    monkeypatch.setenv("HAQ_CACHE_DIR", str(cache))


@pytest.fixture(autouse=True)
def _threads() -> None:
    torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))
