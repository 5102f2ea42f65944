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


@pytest.fixture(scope="session", autouse=True)
def _isolate_user_dirs(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Keep tests (module-scoped fixtures too) out of the user's cache and table overlay, but
    share one of each across the session."""
    base = tmp_path_factory.getbasetemp()
    os.environ["HAQ_CACHE_DIR"] = str(base / "haq-cache")
    os.environ["HAQ_OVERLAY_DIR"] = str(base / "haq-overlay")
    # `haq search` without --target picks this machine's target; tests name theirs (the
    # same searches on every CI CPU); tests/cli/test_search_target.py checks the pick itself
    os.environ["HAQ_TARGET"] = "none"


@pytest.fixture(autouse=True)
def _isolate_cache(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A test that changes these (monkeypatch) gets them back afterwards."""
    base = tmp_path_factory.getbasetemp()
    monkeypatch.setenv("HAQ_CACHE_DIR", str(base / "haq-cache"))
    monkeypatch.setenv("HAQ_OVERLAY_DIR", str(base / "haq-overlay"))
    monkeypatch.setenv("HAQ_TARGET", "none")
    from haq import progress

    progress.configure("auto")  # a CLI call with -q / --log-json set it process-wide


@pytest.fixture(autouse=True)
def _threads() -> None:
    torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))
