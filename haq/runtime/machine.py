"""The machine a measurement ran on, and how busy other processes keep it.

One helper for every harness and experiment (ORT profiling, the benchmark, GPU profiling,
experiments/common.py), so results record the same fields the same way. Standard library only.
"""

from __future__ import annotations

import os
import platform
import time
from typing import Any

#: Fraction of all CPUs used by other processes above which benchmark timings are flagged.
BUSY_THRESHOLD = 0.25
#: Share of all CPUs busy below which `wait_for_idle` calls the machine idle.
IDLE_THRESHOLD = 0.2
#: CPU flags that decide int8 / bf16 speed on x86.
CPU_FLAGS = ("avx2", "avx512f", "avx512bw", "avx512_vnni", "avx512_bf16", "avx_vnni",
             "amx_tile", "amx_int8", "amx_bf16")  # fmt: skip


def machine_info() -> dict[str, Any]:
    """CPU model, family/model, the flags that decide int8 speed, cores, load, platform, Python."""
    info: dict[str, Any] = {"cpus": os.cpu_count(), "platform": platform.platform()}
    flags: set[str] = set()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                key, _, value = line.partition(":")
                key, value = key.strip(), value.strip()
                if key == "model name":
                    info.setdefault("cpu", value)
                elif key == "cpu family":
                    info.setdefault("family", int(value))
                elif key == "model":
                    info.setdefault("model", int(value))
                elif key == "flags" and not flags:
                    flags = set(value.split())
    except OSError:
        info["cpu"] = platform.processor() or platform.machine()
    info["flags"] = [f for f in CPU_FLAGS if f in flags]
    info["loadavg"] = [round(x, 2) for x in os.getloadavg()] if hasattr(os, "getloadavg") else None
    info["processor"] = platform.processor() or platform.machine()
    info["python"] = platform.python_version()
    return info


def has_vnni() -> bool:
    """Whether this x86 CPU has VNNI (AVX512-VNNI or AVX-VNNI). Without it, ONNX Runtime's
    uint8 x int8 kernels (vpmaddubsw) saturate pairs of products at int16, so int8 results can
    differ from the exact integer arithmetic haq simulates."""
    flags = set(machine_info()["flags"])
    return bool(flags & {"avx512_vnni", "avx_vnni"})


# --------------------------------------------------------------------------- busy machine


def cpu_times() -> tuple[int, int] | None:
    """(busy, total) jiffies over all CPUs from /proc/stat; None off Linux."""
    try:
        with open("/proc/stat") as f:
            fields = [int(x) for x in f.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    if len(fields) < 5:
        return None
    total = sum(fields[:8])  # guest time is already inside user
    idle = fields[3] + fields[4]  # idle + iowait
    return total - idle, total


class CpuWatch:
    """Share of all CPUs used by *other* processes between start and `others()`."""

    def __init__(self) -> None:
        self._hz = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
        self._t0 = cpu_times()
        self._own0 = self._own()

    @staticmethod
    def _own() -> float:
        t = os.times()
        return t.user + t.system

    def others(self) -> float | None:
        t1 = cpu_times()
        if self._t0 is None or t1 is None or t1[1] <= self._t0[1]:
            return None
        busy = t1[0] - self._t0[0] - (self._own() - self._own0) * self._hz
        return max(0.0, min(1.0, busy / (t1[1] - self._t0[1])))


def busy_message(before: float | None, during: float | None, threads: int) -> str | None:
    seen = [(w, v) for w, v in (("before", before), ("during", during)) if v is not None]
    high = [(w, v) for w, v in seen if v > BUSY_THRESHOLD]
    if not high:
        return None
    ncpu = os.cpu_count() or 1
    what = " and ".join(f"{v:.0%} {w} timing" for w, v in high)
    load = f", load average {os.getloadavg()[0]:.2f}" if hasattr(os, "getloadavg") else ""
    return (f"machine busy: other processes used {what} of the {ncpu} CPUs{load}, benchmark on "
            f"{threads} thread{'s' if threads > 1 else ''}; absolute latencies may be inflated, "
            "ratios between models timed in one run stay comparable")  # fmt: skip


def cpu_busy(window_s: float) -> float | None:
    """Share of all CPUs busy over ``window_s`` (this process sleeps meanwhile)."""
    a = cpu_times()
    time.sleep(window_s)
    b = cpu_times()
    if a is None or b is None or b[1] <= a[1]:
        return None
    return (b[0] - a[0]) / (b[1] - a[1])


def wait_for_idle(max_wait_s: float, window_s: float = 1.0) -> tuple[float, float | None]:
    """Wait until the CPUs are idle (or ``max_wait_s`` passed): (seconds waited, last share)."""
    t0 = time.time()
    busy = cpu_busy(window_s)
    while busy is not None and busy > IDLE_THRESHOLD and time.time() - t0 < max_wait_s:
        busy = cpu_busy(window_s)
    return round(time.time() - t0, 1), None if busy is None else round(busy, 3)
