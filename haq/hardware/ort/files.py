"""The cpu-avx512 profile's files: raw observations (one JSON line per job in
``observations.jsonl.gz``), the layer / transition / glue tables derived from them
(`haq.hardware.ort.aggregation`), ``layer_map.csv`` and the ``.meta.json`` sidecars.

The tables are re-derived from the observations after every job, so a killed run resumes
where it stopped (a job whose observation exists is never re-measured) and merging never
duplicates rows.
"""

from __future__ import annotations

import gzip
import json
import statistics
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from haq.errors import HaqError
from haq.hardware.ort.aggregation import Tables, aggregate, sorted_rows
from haq.hardware.ort.machines import machines
from haq.hardware.ort.target import GROUP_SIZE, LAYER_KEY, OBSERVATIONS, TARGET, TEXT_GROUP_SIZE
from haq.hardware.tables import COLUMNS, SHAPE_COLUMNS
from haq.io import atomic_write_bytes, atomic_write_text

if TYPE_CHECKING:
    import pandas as pd


def default_dir() -> Path:
    from haq.paths import data_dir

    return data_dir("hardware_profiles") / TARGET


def profile_yaml_path(tables_dir: str | Path) -> Path:
    """The profile YAML beside a tables folder, named after it: ``DIR/NAME`` -> ``DIR/NAME.yaml``,
    target NAME (`haq profile --out DIR/my-cpu`: this CPU as a target of its own)."""
    d = Path(tables_dir)
    return d.parent / f"{d.name}.yaml"


def read_observations(directory: str | Path) -> list[dict[str, Any]]:
    path = Path(directory) / OBSERVATIONS
    if not path.is_file():
        return []
    try:
        with gzip.open(path, "rt", encoding="utf-8") as f:
            out = [json.loads(line) for line in f if line.strip()]
    except (OSError, EOFError, json.JSONDecodeError) as e:
        raise HaqError(
            f"{path} is not readable ({e}); restore it or remove it to re-measure"
        ) from e
    for ob in out:  # records from before repeated wall timings: their one timing
        ob.setdefault("walls", [{
            "median_us": ob["wall_us"], "p10_us": ob["wall_p10_us"], "p90_us": ob["wall_p90_us"],
            "others_cpu": ob.get("others_cpu"), "busy": ob.get("busy", False),
            "ort_version": ob.get("ort_version"), "date": ob.get("date"),
        }])  # fmt: skip
    return out


def read_tables(directory: str | Path) -> Tables:
    import pandas as pd

    d = Path(directory)
    frames = []
    for name in ("layers", "transitions", "glue"):
        path = d / f"{name}.csv"
        if not path.is_file():
            raise HaqError(f"{path} not found; measure it with `haq profile --target {TARGET}`")
        frames.append(pd.read_csv(path))
    return Tables(*frames)


def write_all(
    directory: str | Path,
    observations: Sequence[dict[str, Any]],
    meta: dict[str, Any],
    boundary_tables: bool = True,
) -> Tables:
    """Atomically write the observations, the derived layer table (with ``boundary_tables``
    also the transition and glue tables: probe networks need only their layer rows),
    ``layer_map.csv`` and the ``.meta.json`` sidecars.

    Layer rows already in ``layers.csv`` that the observations do not cover (e.g. from another
    harness) are kept; rows are unique on `LAYER_KEY`.
    """
    import pandas as pd

    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    lines = "".join(json.dumps(ob, separators=(",", ":")) + "\n" for ob in observations)
    atomic_write_bytes(d / OBSERVATIONS, gzip.compress(lines.encode("utf-8"), mtime=0))
    tables = aggregate(observations)
    layers = tables.layers
    old_path = d / "layers.csv"
    if old_path.is_file() and old_path.stat().st_size:
        old = pd.read_csv(old_path)
        if not old.empty and set(LAYER_KEY) <= set(old.columns):
            have = (
                {tuple(r) for r in layers[LAYER_KEY].itertuples(index=False)}
                if len(layers)
                else set()
            )
            keep = old[[tuple(r) not in have for r in old[LAYER_KEY].itertuples(index=False)]]
            layers = sorted_rows(pd.concat([layers, keep], ignore_index=True), LAYER_KEY)
    tables.layers = layers
    cols = [c for c in COLUMNS if c in layers.columns]
    cols += [c for c in layers.columns if c not in COLUMNS]
    atomic_write_text(d / "layers.csv", layers[cols].to_csv(index=False))
    boundary = ("transitions", "glue")
    if boundary_tables:
        for name in boundary:
            atomic_write_text(d / f"{name}.csv", getattr(tables, name).to_csv(index=False))
    atomic_write_text(d / "layer_map.csv", layer_map(observations).to_csv(index=False))
    for name, what in _TABLE_DOCS.items():
        if name in boundary and not boundary_tables:
            continue
        atomic_write_text(d / f"{name}.meta.json",
                          json.dumps({**meta, "table": name, "contents": what}, indent=2,
                                     sort_keys=True, default=str))  # fmt: skip
    return tables


