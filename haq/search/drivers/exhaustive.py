"""Every config of a small space once: baselines first, then all others in a seeded order.

Proposals are a function of (seed, space) alone, so a resumed search skips what its history
holds and continues with the rest.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import numpy as np

from haq.errors import HaqError
from haq.search.drivers.base import DriverContext, Proposal, QueueDriver
from haq.search.trials import TrialRecord

EXHAUSTIVE_LIMIT = 100_000


class ExhaustiveDriver(QueueDriver):
    name = "exhaustive"

    def __init__(self, options: dict[str, str]) -> None:
        self.options = options

    def start(
        self, ctx: DriverContext, history: Sequence[TrialRecord], state: bytes | None
    ) -> None:
        space = ctx.space
        if space.size() > EXHAUSTIVE_LIMIT:
            raise HaqError(
                f"exhaustive search over {space.size():.3g} configs is too large (limit {EXHAUSTIVE_LIMIT}); "
                "use --driver hybrid or shrink the space (--space int8-only, --pin)"
            )
        variables = space.sampled_variables()
        names = [v for v, _ in variables]
        combos = list(itertools.product(*(opts for _, opts in variables)))
        order = np.random.default_rng(ctx.seed).permutation(len(combos))
        seeds = [(label, c) for label, c in space.seeds().items()]
        self.queue = [Proposal(c, "baseline", label) for label, c in seeds]
        self.queue += [Proposal(space.config(dict(zip(names, combos[i], strict=True))), "exhaustive")
                       for i in order]  # fmt: skip
        self.seen = {r.config.hash for r in history}
