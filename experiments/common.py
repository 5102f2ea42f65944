"""Helpers shared by the experiment scripts: locating ../shared and writing results."""

from __future__ import annotations

import json
import os
import platform
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("HAQ_SHARED_DIR", ROOT.parent / "shared"))
RESULTS = ROOT / "experiments" / "results"


def require_shared() -> Path:
    if not (SHARED / "models").is_dir():
        sys.exit(
            f"this experiment needs ../shared (CIFAR data and checkpoints); not found at {SHARED}"
        )
    return SHARED


def machine() -> dict[str, Any]:
    import torch

    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "cpus": os.cpu_count(),
        "processor": platform.processor() or platform.machine(),
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
    }


def save(name: str, payload: dict[str, Any]) -> Path:
    from haq.io import atomic_write_text

    path = RESULTS / f"{name}.json"
    atomic_write_text(path, json.dumps({"machine": machine(), **payload}, indent=2))
    print(f"wrote {path.relative_to(ROOT)}")
    return path
