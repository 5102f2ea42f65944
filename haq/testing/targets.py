"""Conformance suite for hardware targets: every registered target must pass it.

A target loads, states where its numbers come from (measured / simulated / published, with the
details that provenance needs), scores every precision its rules list on every op kind they
name (a finite, positive latency whose provenance label has no unknown layers: tables, learned
model or roofline), and refuses what it cannot run with a one-line `HaqError`. Layer tables
are synthetic `LayerSpec` rows (no torch, no model build), so the suite takes seconds.
`tests/testing/test_target_conformance.py` parametrises it over `conformance_targets()`:
shipping a profile YAML under ``hardware_profiles/`` enrols it.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from typing import Any

from haq.config import Precision
from haq.errors import HaqError
from haq.hardware.profile import (
    KINDS,
    OP_KINDS,
    PROVENANCE_KEYS,
    HardwareProfile,
    KernelRule,
    get_target,
    target_ids,
)
from haq.models.spec import LayerSpec

#: One layer per op kind, shaped like a mid-network ResNet / MobileNet / RegNet / classifier layer.
LAYERS: dict[str, LayerSpec] = {
    "conv": LayerSpec("conv", "conv", 0, 64, 64, (3, 3), (1, 1), 1, (28, 28), (28, 28),
                      28 * 28 * 64 * 64 * 9, 64 * 64 * 9 + 64),
    "dwconv": LayerSpec("dwconv", "dwconv", 0, 96, 96, (3, 3), (1, 1), 96, (28, 28), (28, 28),
                        28 * 28 * 96 * 9, 96 * 9 + 96),
    "gconv": LayerSpec("gconv", "gconv", 0, 64, 64, (3, 3), (1, 1), 8, (28, 28), (28, 28),
                       28 * 28 * 64 * 8 * 9, 64 * 8 * 9 + 64),
    "linear": LayerSpec("linear", "linear", 0, 512, 1000, (1, 1), (1, 1), 1, (1, 1), (1, 1),
                        512 * 1000, 512 * 1000 + 1000),
}  # fmt: skip
#: Precisions tried, in order, when looking for one a target cannot run on an op kind.
UNRUNNABLE_CANDIDATES = ("w2a2", "w3a3", "w16a16", "w2a32", "w16a32", "fp32", "w32a8", "w8a16")


def conformance_targets() -> list[str]:
    """Every registered target id (one profile YAML each)."""
    return target_ids()


def representative(rule: KernelRule) -> Precision:
    """A precision the rule matches: the low end of each bit range (None stays float)."""
    return Precision(rule.w[0] if rule.w else None, rule.a[0] if rule.a else None)


@functools.lru_cache(maxsize=64)
def _model(target: str, kind: str, granularity: str | None) -> Any:
    """The target's cost model of the one-layer table of ``kind`` (built once: tables are read
    and the learned model loaded per build)."""
    from haq.cost import cost_model_for

    return cost_model_for(target, [LAYERS[kind]], granularity=granularity)


def _score(profile: HardwareProfile, kind: str, precision: Precision, granularity: str | None):
    from haq.config import BitConfig

    return _model(profile.id, kind, granularity).score(BitConfig.uniform(precision))


def check_loads(target: str) -> None:
    """The profile loads by its id, and names a kind, kernel classes and rules."""
    profile = get_target(target)
    assert profile.id == target, f"{target}: profile id is {profile.id!r}"
    assert profile.kind in KINDS, f"{target}: kind {profile.kind!r}"
    assert profile.rules and profile.kernels, f"{target}: no rules or kernel classes"
    assert {r.kernel for r in profile.rules} <= set(profile.kernels), f"{target}: undeclared kernel"


def check_states_provenance(target: str) -> None:
    """Measured, simulated or published, with the details that provenance needs."""
    profile = get_target(target)
    assert profile.provenance in PROVENANCE_KEYS, f"{target}: provenance {profile.provenance!r}"
    lacking = [
        k for k in PROVENANCE_KEYS[profile.provenance] if not profile.provenance_details.get(k)
    ]
    assert not lacking, f"{target}: {profile.provenance} but no {', '.join(lacking)}"
    assert profile.source.strip(" ;"), f"{target}: empty provenance source"


def check_scores_every_listed_precision(target: str) -> None:
    """Each rule's representative precision on each op kind it names: a finite latency from
    tables, learned model or roofline, never an unknown layer."""
    profile = get_target(target)
    for rule in profile.rules:
        p = representative(rule)
        for kind in rule.ops:
            granularity = rule.granularity or "channel"
            est = _score(profile, kind, p, granularity)
            where = f"{target}: {p} on {kind} ({est.model})"
            assert est.latency_ms is not None and math.isfinite(est.latency_ms), where
            assert est.latency_ms > 0 and "unknown" not in est.model, where


def check_refuses_what_it_cannot_run(target: str) -> None:
    """A precision no rule matches raises a one-line HaqError naming the target (targets whose
    fallbacks run every candidate, like cpu-avx512, have none to refuse); so does a thread
    count the target has no numbers for."""
    profile = get_target(target)
    refused = 0
    for kind in OP_KINDS:
        for text in UNRUNNABLE_CANDIDATES:
            p = Precision.parse(text)
            if profile.kernel_for(kind, p) is not None:
                continue
            try:
                _score(profile, kind, p, "channel")
            except HaqError as e:
                msg = str(e)
                assert "\n" not in msg and msg.startswith(f"target {target} cannot run"), msg
                refused += 1
                break
            raise AssertionError(f"{target}: scored {p} on {kind}, which no rule runs")
    assert refused or all(
        profile.kernel_for(k, Precision.parse(t)) for k in OP_KINDS for t in UNRUNNABLE_CANDIDATES
    )
    from haq.cost import cost_model_for

    bad_threads = max(profile.threads) + 1
    try:
        cost_model_for(profile, [LAYERS["conv"]], threads=bad_threads)
    except HaqError as e:
        assert "\n" not in str(e) and f"not {bad_threads}" in str(e), str(e)
    else:
        raise AssertionError(f"{target}: accepted threads={bad_threads}")


CHECKS: dict[str, Callable[[str], None]] = {
    "loads": check_loads,
    "states_provenance": check_states_provenance,
    "scores_every_listed_precision": check_scores_every_listed_precision,
    "refuses_what_it_cannot_run": check_refuses_what_it_cannot_run,
}
