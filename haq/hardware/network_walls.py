"""Whole-network latencies measured on this machine, kept in the user's table overlay.

`haq measure` (and `haq search --measure-front`) times whole configs, which no per-layer row
holds: what the runtime really does around the layers of this network, and the state of this
machine. Each measured config is recorded here (``<overlay>/<target>/networks.jsonl``: the
network's layer digest, threads, batch, per-layer kernel classes, measured ms, this CPU), and
a later cost model of the same network at the same threads and batch on this CPU scales its
latencies by the median measured-over-predicted ratio of those configs
(`haq.cost.lookup.LookupCostModel`), once at least ``MIN_CONFIGS`` are in. A newer
measurement of the same config replaces the older one.

`machine_check` sets the measured configs that run one kernel class throughout beside the
same configs' wall times in the tables: is this machine in the state they were measured in?
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
DRIFT_NOTE = 0.05  # a machine ratio this far off 1 is worth a line


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
    return (r["network"], r["threads"], r["batch"], r.get("group"), tuple(r["kernels"]),
            tuple(r["cpu"]))  # fmt: skip


def record_networks(target: str, records: Iterable[dict[str, Any]],
                    directory: Path | None = None) -> Path:  # fmt: skip
    """Add measured configs (each: network, model, threads, batch, group, kernels,
    measured_ms, date; ``cpu`` defaults to this one) to the overlay, atomically; a config
    measured again on the same CPU replaces its older record."""
    cpu = this_cpu()
    new = [{**r, "cpu": list(r.get("cpu") or cpu)} for r in records]
    d = directory or overlay_path(target)
    kept = {_key(r): r for r in read_networks(target, d)}
    kept.update({_key(r): r for r in new})
    d.mkdir(parents=True, exist_ok=True)
    path = d / FILE
    atomic_write_text(path, "".join(json.dumps(r) + "\n" for r in kept.values()))
    return path


def measured_configs(target: str, layers: Sequence[LayerSpec], threads: int, batch: int,
                     group: int | None = None) -> list[dict[str, Any]]:  # fmt: skip
    """This network's configs measured on this CPU at ``threads`` and ``batch`` (and the
    weight-only group size ``group``, which the kernel class names do not carry)."""
    records = read_networks(target)
    if not records:  # every cost model asks: no CPU read for an overlay without any
        return []
    digest, cpu = network_digest(layers), this_cpu()
    return [r for r in records
            if r["network"] == digest and r["threads"] == threads and r["batch"] == batch
            and r.get("group") == group and list(r["cpu"]) == cpu]  # fmt: skip


def uniform_walls(observations: Iterable[dict[str, Any]], threads: int,
                  batch: int = 1) -> dict[tuple[str, str], float]:  # fmt: skip
    """The wall time (ms) of each uniform config in table observations, by (model, kernel
    class), at ``threads`` and ``batch``."""
    out: dict[tuple[str, str], float] = {}
    for ob in observations:
        config = str(ob.get("config", ""))
        if (config.startswith("uniform:") and ob.get("threads") == threads
                and ob.get("batch", 1) == batch):  # fmt: skip
            out.setdefault((str(ob["model"]), config.removeprefix("uniform:")),
                           float(ob["wall_us"]) / 1e3)  # fmt: skip
    return out


def table_walls(profile: Any, model: str, threads: int, batch: int) -> dict[str, float]:
    """The wall time (ms) of ``model``'s uniform configs per kernel class where the target's
    tables measured them (the user's overlay, this machine's, before the shipped tables)."""
    from haq.hardware.ort.files import read_observations

    out: dict[str, float] = {}
    shipped = Path(profile.tables["layers"]).parent if "layers" in profile.tables else None
    for directory in (overlay_path(profile.id), shipped):
        if directory is None:
            continue
        for (name, cls), ms in uniform_walls(read_observations(directory), threads, batch).items():
            if name == model:
                out.setdefault(cls, ms)
    return out


def machine_check(profile: Any, model: str, threads: int, batch: int,
                  kernels: dict[str, list[str]], rows: dict[str, dict[str, Any]]) -> dict[str, Any]:  # fmt: skip
    """The measured configs that run one kernel class throughout, against the same config's
    wall time in the tables: a ratio well off 1 on all of them is the machine running faster
    or slower now than when the tables were measured (other tenants, clocks), which moves
    every measurement alike and is no error of the cost model."""
    walls = table_walls(profile, model, threads, batch)
    refs = []
    for config_hash, classes in kernels.items():
        cls = classes[0] if classes and len(set(classes)) == 1 else None
        if cls in walls and config_hash in rows:
            ms = rows[config_hash]["measured_latency_ms"]
            refs.append({"config_hash": config_hash, "kernel": cls, "measured_ms": ms,
                         "table_ms": round(walls[cls], 5), "ratio": round(ms / walls[cls], 4)})  # fmt: skip
    if not refs:
        return {"references": [], "ratio": None,
                "note": None if not walls else "no measured config runs one kernel class "
                "throughout: the machine's state is not checked"}  # fmt: skip
    ratio = float(sorted(r["ratio"] for r in refs)[len(refs) // 2])
    note = None
    if abs(ratio - 1) > DRIFT_NOTE:
        note = (f"note: configs that run one kernel class ran {ratio:.2f}x their wall time in "
                f"{profile.id}'s tables ({len(refs)} of them): this machine runs "
                f"{'slower' if ratio > 1 else 'faster'} now than when they were measured "
                "(other load, clocks; on sub-millisecond models also the timing itself), "
                "which moves every measurement alike: read the errors against that ratio, "
                "or re-measure when the machine is quiet")  # fmt: skip
    return {"references": refs, "ratio": round(ratio, 4), "note": note}
