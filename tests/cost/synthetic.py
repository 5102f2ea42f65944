"""A small synthetic target (profile YAML + tables) and layer table for cost-model tests."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml

from haq.hardware.tables import signature
from haq.models.spec import LayerSpec


def layers() -> list[LayerSpec]:
    """conv -> dwconv -> linear, as discover_layers would describe them."""
    return [
        LayerSpec("c1", "conv", 0, 3, 16, (3, 3), (1, 1), 1, (8, 8), (8, 8), 8 * 8 * 16 * 27, 16 * 27 + 16),
        LayerSpec("dw", "dwconv", 1, 16, 16, (3, 3), (1, 1), 16, (8, 8), (8, 8), 8 * 8 * 16 * 9, 16 * 9 + 16),
        LayerSpec("fc", "linear", 2, 1024, 10, (1, 1), (1, 1), 1, (1, 1), (1, 1), 10240, 10250),
    ]  # fmt: skip


# latency_us per layer name and kernel class (batch 1, 1 thread)
LATENCY = {"c1": {"fp32": 10.0, "int8": 4.0}, "dw": {"fp32": 6.0}, "fc": {"fp32": 3.0, "int8": 1.0}}
ENERGY = {"c1": {"fp32": 2.0, "int8": 0.5}, "dw": {"fp32": 1.0}, "fc": {"fp32": 0.4, "int8": 0.1}}


def profile_dict(**overrides: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "id": "toy",
        "kind": "cpu",
        "description": "A synthetic CPU for tests.",
        "provenance": "measured",
        "provenance_details": {
            "machine": "test box",
            "runtime": "none",
            "version": "0",
            "date": "2026-01-01",
        },  # fmt: skip
        "kernels": {"fp32": "float", "int8": "integer GEMM"},
        "rules": [
            {"ops": ["conv", "dwconv", "gconv", "linear"], "w": None, "a": None, "kernel": "fp32"},
            {"ops": ["conv", "linear"], "w": [2, 8], "a": [2, 8], "kernel": "int8"},
            {"ops": ["dwconv"], "w": [2, 8], "a": [2, 8], "kernel": "fp32"},
        ],
        "batch": 1,
        "threads": [1, 2],
        "tables": {"layers": "toy/layers.csv"},
        "peaks": {"fp32_gops": 1.0, "int8_gops": 4.0, "bandwidth_gbs": 10.0},
    }
    data.update(overrides)
    return data


def table(energy: bool = False, skip: tuple[tuple[str, str], ...] = ()) -> pd.DataFrame:
    rows = []
    for spec in layers():
        for kernel, lat in LATENCY[spec.name].items():
            if (spec.name, kernel) in skip:
                continue
            for threads, scale in ((1, 1.0), (2, 0.5)):
                row = {**signature(spec, 1), "precision": kernel, "latency_us": lat * scale,
                       "threads": threads}  # fmt: skip
                if energy:
                    row["energy_uj"] = ENERGY[spec.name][kernel]
                rows.append(row)
    return pd.DataFrame(rows)


def write_target(
    folder: Path,
    profile: dict[str, Any] | None = None,
    frame: pd.DataFrame | None = None,
    transitions: pd.DataFrame | None = None,
) -> Path:
    """Write ``toy.yaml`` + ``toy/layers.csv`` (+ transitions) under ``folder``; returns the YAML."""
    data = profile or profile_dict()
    (folder / "toy").mkdir(parents=True, exist_ok=True)
    (table() if frame is None else frame).to_csv(folder / "toy" / "layers.csv", index=False)
    if transitions is not None:
        transitions.to_csv(folder / "toy" / "transitions.csv", index=False)
        data = {**data, "tables": {**data["tables"], "transitions": "toy/transitions.csv"}}
    path = folder / "toy.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def learned_rows() -> tuple[pd.DataFrame, pd.DataFrame]:
    """Three 'models' of convs and linears; latency = overhead + MACs / throughput per kernel."""
    rng = np.random.default_rng(0)
    rows, lmap = [], []
    for model, base in (("a", 16), ("b", 24), ("c", 32)):
        for i in range(6):
            cin, cout, hw = base * (1 + i % 3), base * (1 + (i + 1) % 3), 32 >> (i % 3)
            kind, k = ("linear", 1) if i == 5 else ("conv", 3)
            if kind == "linear":
                hw = 1
            sig = {"kind": kind, "in_channels": cin, "out_channels": cout, "kernel_h": k,
                   "kernel_w": k, "stride_h": 1, "stride_w": 1, "groups": 1, "in_h": hw,
                   "in_w": hw, "out_h": hw, "out_w": hw}  # fmt: skip
            lmap.append({"model": model, "name": f"l{i}", **sig})
            macs = cin * cout * k * k * hw * hw
            for batch in (1, 4):
                for kernel, speed in (("fp32", 1.0), ("int8", 3.0)):
                    lat = 2.0 + macs * batch / (speed * 1e3) * rng.uniform(0.95, 1.05)
                    rows.append({**sig, "batch": batch, "precision": kernel, "latency_us": lat,
                                 "threads": 1})  # fmt: skip
    return pd.DataFrame(rows), pd.DataFrame(lmap)
