"""A target is measurable here only when this machine runs its kernels: same runtime,
provider and int8-deciding CPU flags; simulated and published targets never are."""

from __future__ import annotations

import dataclasses

import pytest

from haq.errors import HaqError
from haq.hardware.profile import get_target
from haq.hardware.reachable import require_measurable, runtime_gap
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
