"""One typed record per trial: what was proposed, what it cost, how it scored.

The loop builds a `TrialRecord` when a proposal is decided (rejected, cached, evaluated or
failed), hands the same object to the driver and to the storage, and the results files are
written from these records. Optuna user attributes are only the on-disk form
(`to_user_attrs` / `from_user_attrs`), never re-parsed inside one process.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from haq.config import BitConfig
from haq.cost.base import CostEstimate
from haq.evaluate.metrics import Metrics

COMPLETE, PRUNED, FAILED = "complete", "pruned", "fail"


@dataclass
class TrialRecord:
    """A finished trial. ``values`` follow the search's objectives (None unless complete)."""

    number: int
    config: BitConfig
    cost: CostEstimate | None
    state: str  # COMPLETE, PRUNED (rejected before evaluation) or FAILED
    status: str  # a human-readable line: complete, infeasible: ..., rejected: ..., failed: ...
    source: str = ""  # what proposed it: baseline, sensitivity, ilp, evolution, sampler, ...
    label: str | None = None  # a baseline's name (w8a8, fp32, ...)
    metrics: Metrics | None = None
    values: list[float] | None = None
    constraint: list[float] = field(default_factory=list)  # accuracy budgets, <= 0 feasible
    repaired: bool = False
    cached: bool = False  # metrics reused from an earlier trial of the same config
    eval_seconds: float = 0.0
    cost_seconds: float = 0.0
    driver_attrs: dict[str, Any] = field(default_factory=dict)  # a driver's own bookkeeping
    reused: bool = False  # metrics read from the shared evaluation cache (still an evaluation)

    @property
    def feasible(self) -> bool:
        return self.state == COMPLETE and all(c <= 0 for c in self.constraint)

    def to_user_attrs(self) -> dict[str, Any]:
        return {
            "trial": self.number, "config": self.config.to_json(), "config_hash": self.config.hash,
            "summary": self.config.summary(), "status": self.status, "source": self.source,
            "label": self.label, "metrics": self.metrics.to_dict() if self.metrics else None,
            "cost": self.cost.to_dict() if self.cost else None, "constraint": self.constraint,
            "repaired": self.repaired, "cached": self.cached, "eval_seconds": self.eval_seconds,
            "cost_seconds": self.cost_seconds, "reused": self.reused,
        }  # fmt: skip

    @classmethod
    def from_user_attrs(
        cls, attrs: dict[str, Any], state: str, values: list[float] | None,
        driver_attrs: dict[str, Any] | None = None,
    ) -> TrialRecord:  # fmt: skip
        metrics = attrs.get("metrics")
        cost = attrs.get("cost")
        return cls(
            number=int(attrs["trial"]), config=BitConfig.from_dict(json.loads(attrs["config"])),
            cost=CostEstimate(**cost) if cost else None, state=state, status=attrs.get("status", state),
            source=attrs.get("source", ""), label=attrs.get("label"),
            metrics=Metrics(**metrics) if metrics else None, values=values,
            constraint=list(attrs.get("constraint") or []), repaired=bool(attrs.get("repaired")),
            cached=bool(attrs.get("cached")), eval_seconds=float(attrs.get("eval_seconds") or 0.0),
            cost_seconds=float(attrs.get("cost_seconds") or 0.0), driver_attrs=dict(driver_attrs or {}),
            reused=bool(attrs.get("reused")),
        )  # fmt: skip
