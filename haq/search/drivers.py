"""Search drivers, registered by the names users type after ``--driver``.

A driver is an Optuna sampler factory: the search runs an Optuna ask/tell loop, so the study
(on disk) stays the single source of truth and every driver resumes the same way. Adding a
driver is one function plus one `register` line.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from haq.errors import HaqError

if TYPE_CHECKING:
    import optuna

    from haq.search.space import SearchSpace

ConstraintsFunc = Callable[["optuna.trial.FrozenTrial"], list[float]]
EXHAUSTIVE_LIMIT = 100_000


@dataclass(frozen=True)
class Driver:
    name: str
    description: str
    make: Callable[
        [int, SearchSpace, ConstraintsFunc | None], Any
    ]  # (seed, space, constraints) -> sampler


_DRIVERS: dict[str, Driver] = {}


def register(driver: Driver) -> Driver:
    _DRIVERS[driver.name] = driver
    return driver


def get_driver(name: str) -> Driver:
    if name not in _DRIVERS:
        raise HaqError(f"unknown driver {name!r}; use one of {', '.join(sorted(_DRIVERS))}")
    return _DRIVERS[name]


def list_drivers() -> list[Driver]:
    return sorted(_DRIVERS.values(), key=lambda d: d.name)


def _nsga2(seed: int, space: SearchSpace, constraints: ConstraintsFunc | None) -> Any:
    import optuna

    pop = max(8, min(50, 4 * len(space.variables())))
    return optuna.samplers.NSGAIISampler(
        population_size=pop, seed=seed, constraints_func=constraints
    )


def _tpe(seed: int, space: SearchSpace, constraints: ConstraintsFunc | None) -> Any:
    import optuna

    return optuna.samplers.TPESampler(
        seed=seed, multivariate=True, n_startup_trials=10, constraints_func=constraints
    )


def _gp(seed: int, space: SearchSpace, constraints: ConstraintsFunc | None) -> Any:
    import optuna

    return optuna.samplers.GPSampler(seed=seed, constraints_func=constraints)


def _random(seed: int, space: SearchSpace, constraints: ConstraintsFunc | None) -> Any:
    import optuna

    return optuna.samplers.RandomSampler(seed=seed)


def _exhaustive(seed: int, space: SearchSpace, constraints: ConstraintsFunc | None) -> Any:
    import optuna

    if space.size() > EXHAUSTIVE_LIMIT:
        raise HaqError(
            f"exhaustive search over {space.size():.3g} configs is too large (limit {EXHAUSTIVE_LIMIT}); "
            "use --driver nsga2 or shrink the space (--space int8-only, --pin)"
        )
    return optuna.samplers.BruteForceSampler(seed=seed)


register(Driver("nsga2", "Optuna NSGA-II: evolutionary multi-objective (default)", _nsga2))
register(Driver("tpe", "Optuna multivariate TPE (multi-objective)", _tpe))
register(Driver("gp", "Optuna Gaussian-process Bayesian optimisation", _gp))
register(Driver("random", "uniform random configs (baseline)", _random))
register(Driver("exhaustive", "every config once (tiny spaces only)", _exhaustive))
