"""`haq search --profile auto|never|ask`: measure what the target's tables lack, first.

When the target's runtime is on this machine and its tables hold no row for some layer the
search space can pick (a network the tables never saw: the learned model or the roofline would
answer for it), the model is profiled into the user's table overlay (`haq.hardware.overlay`)
with `haq profile`'s harness, at the search's thread count and for the kernel classes the
space uses: whole-model uniform and alternating configs, resumable, with progress and ETA.
The search then scores the user's network with measured rows (and its own glue).
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import Any

from haq.errors import HaqError
from haq.progress import emit

PROFILE_MODES = ("auto", "never", "ask")
#: Wall timings per config in separate passes, the fastest counting (as `haq profile`'s
#: default): one pass on a shared machine can run 50 % slow for a minute.
REPEATS = 4


def _ask(question: str) -> bool:
    if not sys.stdin.isatty():
        print(f"haq: {question} [no: stdin is not a terminal; pass --profile auto to measure]",
              file=sys.stderr)  # fmt: skip
        return False
    answer = input(f"{question} [y/N] ").strip().lower()
    return answer in ("y", "yes")


def profile_missing(opts: Any, cost_model: Any, space: Any, layers: Sequence[Any]) -> bool:
    """Profile ``opts.model`` into the overlay when ``opts.profile`` allows and rows are
    missing; True when something was measured (the caller rebuilds its cost model)."""
    if opts.profile not in PROFILE_MODES:
        raise HaqError(
            f"--profile {opts.profile!r} is unknown; use one of {', '.join(PROFILE_MODES)}"
        )
    if opts.profile_jobs is not None and opts.profile_jobs < 1:
        raise HaqError(f"--profile-jobs must be at least 1, not {opts.profile_jobs}")
    if opts.profile == "never" or opts.target is None or not hasattr(cost_model, "unmeasured"):
        return False
    from haq.hardware.ort.target import KERNEL_CLASSES, profiler_of
    from haq.hardware.overlay import overlay_path
    from haq.hardware.reachable import local_target, runtime_gap
    from haq.models.hf import DEFAULT_TOKENS

    profile = cost_model.profile
    if profile.provenance != "measured":  # simulated / published rows: nothing to measure
        return False
    kinds = {s.name: s.kind for s in layers}
    classes = {profile.kernel_for(kinds[name], p, cost_model.granularity_of(p),
                                  cost_model.activations)
               for name, choices in space.choices.items() for p in choices} - {None}  # fmt: skip
    missing = cost_model.unmeasured(classes)
    if not missing:
        return False
    say = (lambda m: emit("note", m)) if opts.progress else (lambda m: None)
    where = f"{len(missing)} of {len(layers)} layers (e.g. {missing[0]})"
    profiler = profiler_of(profile)
    gap = runtime_gap(profile) if profiler else f"haq profile cannot measure {profile.id}"
    if gap is not None:  # on a CPU of the target's class `note_other_machine` says why
        why = "" if local_target() == profile.id else f" (not measured here: {gap})"
        say(f"{profile.id}: no measured rows for {where}; the learned model or the roofline "
            f"scores them{why}")  # fmt: skip
        return False
    target_dir = overlay_path(profile.id)
    question = (f"{profile.id}: no measured rows for {where}; measure {opts.model} on this "
                f"machine into {target_dir} first?")  # fmt: skip
    if opts.profile == "ask" and not _ask(question):
        return False
    from haq.hardware.ort.jobs import profile_target

    measurable = sorted(c for c in classes if c in KERNEL_CLASSES)
    say(f"{profile.id}: no measured rows for {where}; profiling {opts.model} "
        f"({', '.join(measurable)}; {cost_model.threads} thread(s)) into {target_dir} "
        "(resumable; --profile never skips this)")  # fmt: skip
    try:
        report = profile_target([opts.model], target=profiler, threads=(cost_model.threads,),
                                classes=measurable, directory=target_dir, write_yaml=False,
                                repeats=REPEATS, progress=say,
                                tokens=(opts.tokens or DEFAULT_TOKENS,), max_jobs=opts.profile_jobs,
                                priority=least_sure(profile))  # fmt: skip
    except HaqError as e:  # e.g. a model that does not export: the search still runs
        emit("warning", f"haq: warning: could not profile {opts.model} ({e}); the learned model "
             "or the roofline scores its layers", error=str(e))  # fmt: skip
        return False
    if report.failed:
        say(f"haq: warning: {len(report.failed)} profiling jobs failed (first: {report.failed[0]}); "
            "their layers keep the learned or roofline estimate")  # fmt: skip
    return report.measured > 0 or report.skipped > 0


def note_other_machine(opts: Any, cost_model: Any) -> None:
    """Say so when this CPU runs the target's kernels but did not measure its tables (nor the
    user's overlay rows of this network): the predictions are another machine's."""
    profile = getattr(cost_model, "profile", None)
    if not opts.progress or profile is None or profile.provenance != "measured":
        return
    from haq.hardware.reachable import machine_note

    note = machine_note(profile, opts.model)
    if note:
        emit("note", note)


def least_sure(profile: Any) -> Any:
    """`haq.hardware.ort.budget.Priority` for ``profile``'s tables (shipped + overlay): the
    predicted µs of a kernel class's cells no table row answers, from the lookup cost model."""
    from haq.cost.lookup import LookupCostModel

    models: dict[tuple[int, int], LookupCostModel] = {}

    def priority(specs: Sequence[Any], kernel: str, threads: int) -> float:
        key = (id(specs), threads)
        if key not in models:
            models[key] = LookupCostModel(profile, list(specs), threads=threads)
        cm = models[key]
        return cm.unmeasured_us(kernel) if kernel in cm.kernels else 0.0

    return priority