def layer_map(observations: Sequence[dict[str, Any]]) -> pd.DataFrame:
    """model, name, index, signature (without batch), macs, params and the activation after
    it (`LayerSpec.act`) of every profiled layer."""
    import pandas as pd

    rows: dict[tuple[str, str], dict[str, Any]] = {}
    for ob in observations:
        for idx, name, *_ in ob["layers"]:
            if (ob["model"], name) not in rows:
                spec = ob["specs"][idx]
                sig = dict(zip(SHAPE_COLUMNS, spec[:12], strict=True))
                rows[(ob["model"], name)] = {"model": ob["model"], "name": name, "index": idx,
                                             **sig, "macs": spec[12], "params": spec[13],
                                             "act": spec[14] if len(spec) > 14 else "none"}  # fmt: skip
    return pd.DataFrame(list(rows.values()))


_TABLE_DOCS = {
    "layers": (
        "per signature x kernel class (precision column) x threads: latency_us = kernel_us "
        "(in-graph time of the layer's fused node(s) + per-run weight dequantize) + entry_us "
        "(Q/DQ, Transpose, Reorder and model ops in front of it when the previous layer has the "
        "same class; the input for the first layer) + exit_us (after the last layer), from "
        "whole-model uniform configs, all scaled by wall median / profiled total of that run "
        "(scale); same-signature layers of one model averaged (n_layers); the first model "
        "measuring a key wins (model, config)"
    ),
    "transitions": (
        "extra time of a boundary between consecutive layers (execution order) of different "
        "kernel classes, keyed by the input tensor of the second layer (channels, h, w) and "
        "the elements pooled away in front of it (reduced_elements: a squeeze-excite pool, "
        "where the class change converts the tensor before the pool): "
        "boundary nodes (nodes_us) + the second layer's kernel-time change against its uniform "
        "config (delta_us) - the entry_us its layer row already holds (entry_us); mean of n "
        "observed boundaries of alternating configs over the listed models (raw_us), floored "
        "at 0 (latency_us)"
    ),
    "glue": (
        "per model, threads, batch, boundary index (in front of layer `layer`; index n = after "
        "the last layer) and class pair (from_kernel, to_kernel): measured layer kernel time + "
        "boundary time minus the layers.csv row and the transitions.csv row charged there, "
        "mean of n observations (uniform configs for same-class pairs, alternating configs "
        "otherwise); add the rows along a config to the lookup sum for a profiled model"
    ),
    "layer_map": (
        "model, layer name, execution index, signature, MACs, parameters and the activation "
        "after it (act) of every profiled layer"
    ),
}


def table_meta(observations: Sequence[dict[str, Any]], info: dict[str, Any]) -> dict[str, Any]:
    loads = [o["loadavg_before"] for o in observations if o.get("loadavg_before") is not None]
    busy = sum(1 for o in observations if o.get("busy"))
    return {
        "target": TARGET,
        "provenance": "measured",
        "machines": machines(observations),  # each CPU with the models it measured
        "platform": info.get("platform"),
        "runtime": info.get("runtime"),
        "ort_versions": sorted({o["ort_version"] for o in observations}),
        "date_first": min(o["date"] for o in observations),
        "date_last": max(o["date"] for o in observations),
        "jobs": len(observations),
        "models": sorted({o["model"] for o in observations}),
        "threads": sorted({o["threads"] for o in observations}),
        "measuring_seconds": round(sum(o.get("seconds", 0.0) for o in observations), 1),
        "wall_timings_per_job": sorted({len(o["walls"]) for o in observations}),
        "waited_for_idle_seconds": round(sum(o.get("waited_s", 0.0) for o in observations), 1),
        "load": {
            "loadavg_1min_before_jobs": {
                "min": min(loads, default=None),
                "median": statistics.median(loads) if loads else None,
                "max": max(loads, default=None),
            },
            "jobs_flagged_busy": busy,
        },  # fmt: skip
        "method": (
            "whole-model ONNX export per config (haq.export.export_onnx; WeightBiasQuantization "
            "off), wall = median of `runs` timed runs with the profiler off after warm-up, "
            "attribution = ORT profiler node kernel times (median of profile_runs runs) mapped "
            "to layers and boundaries; see haq/hardware/ort/"
        ),
        "random_weights": "latency does not depend on weight values; --weights none by default",
        "matmulnbits_block_size": {"classifiers": GROUP_SIZE, "text": TEXT_GROUP_SIZE},
    }
