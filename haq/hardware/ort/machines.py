"""Which CPU measured which rows of a target's tables.

A target's tables can grow over sessions on different machines of its class (two x86 CPUs
with AVX-512 VNNI, say): each observation carries the machine that timed it, and the YAML's
provenance names every machine with the models it measured, so no row is credited to a CPU
that did not run it. A stored observation is only ever re-timed on the machine that made it.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

KEYS = ("cpu", "family", "model", "flags", "cpus")


def machine_record(info: dict[str, Any]) -> dict[str, Any]:
    """The part of `haq.runtime.machine.machine_info` that identifies the CPU."""
    return {k: info.get(k) for k in KEYS}


def cpu_identity(m: dict[str, Any]) -> tuple[Any, Any, Any]:
    """(CPU name, family, model) of a machine record: an observation's (`machine_record`), a
    profile YAML's ``machines`` entry or `haq.runtime.machine.machine_info` itself."""
    return (m.get("machine", m.get("cpu")), m.get("cpu_family", m.get("family")),
            m.get("cpu_model", m.get("model")))  # fmt: skip


def recorded_machine(profile_yaml: Path) -> dict[str, Any] | None:
    """The machine an existing profile YAML names (one written before observations carried
    theirs), or None when there is no such file."""
    import yaml

    if not profile_yaml.is_file():
        return None
    d = (yaml.safe_load(profile_yaml.read_text()) or {}).get("provenance_details") or {}
    if d.get("machines"):  # written by this version: every observation names its machine
        return None
    return {"cpu": d.get("machine"), "family": d.get("cpu_family"), "model": d.get("cpu_model"),
            "flags": d.get("cpu_flags"), "cpus": d.get("cpus")}  # fmt: skip


def stamp_legacy(observations: Sequence[dict[str, Any]], legacy: dict[str, Any]) -> None:
    """Give observations measured before they carried a machine the one their YAML named."""
    for ob in observations:
        ob.setdefault("machine", dict(legacy))


def machines(observations: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each machine with the models it measured, the one with most models first."""
    groups: list[tuple[dict[str, Any], set[str]]] = []
    for ob in observations:
        m = ob.get("machine") or {}
        for known, models in groups:
            if known == m:
                models.add(ob["model"])
                break
        else:
            groups.append((m, {ob["model"]}))
    groups.sort(key=lambda g: -len(g[1]))
    return [{"machine": m.get("cpu"), "cpu_family": m.get("family"), "cpu_model": m.get("model"),
             "cpu_flags": list(m.get("flags") or []), "cpus": m.get("cpus"), "models": sorted(models)}
            for m, models in groups]  # fmt: skip
