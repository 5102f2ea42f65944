"""Which profiling jobs to run first when only some fit: the ones the cost model is least sure of.

`haq profile --max-jobs N` measures at most N new jobs in one run (the rest stay pending: run
it again). A uniform config measures one kernel class's layer rows, so its worth is what the
cost model now guesses for them: the predicted microseconds of that class's cells no table row
answers (learned model or roofline), a proxy for the absolute error the measurement removes.
Uniform configs come first in that order; an alternating config (transition rows) follows
once both its classes' uniform configs are measured or chosen, since its attribution
subtracts their layer times.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

#: (layer specs, kernel class, threads) -> predicted µs of that class's cells no row answers
Priority = Callable[[Sequence[Any], str, int], float]

Plan = tuple[str, str, tuple[str, ...], list[Any]]  # model, config label, kernels, pending jobs


def select_jobs(
    plans: list[Plan], max_jobs: int, priority: Priority | None, specs_of: dict[str, Any],
    done: Callable[[str, int, str], bool],
) -> tuple[list[Plan], int]:  # fmt: skip
    """``plans`` cut to ``max_jobs`` jobs (see the module docstring) and how many were left.

    ``done(model, threads, config)``: whether that job is already measured (resumed tables)."""
    flat = [(m, label, kernels, j) for m, label, kernels, pending in plans for j in pending]
    worth: dict[tuple[str, str, int], float] = {}

    def unsure(m: str, cls: str, threads: int) -> float:
        key = (m, cls, threads)
        if key not in worth:
            worth[key] = priority(specs_of[m], cls, threads) if priority else 0.0
        return worth[key]

    uniform = [u for u in flat if u[1].startswith("uniform:")]
    uniform.sort(key=lambda u: -unsure(u[0], u[1].removeprefix("uniform:"), u[3].threads))
    chosen = uniform[:max_jobs]
    picked = {(m, j.threads, label) for m, label, _, j in chosen}
    rest = sorted(
        (u for u in flat if not u[1].startswith("uniform:")),
        key=lambda u: -sum(unsure(u[0], c, u[3].threads) for c in set(u[2])),
    )
    for m, label, kernels, j in rest:
        if len(chosen) >= max_jobs:
            break
        needs = [f"uniform:{c}" for c in sorted(set(kernels))]
        if all((m, j.threads, u) in picked or done(m, j.threads, u) for u in needs):
            chosen.append((m, label, kernels, j))
    out: dict[tuple[str, str], Plan] = {}  # in the chosen order: least sure first
    for m, label, kernels, j in chosen:
        out.setdefault((m, label), (m, label, kernels, []))[3].append(j)
    return list(out.values()), len(flat) - len(chosen)
