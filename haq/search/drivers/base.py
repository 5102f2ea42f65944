"""The `Driver` protocol: what proposes configs, driven by the search loop through ask/tell.

A driver is asked for up to ``n`` new configs and told every finished trial. It may read the
search's space, cost model, budgets and sensitivity source from its `DriverContext`. The loop,
not the driver, evaluates, records and persists: every evaluated config becomes a trial of the
Optuna study on disk, whichever driver proposed it.

Resume: `start` receives every trial already finished (and the driver's saved `state`, if it
keeps one). A driver must rebuild its state from them so that a killed search continues
without losing or repeating a trial; drivers whose proposals are a function of (seed, told
trials) need no saved state at all.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from haq.config import BitConfig
from haq.errors import HaqError

if TYPE_CHECKING:
    from haq.cost.base import CostModel
    from haq.search.budgets import BudgetGuard
    from haq.search.sensitivity import SensitivitySource
    from haq.search.space import SearchSpace
    from haq.search.trials import TrialRecord


@dataclass
class Proposal:
    """One config a driver wants evaluated, and why (``source`` names the driver's phase)."""

    config: BitConfig
    source: str
    label: str | None = None  # a baseline's name
    driver_attrs: dict[str, Any] = field(default_factory=dict)  # stored with the trial


@dataclass
class DriverContext:
    """What a driver may read. ``budget`` counts trials (evaluations and rejections)."""

    space: SearchSpace
    objectives: list[str]
    directions: list[str]
    cost_model: CostModel
    guard: BudgetGuard
    budget: int
    seed: int = 0
    sensitivity: SensitivitySource | None = None
    workers: int = 1  # evaluations that run at once: how many proposals `ask` will be asked for


@runtime_checkable
class Driver(Protocol):
    name: str

    def start(
        self, ctx: DriverContext, history: Sequence[TrialRecord], state: bytes | None
    ) -> None:
        """Bind to a search; ``history`` holds every finished trial in order (resume)."""

    def ask(self, n: int) -> list[Proposal]:
        """Up to ``n`` configs never proposed before; [] when the driver has nothing left."""

    def tell(self, record: TrialRecord) -> None:
        """A proposal finished (evaluated, rejected over budget, or failed)."""

    def state(self) -> bytes | None:
        """Bytes to hand back to `start` on resume (None: rebuilt from the history alone)."""


class QueueDriver:
    """A driver whose proposals are a list fixed at `start` (``self.queue``): `ask` hands out
    what the history (``self.seen``) does not hold yet, so a resume simply continues."""

    queue: list[Proposal]
    seen: set[str]

    def ask(self, n: int) -> list[Proposal]:
        out: list[Proposal] = []
        while self.queue and len(out) < n:
            p = self.queue.pop(0)
            if p.config.hash not in self.seen:
                self.seen.add(p.config.hash)
                out.append(p)
        return out

    def tell(self, record: TrialRecord) -> None:
        self.seen.add(record.config.hash)

    def state(self) -> bytes | None:
        return None


@dataclass(frozen=True)
class DriverInfo:
    """A registered driver: its name, a one-line description, its options and a factory."""

    name: str
    description: str
    factory: Callable[[dict[str, str]], Driver]
    options: dict[str, str] = field(default_factory=dict)  # option -> help line

    def make(self, options: dict[str, str] | None = None) -> Driver:
        opts = dict(options or {})
        unknown = sorted(set(opts) - set(self.options))
        if unknown:
            known = ", ".join(sorted(self.options)) or "none"
            raise HaqError(f"driver {self.name} has no option {unknown[0]!r}; its options: {known}")
        return self.factory(opts)


def parse_driver_options(items: Sequence[str] | None) -> dict[str, str]:
    """``["population=20", "mutation=2"]`` -> a dict; a malformed item is a one-line error."""
    out: dict[str, str] = {}
    for item in items or ():
        key, sep, value = item.partition("=")
        if not sep or not key.strip() or not value.strip():
            raise HaqError(f"driver option {item!r} must be KEY=VALUE, e.g. population=20")
        out[key.strip()] = value.strip()
    return out


def int_option(options: dict[str, str], key: str, default: int, low: int = 1) -> int:
    """An integer driver option of at least ``low``, or a one-line error."""
    if key not in options:
        return default
    try:
        value = int(options[key])
    except ValueError:
        value = low - 1
    if value < low:
        raise HaqError(f"driver option {key}={options[key]} must be an integer >= {low}")
    return value


def float_option(
    options: dict[str, str], key: str, default: float, low: float, high: float
) -> float:
    """A number in (low, high], or a one-line error."""
    if key not in options:
        return default
    try:
        value = float(options[key])
    except ValueError:
        value = float("nan")
    if not low < value <= high:
        raise HaqError(f"driver option {key}={options[key]} must be a number in ({low}, {high}]")
    return value


def choice_option(options: dict[str, str], key: str, default: str, choices: Sequence[str]) -> str:
    value = options.get(key, default)
    if value not in choices:
        raise HaqError(f"driver option {key}={value} is unknown; use one of {', '.join(choices)}")
    return value
