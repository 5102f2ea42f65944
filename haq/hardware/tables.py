"""Latency table schema and I/O.

A latency table row is one layer signature (what the hardware sees: kind, channels, kernel,
stride, groups, spatial size or tokens, batch) at one precision, with the measured (or
simulated / published) kernel time. Tables are CSV with a JSON sidecar of measurement metadata
(``<table>.meta.json``: machine, runtime and version, date, method, provenance).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd

from haq.errors import HaqError
from haq.io import atomic_write_text
from haq.models.layers import LayerSpec

SIGNATURE_COLUMNS = [
    "kind", "in_channels", "out_channels", "kernel_h", "kernel_w", "stride_h", "stride_w",
    "groups", "in_h", "in_w", "out_h", "out_w", "batch",
]  # fmt: skip
MEASURE_COLUMNS = ["precision", "kernel", "latency_us", "p10_us", "p90_us", "runs", "threads"]
COLUMNS = SIGNATURE_COLUMNS + MEASURE_COLUMNS


def signature(spec: LayerSpec, batch: int = 1) -> dict[str, Any]:
    """The table key of ``spec`` at ``batch`` (layer names are not part of it: shapes are)."""
    return {
        "kind": spec.kind,
        "in_channels": spec.in_channels,
        "out_channels": spec.out_channels,
        "kernel_h": spec.kernel[0],
        "kernel_w": spec.kernel[1],
        "stride_h": spec.stride[0],
        "stride_w": spec.stride[1],
        "groups": spec.groups,
        "in_h": spec.in_hw[0],
        "in_w": spec.in_hw[1],
        "out_h": spec.out_hw[0],
        "out_w": spec.out_hw[1],
        "batch": batch,
    }


def read_table(path: str | Path) -> pd.DataFrame:
    path = Path(path)
    if not path.is_file():
        raise HaqError(
            f"latency table {path} not found; measure it with `haq profile` or fix the profile's path"
        )
    try:
        frame = pd.read_csv(path)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as e:
        raise HaqError(
            f"latency table {path} is not readable CSV ({type(e).__name__}); re-measure or restore it"
        ) from e
    missing = [c for c in SIGNATURE_COLUMNS + ["precision", "latency_us"] if c not in frame.columns]
    if missing:
        raise HaqError(
            f"latency table {path} lacks columns {missing}; see haq.hardware.tables for the schema"
        )
    return frame


def write_table(frame: pd.DataFrame, path: str | Path, meta: dict[str, Any] | None = None) -> None:
    """Atomically write the table (and its metadata sidecar), de-duplicated on key + precision."""
    path = Path(path)
    key = SIGNATURE_COLUMNS + ["precision"]
    frame = frame.drop_duplicates(subset=key, keep="last").sort_values(key, kind="stable")
    cols = [c for c in COLUMNS if c in frame.columns] + [
        c for c in frame.columns if c not in COLUMNS
    ]
    atomic_write_text(path, frame[cols].to_csv(index=False))
    if meta is not None:
        atomic_write_text(
            path.with_suffix(".meta.json"), json.dumps(meta, indent=2, sort_keys=True)
        )
