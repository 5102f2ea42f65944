"""OMPQ-style training-free driver: network orthogonality as layer importance, then one ILP per
cost budget; no gradient and no evaluation steers it (the "seconds" end of the spectrum).

After Ma et al. (AAAI 2023, MAC-AutoML/OMPQ): a layer whose output features are most
orthogonal to the others' carries most unique information, so it should keep the most bits.
Here importance is `haq.search.sensitivity.layer_orthogonality` (Gram-matrix form on the
calibration images), a choice's penalty is importance x the relative quantization noise of its
weight and activation widths (``4^-bits``, float 0) summed over the variable's layers, and the
sweep is `hawq.IlpSweepDriver`'s.
"""

from __future__ import annotations

import numpy as np

from haq.search.drivers.base import DriverContext
from haq.search.drivers.hawq import IlpSweepDriver
from haq.search.drivers.ilp import bits


def _noise(choice: str) -> float:
    w, a = bits(choice)
    return sum(0.0 if b >= 32 else 4.0 ** (-b) for b in (w, a))


class OmpqDriver(IlpSweepDriver):
    name = "ompq"

    def penalties(self, ctx: DriverContext, cols: list[tuple[str, str]]) -> np.ndarray:
        assert ctx.sensitivity is not None
        importance = ctx.sensitivity.orthogonality()
        groups = {g[0]: g for g in ctx.space.groups}
        weight = {v: sum(max(importance[n], 0.0) for n in groups[v]) for v, _ in cols}
        return np.array([weight[v] * _noise(o) for v, o in cols])
