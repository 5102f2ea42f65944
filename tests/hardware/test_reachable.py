"""A target is measurable here only when this machine runs its kernels: same runtime,
provider and int8-deciding CPU flags; simulated and published targets never are."""

from __future__ import annotations

import dataclasses
import gzip
import json

import pytest

from haq.errors import HaqError
from haq.hardware.ort.machines import machine_record
from haq.hardware.ort.target import OBSERVATIONS
from haq.hardware.overlay import overlay_path
from haq.hardware.profile import get_target
from haq.hardware.reachable import machine_note, require_measurable, runtime_gap
from haq.runtime.machine import machine_info


def _with_flags(flags: list[str], *others: list[str]):  # type: ignore[no-untyped-def]
    """cpu-avx512 as if measured on one CPU with ``flags`` (and more CPUs with ``others``)."""
    cpu = get_target("cpu-avx512")
    details = {k: v for k, v in cpu.provenance_details.items() if k != "machines"}
    details["cpu_flags"] = flags
    if others:
        details["machines"] = [{"machine": f"cpu {i}", "cpu_flags": f, "models": ["m"]}
                               for i, f in enumerate([flags, *others])]  # fmt: skip
    return dataclasses.replace(cpu, provenance_details=details)


def test_same_flags_measurable_other_flags_not() -> None:
    here = machine_info()["flags"]
    assert runtime_gap(_with_flags(here)) is None
    gap = runtime_gap(_with_flags([*here, "amx_int8"] if "amx_int8" not in here else []))
    assert gap is not None and "differs" in gap and "haq profile" in gap


def test_tables_from_several_cpus_are_measurable_on_any_of_them() -> None:
    here = machine_info()["flags"]
    other = [*here, "amx_int8"] if "amx_int8" not in here else []
    assert runtime_gap(_with_flags(other, here)) is None  # this CPU measured some rows
    assert runtime_gap(_with_flags(other, other)) is not None


@pytest.mark.parametrize("target", ["npu-bitfusion-edge", "gpu-t4", "gpu-h100"])
def test_targets_with_no_runtime_here(target: str) -> None:
    gap = runtime_gap(get_target(target))
    assert gap is not None
    with pytest.raises(HaqError, match=f"cannot measure on target {target}"):
        require_measurable(get_target(target))


def _measured_on(*cpus: dict[str, object]):  # type: ignore[no-untyped-def]
    """cpu-avx512 as if its tables came from ``cpus`` (machine, family, model), this CPU's flags."""
    cpu = get_target("cpu-avx512")
    flags = machine_info()["flags"]
    details = dict(cpu.provenance_details, cpu_flags=flags)
    details["machines"] = [dict(c, cpu_flags=flags, models=["m"]) for c in cpus]
    return dataclasses.replace(cpu, provenance_details=details)


def test_another_cpu_model_with_the_same_kernels_is_named_in_a_note(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("HAQ_OVERLAY_DIR", str(tmp_path))
    here = machine_info()
    this = {"machine": here.get("cpu"), "cpu_family": here.get("family"),
            "cpu_model": here.get("model")}  # fmt: skip
    other = {"machine": "Other CPU", "cpu_family": 99, "cpu_model": 1}
    if runtime_gap(_measured_on(other)) is not None:
        pytest.skip("this CPU does not run cpu-avx512's kernels")
    note = machine_note(_measured_on(other))
    assert note is not None and "Other CPU (family 99, model 1)" in note
    assert "not on this CPU" in note and "haq profile --target cpu-avx512" in note
    assert machine_note(_measured_on(other, this)) is None  # this CPU measured some rows
    # a network the user's overlay measured on this CPU is this machine's: no note for it
    overlay = overlay_path("cpu-avx512")
    overlay.mkdir(parents=True)
    ob = {"model": "mine", "machine": machine_record(here), "wall_us": 1.0, "wall_p10_us": 1.0,
          "wall_p90_us": 1.0}  # fmt: skip
    with gzip.open(overlay / OBSERVATIONS, "wt") as f:
        f.write(json.dumps(ob) + "\n")
    assert machine_note(_measured_on(other), "mine") is None
    assert machine_note(_measured_on(other), "theirs") is not None
    own = dataclasses.replace(_measured_on(other), id="my-cpu")  # `haq profile --out DIR/my-cpu`
    assert "--out " in machine_note(own) and "into its tables" in machine_note(own)
    assert machine_note(get_target("gpu-t4")) is None  # nothing of it runs here


def test_a_cpu_of_the_class_with_other_int8_kernels_is_told_so(monkeypatch) -> None:
    import haq.runtime.machine as machine

    real = machine_info()
    if not {"avx512f", "avx512_vnni"} <= set(real["flags"]):
        pytest.skip("not a CPU of cpu-avx512's class")
    amx = [f for f in real["flags"] if f != "amx_int8"] + ["amx_int8"]
    cpu = _measured_on({"machine": "Other CPU", "cpu_family": 99, "cpu_model": 1})
    cpu = dataclasses.replace(cpu, provenance_details={
        **cpu.provenance_details, "cpu_flags": [f for f in amx if f != "amx_int8"],
        "machines": [dict(m, cpu_flags=[f for f in amx if f != "amx_int8"])
                     for m in cpu.provenance_details["machines"]]})  # fmt: skip
    monkeypatch.setattr(machine, "machine_info", lambda: {**real, "flags": amx})
    note = machine_note(cpu)
    assert note is not None and "not this machine's" in note and "adds amx_int8" in note
    assert "--out DIR/my-cpu" in note  # the way to measure this CPU
