"""The `CostModel` protocol every cost model (lookup, learned, roofline) implements.

A cost model is bound to one model's layer table when built (vectorised per-layer arrays), so
``score(config)`` is a few array look-ups: searches call it for every proposal.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Protocol, runtime_checkable

from haq.config import BitConfig


@dataclass(frozen=True)
class CostEstimate:
    """Predicted cost of one config. ``None`` where the model cannot say (e.g. no energy data)."""

    latency_ms: float | None
    energy_mj: float | None
    size_bytes: int
    bops: int  # bit operations: MACs x w_bits x a_bits (32 for a float side)
    model: (
        str  # which cost model answered, e.g. "lookup", "lookup+learned", "roofline", "size-bops"
    )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@runtime_checkable
class CostModel(Protocol):
    """Scores configs of the model whose layer table it was built for."""

    name: str

    def score(self, config: BitConfig) -> CostEstimate: ...
