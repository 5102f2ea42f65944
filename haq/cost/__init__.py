"""Hardware cost of a config: latency, energy, size and BOPs, fast enough for every proposal."""

from haq.cost.base import CostEstimate, CostModel
from haq.cost.size_bops import SizeBopsModel

__all__ = ["CostEstimate", "CostModel", "SizeBopsModel"]
