"""`haq.runtime.machine`: one machine-info helper, CPU load from /proc/stat."""

from __future__ import annotations

import pytest

from haq.runtime import machine


def test_machine_info_fields() -> None:
    info = machine.machine_info()
    assert {"cpu", "cpus", "flags", "platform", "loadavg", "python", "processor"} <= set(info)
    assert set(info["flags"]) <= set(machine.CPU_FLAGS)


def test_cpu_busy_and_watch(monkeypatch: pytest.MonkeyPatch) -> None:
    ticks = {"busy": 0, "total": 0}

    def fake() -> tuple[int, int]:  # 60% of the CPUs busy between two reads
        ticks["busy"] += 600
        ticks["total"] += 1000
        return ticks["busy"], ticks["total"]

    monkeypatch.setattr(machine, "cpu_times", fake)
    assert machine.cpu_busy(0.0) == pytest.approx(0.6)
    assert machine.wait_for_idle(0.0, window_s=0.0) == (0.0, 0.6)
    assert machine.busy_message(0.1, 0.1, 1) is None
    assert "machine busy" in (machine.busy_message(0.9, None, 2) or "")
    monkeypatch.setattr(machine, "cpu_times", lambda: None)
    assert machine.cpu_busy(0.0) is None and machine.CpuWatch().others() is None
