"""Latency table schema and I/O.

A latency table row is one layer signature (what the hardware sees: kind, channels, kernel,
stride, groups, spatial size or tokens, batch) at one precision, with the measured (or
simulated / published) kernel time. Tables are CSV with a JSON sidecar of measurement metadata
(``<table>.meta.json``: machine, runtime and version, date, method, provenance).

Layer tables (`COLUMNS`): `SIGNATURE_COLUMNS` + ``precision`` (the *kernel class*, e.g. ``fp32``,
``int8``) + ``latency_us`` are required; ``energy_uj`` is optional (summed into energy when
present); ``kernel``, ``p10_us``, ``p90_us``, ``runs`` and ``threads`` describe the measurement
(a table without ``threads`` holds rows for the profile's first thread count).

Transition tables (`TRANSITION_COLUMNS`, optional per target): the cost of a boundary between two
consecutive layers (execution order) whose kernel classes differ, e.g. the Quantize/Dequantize
and layout transposes ORT inserts between a float and an int8 conv. ``from_kernel`` /
``to_kernel`` are kernel classes; ``channels``, ``h``, ``w`` describe the tensor that crosses
the boundary (the input of the second layer; ``h`` = tokens, ``w`` = 1 for a Linear);
``batch`` and ``threads`` as in the layer table; ``latency_us`` the extra time (``energy_uj``
optional). Optional ``reduced_elements``: per sample, the elements pooled away in front of
the second layer (`haq.models.spec.reduced_in_front`; a squeeze-excite block's pool: the class
change converts the tensor before it); a table with the column keys rows by it too and counts
the elements a boundary touches as ``channels * h * w + reduced_elements``. A boundary uses its
exact (from, to, channels, h, w[, reduced_elements]) row where there is one; one without is
read off a robust line in the elements it touches through the rows of its (from, to) pair at
the same batch and threads (`haq.cost.lookup.robust_line`: Theil-Sen from three sizes on;
linear interpolation through two, proportional scaling from a single row); a pair without any
row costs 0.

Glue tables (`GLUE_COLUMNS`, optional, measured targets): per profiled model, what the
shape-keyed layer and transition rows cannot know about that model's graph, per boundary
position ``index`` (0 = in front of the first layer, n = after the last, execution order) and
class pair (``from_kernel`` -> ``to_kernel``; ``input`` / ``output`` at the ends, same-class
pairs included). ``layer`` names the layer after the boundary. A cost model adds the rows along
a config when the network it costs is that model (same layer names and signatures, in order,
as the profile's ``layer_map`` table lists them).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd

from haq.errors import HaqError
from haq.io import atomic_write_text
from haq.models.spec import LayerSpec

SIGNATURE_COLUMNS = [
    "kind", "in_channels", "out_channels", "kernel_h", "kernel_w", "stride_h", "stride_w",
    "groups", "in_h", "in_w", "out_h", "out_w", "batch",
]  # fmt: skip
MEASURE_COLUMNS = ["precision", "kernel", "latency_us", "p10_us", "p90_us", "runs", "threads"]
COLUMNS = SIGNATURE_COLUMNS + MEASURE_COLUMNS
#: A layer's shape: the signature without the batch (``layer_map`` tables are keyed by it).
SHAPE_COLUMNS = [c for c in SIGNATURE_COLUMNS if c != "batch"]
TRANSITION_COLUMNS = [
    "from_kernel", "to_kernel", "channels", "h", "w", "batch", "threads", "latency_us",
]  # fmt: skip
GLUE_COLUMNS = ["model", "threads", "batch", "index", "from_kernel", "to_kernel", "latency_us"]
#: Pseudo-classes of the model input and output boundaries in glue tables.
INPUT, OUTPUT = "input", "output"


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


def _read_csv(path: Path, what: str, required: list[str]) -> pd.DataFrame:
    """The CSV at ``path`` with its ``required`` columns, or a one-line error."""
    if not path.is_file():
        raise HaqError(
            f"{what} {path} not found; measure it with `haq profile` or fix the profile's path"
        )
    try:
        frame = pd.read_csv(path)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as e:
        raise HaqError(
            f"{what} {path} is not readable CSV ({type(e).__name__}); re-measure or restore it"
        ) from e
    missing = [c for c in required if c not in frame.columns]
    if missing:
        raise HaqError(
            f"{what} {path} lacks columns {missing}; see haq.hardware.tables for the schema"
        )
    return frame


def _check_numeric(
    frame: pd.DataFrame, path: Path, what: str, columns: list[str], negative: bool = False
) -> None:
    for col in columns:
        values = pd.to_numeric(frame[col], errors="coerce")
        bad = values.isna() if negative else values.isna() | (values < 0)
        if bad.any():
            row = int(bad.to_numpy().nonzero()[0][0]) + 2  # 1-based, after the header line
            sign = "" if negative else ", negative"
            raise HaqError(
                f"{what} {path}: column {col!r} has a missing{sign} or non-numeric value "
                f"(line {row}); fix or drop that row"
            )


def read_transitions(path: str | Path) -> pd.DataFrame:
    """A transition table (`TRANSITION_COLUMNS`), validated."""
    path = Path(path)
    frame = _read_csv(path, "transition table", TRANSITION_COLUMNS)
    _check_numeric(frame, path, "transition table", TRANSITION_COLUMNS[2:])
    return frame


def read_glue(path: str | Path) -> pd.DataFrame:
    """A glue table (`GLUE_COLUMNS`), validated (glue may be negative: it corrects the sums)."""
    path = Path(path)
    frame = _read_csv(path, "glue table", GLUE_COLUMNS)
    _check_numeric(frame, path, "glue table", ["threads", "batch", "index"])
    _check_numeric(frame, path, "glue table", ["latency_us"], negative=True)
    return frame


def read_table(path: str | Path) -> pd.DataFrame:
    """A layer latency table, validated (key columns present, latencies numeric and >= 0)."""
    path = Path(path)
    frame = _read_csv(path, "latency table", SIGNATURE_COLUMNS + ["precision", "latency_us"])
    numeric = [c for c in SIGNATURE_COLUMNS if c != "kind"] + ["latency_us"]
    _check_numeric(frame, path, "latency table", numeric)
    return frame


def write_table(frame: pd.DataFrame, path: str | Path, meta: dict[str, Any] | None = None) -> None:
    """Atomically write the table (and its metadata sidecar), de-duplicated on key + precision
    (+ threads, when the table has them: rows of different thread counts are different rows)."""
    path = Path(path)
    key = SIGNATURE_COLUMNS + ["precision"] + (["threads"] if "threads" in frame else [])
    frame = frame.drop_duplicates(subset=key, keep="last").sort_values(key, kind="stable")
    cols = [c for c in COLUMNS if c in frame.columns] + [
        c for c in frame.columns if c not in COLUMNS
    ]
    atomic_write_text(path, frame[cols].to_csv(index=False))
    if meta is not None:
        atomic_write_text(
            path.with_suffix(".meta.json"), json.dumps(meta, indent=2, sort_keys=True)
        )
