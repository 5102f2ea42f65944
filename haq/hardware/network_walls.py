"""Whole-network latencies measured on this machine, kept in the user's table overlay.

`haq measure` (and `haq search --measure-front`) times whole configs, which no per-layer row
holds: what the runtime really does around the layers of this network, and the state of this
machine. Each measured config is recorded here (``<overlay>/<target>/networks.jsonl``: the
network's layer digest, threads, batch, per-layer kernel classes, measured ms, this CPU), and
a later cost model of the same network at the same threads and batch on this CPU scales its
latencies by the median measured-over-predicted ratio of those configs
(`haq.cost.lookup.LookupCostModel`), once at least ``MIN_CONFIGS`` are in. A newer
measurement of the same config replaces the older one.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from haq.errors import HaqError
from haq.hardware.overlay import overlay_path
from haq.hardware.tables import signature
from haq.io import atomic_write_text
from haq.models.spec import LayerSpec

FILE = "networks.jsonl"
MIN_CONFIGS = 3  # measured configs of a network before its predictions are scaled


def network_digest(layers: Sequence[LayerSpec]) -> str:
    """A network's identity for its measurements: layer names and signatures, in order."""
    text = json.dumps([[s.name, *signature(s).values()] for s in layers])
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def this_cpu() -> list[Any]:
    from haq.hardware.ort.machines import cpu_identity
    from haq.runtime.machine import machine_info

    return list(cpu_identity(machine_info()))


def read_networks(target: str, directory: Path | None = None) -> list[dict[str, Any]]:
    """The measured configs of ``target`` in the user's overlay ([] when none)."""
    path = (directory or overlay_path(target)) / FILE
    if not path.is_file():
        return []
    try:
        return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise HaqError(f"{path} is not readable ({type(e).__name__}); delete it to drop the "
                       f"measured networks of {target}, or restore it") from None  # fmt: skip


def _key(r: dict[str, Any]) -> tuple[Any, ...]:
    return (r["network"], r["threads"], r["batch"], tuple(r["kernels"]), tuple(r["cpu"]))


def record_networks(target: str, records: Iterable[dict[str, Any]],
                    directory: Path | None = None) -> Path:  # fmt: skip
    """Add measured configs (each: network, model, threads, batch, kernels, measured_ms, date;
    ``cpu`` defaults to this one) to the overlay, atomically; a config measured again on the
    same CPU replaces its older record."""
    cpu = this_cpu()
    new = [{**r, "cpu": list(r.get("cpu") or cpu)} for r in records]
    d = directory or overlay_path(target)
    kept = {_key(r): r for r in read_networks(target, d)}
    kept.update({_key(r): r for r in new})
    d.mkdir(parents=True, exist_ok=True)
    path = d / FILE
    atomic_write_text(path, "".join(json.dumps(r) + "\n" for r in kept.values()))
    return path


def measured_configs(target: str, layers: Sequence[LayerSpec], threads: int,
                     batch: int) -> list[dict[str, Any]]:  # fmt: skip
    """This network's configs measured on this CPU at ``threads`` and ``batch``."""
    digest, cpu = network_digest(layers), this_cpu()
    return [r for r in read_networks(target)
            if r["network"] == digest and r["threads"] == threads and r["batch"] == batch
            and list(r["cpu"]) == cpu]  # fmt: skip
