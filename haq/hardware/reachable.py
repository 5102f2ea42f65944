"""Whether a target's runtime is on this machine, so its predictions can be checked here.

A measured target names the machine and runtime its tables came from. Timing a model here
says something about that target only when this machine runs the same kernels: the same
runtime and execution provider, and the same CPU flags that decide int8 speed (VNNI, AMX, ...).
Simulated and published targets have no runtime here at all.
"""

from __future__ import annotations

from typing import Any

from haq.errors import HaqError
from haq.hardware.ort.machines import cpu_identity
from haq.hardware.profile import HardwareProfile


def runtime_gap(profile: HardwareProfile) -> str | None:
    """Why ``profile``'s latency cannot be measured on this machine; None when it can."""
    d = profile.provenance_details
    if profile.provenance != "measured":
        return (f"{profile.id} is {profile.provenance} ({profile.source}): there is no runtime "
                "to measure it on")  # fmt: skip
    runtime = str(d.get("runtime", ""))
    if runtime != "onnxruntime":
        return (f"{profile.id} was measured with {runtime or 'an unnamed runtime'}; haq measures "
                "ONNX Runtime targets on this machine's CPU only")  # fmt: skip
    try:
        import onnxruntime as ort
    except ImportError:
        return f"{profile.id} runs on onnxruntime, which is not installed (pip install onnxruntime)"
    provider = str(d.get("provider", "CPUExecutionProvider"))
    if provider not in ort.get_available_providers():
        return f"{profile.id} runs on ONNX Runtime's {provider}, which this installation lacks"
    from haq.runtime.machine import CPU_FLAGS, machine_info

    here = set(machine_info()["flags"])
    # tables grown on several CPUs (`machines`): this CPU measures the target if it is one
    kinds = [d.get("cpu_flags", []), *(m.get("cpu_flags") or [] for m in d.get("machines", []))]
    sets = [{f for f in flags if f in CPU_FLAGS} for flags in kinds]
    there = min(sets, key=lambda s: len(s ^ here))
    missing, extra = sorted(there - here), sorted(here - there)
    if missing or extra:
        diff = ", ".join([*(f"lacks {f}" for f in missing), *(f"adds {f}" for f in extra)])
        return (f"this CPU differs from the one {profile.id} was measured on ({diff}): ONNX "
                "Runtime would pick other int8 kernels, so its times would not be "
                f"{profile.id}'s; profile this CPU as a target of its own (`haq profile "
                "--target cpu-avx512 --model NAME --out DIR/my-cpu`, then --target "
                "DIR/my-cpu.yaml)")  # fmt: skip
    return None


def _named(m: dict[str, Any]) -> str:
    cpu, family, model = cpu_identity(m)
    return f"{cpu} (family {family}, model {model})"


def machine_note(profile: HardwareProfile, model: str | None = None) -> str | None:
    """A note when this CPU runs ``profile``'s kernels (`runtime_gap` is None) but is not one
    of the CPUs its tables were measured on: the same kernels at other speeds (fp32 whole
    networks ran at 0.66-0.90x between two x86 CPUs: experiments/machine_ratio.py), so a
    prediction is that machine's and a measurement here is not its check. None when the user's overlay holds ``model`` measured
    on this CPU (`haq.hardware.overlay.measured_here`: its predictions are this machine's).

    On a CPU of the target's class whose int8 kernels differ (`runtime_gap`: AMX, say), the
    note says that instead: the target's predictions are not this machine's at all."""
    gap = runtime_gap(profile)
    if gap is not None:
        if local_target() != profile.id:  # not a CPU of this target's class: nothing to say
            return None
        note = f"{profile.id}'s predictions are not this machine's: {gap}"
    else:
        note = _other_cpu_model(profile)
    if note is None or model is None:
        return note
    from haq.hardware.overlay import measured_here  # reads the overlay: only for a note

    return None if measured_here(profile.id, model) else note


def _other_cpu_model(profile: HardwareProfile) -> str | None:
    """`machine_note`'s text where this CPU runs the kernels but measured none of the tables."""
    from haq.hardware.ort.target import TARGET
    from haq.runtime.machine import machine_info

    d = profile.provenance_details
    listed = d.get("machines") or [d]
    here = machine_info()
    if any(cpu_identity(m) == cpu_identity(here) for m in listed):
        return None
    there = "; ".join(_named(m) for m in listed)
    how = (  # a target of its own (`haq profile --out DIR/NAME`) is measured into its folder
        f"`haq profile --target {TARGET} --model NAME` measures a network on this one into "
        "your table overlay"
        if profile.id == TARGET
        else f"`haq profile --target {TARGET} --model NAME --out "
        f"{getattr(profile.tables.get('layers'), 'parent', 'DIR/NAME')}` measures a network on "
        "this one into its tables"
    )
    return (f"{profile.id}'s tables were measured on {there}, not on this CPU ({_named(here)}): "
            "the same kernels run at other speeds on another CPU model (fp32 whole networks "
            f"differed by 10-34 % between two of them), so the predictions are that machine's; "
            f"{how}")  # fmt: skip


def require_measurable(profile: HardwareProfile) -> None:
    """Raise a one-line `HaqError` when ``profile`` cannot be measured here."""
    gap = runtime_gap(profile)
    if gap is not None:
        raise HaqError(f"cannot measure on target {profile.id}: {gap}")


# The measured targets a CPU is an instance of: the flags that decide its kernels.
LOCAL_TARGETS = {"cpu-avx512": ("avx512f", "avx512_vnni")}


def local_target() -> str | None:
    """The target this machine is an instance of (cpu-avx512 on an x86 CPU with AVX512-VNNI
    and ONNX Runtime installed), or None: what `haq search` scores latency on by default."""
    import importlib.util

    from haq.runtime.machine import machine_info

    if importlib.util.find_spec("onnxruntime") is None:
        return None
    here = set(machine_info()["flags"])
    return next((t for t, flags in LOCAL_TARGETS.items() if here.issuperset(flags)), None)
