"""Search drivers, registered by the names users type after ``--driver``.

A driver implements the `Driver` protocol (`haq.search.drivers.base`): the loop asks it for
configs and tells it every finished trial. Optuna samplers are one kind (`samplers`); haq's
own sensitivity-guided `hybrid` (the default) is another. Adding a driver is one module plus
one `register` line here, and one line in the conformance suite's parametrisation
(`haq.testing.drivers`).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable

from haq.errors import HaqError
from haq.search.drivers.base import (
    Driver,
    DriverContext,
    DriverInfo,
    Proposal,
    parse_driver_options,
)
from haq.search.drivers.samplers import SAMPLERS, sampler_driver

DEFAULT_DRIVER = "hybrid"

_DRIVERS: dict[str, DriverInfo] = {}


def register(info: DriverInfo) -> DriverInfo:
    _DRIVERS[info.name] = info
    return info


def get_driver(name: str) -> DriverInfo:
    if name not in _DRIVERS:
        raise HaqError(f"unknown driver {name!r}; use one of {', '.join(sorted(_DRIVERS))}")
    return _DRIVERS[name]


def list_drivers() -> list[DriverInfo]:
    return sorted(_DRIVERS.values(), key=lambda d: d.name)


def _lazy(module: str, cls: str) -> Callable[[dict[str, str]], Driver]:
    """A factory that imports its driver's module (torch, scipy) only when the driver is made."""

    def make(options: dict[str, str]) -> Driver:
        return getattr(importlib.import_module(f"haq.search.drivers.{module}"), cls)(options)

    return make


for _name, (_factory, _text, _options) in SAMPLERS.items():
    register(DriverInfo(_name, _text, sampler_driver(_name, _factory), _options))

register(
    DriverInfo(
        "exhaustive",
        "every config once, in a seeded order (tiny spaces only)",
        _lazy("exhaustive", "ExhaustiveDriver"),
    )
)
register(
    DriverInfo(
        "amp-greedy",
        "AIMET AMP: measured per-layer drops, then the cumulative greedy path in "
        "sensitivity order (every prefix a point)",
        _lazy("amp", "AmpGreedyDriver"),
    )
)
register(
    DriverInfo(
        "hawq-ilp",
        "HAWQ-V2/V3: Hessian trace x weight perturbation, one ILP per latency budget (W=A bits)",
        _lazy("hawq", "HawqIlpDriver"),
        {"budgets": "ILP budgets swept (default: the remaining trials)"},
    )
)
register(
    DriverInfo(
        "haq-ddpg",
        "HAQ: DDPG agent, layer by layer weight/activation bits, resource wall at a latency budget",
        _lazy("ddpg", "DdpgDriver"),
        {
            "preserve": "budget as a fraction of uniform w8a8's cost objective (default 0.6)",
            "warmup": "episodes of random actions before the agent acts (default 20)",
        },
    )
)
register(
    DriverInfo(
        "ompq",
        "OMPQ-style, training-free: layer orthogonality as importance, one ILP per latency budget",
        _lazy("ompq", "OmpqDriver"),
        {"budgets": "ILP budgets swept (default: the remaining trials)"},
    )
)
register(
    DriverInfo(
        "zeroq-dp",
        "ZeroQ: per-layer KL against the float model, Pareto-frontier DP over "
        "cost bins (no evaluation steers it)",
        _lazy("zeroq", "ZeroqDpDriver"),
        {"bins": "cost bins of the DP (default 200)"},
    )
)
register(DriverInfo("hybrid", "sensitivity + ILP front in seconds, then surrogate-guided evolution seeded "
                    "by it (default)", _lazy("hybrid", "HybridDriver"), {
                        "sensitivity": "loss (default: the ILP sweeps the output KL on calibration "
                                       "images, the surrogate's prior adds their labelled loss change "
                                       "beyond noise; kl without labels), kl (KL only) or accuracy "
                                       "(measured drops, as trials)",
                        "ilp_points": "configs of the first ILP sweep evaluated (default: a third of the "
                                      "budget, 4 to 20)",
                    }))  # fmt: skip

__all__ = ["DEFAULT_DRIVER", "Driver", "DriverContext", "DriverInfo", "Proposal", "get_driver",
           "list_drivers", "parse_driver_options", "register"]  # fmt: skip
