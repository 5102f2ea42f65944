"""Helpers shared by the experiment scripts: locating ../shared and writing results."""

from __future__ import annotations

import json
import os
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
    """`haq.runtime.machine.machine_info` plus torch's version and threads, and the date."""
    import torch

    from haq.runtime.machine import machine_info

    return {
        **machine_info(),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
    }


def save(name: str, payload: dict[str, Any]) -> Path:
    from haq.io import atomic_write_text

    path = RESULTS / f"{name}.json"
    atomic_write_text(path, json.dumps({"machine": machine(), **payload}, indent=2))
    print(f"wrote {path.relative_to(ROOT)}")
    return path


def ort_worst_cosine(onnx_bytes: bytes, x: Any, sim: Any) -> float:
    """The worst per-input cosine of ONNX Runtime's outputs (1 thread, batch 1) against the
    simulation's ``sim`` for inputs ``x`` (torch tensors)."""
    import numpy as np
    import torch

    from haq.runtime.ort import make_session

    sess = make_session(onnx_bytes, threads=1)
    ort = torch.from_numpy(np.concatenate([sess.run(None, {"input": x[i : i + 1].numpy()})[0]
                                           for i in range(len(x))]))  # fmt: skip
    return float(torch.nn.functional.cosine_similarity(ort, sim, dim=1).min())
