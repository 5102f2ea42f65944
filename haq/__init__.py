"""haq: hardware-aware mixed-precision quantization search.

The top-level import stays light: torch-free types only; heavy modules (ray, onnxruntime)
are imported by the functions that need them.
"""

from typing import Any

from haq.config import FLOAT, BitConfig, Precision
from haq.errors import HaqError

__version__ = "0.1.0"
__all__ = ["FLOAT", "BitConfig", "HaqError", "Precision", "__version__", "search"]


def search(*args: Any, **kwargs: Any) -> Any:
    """Run a mixed-precision search; see `haq.search.api.search` (imported on first use)."""
    from haq.search.api import search as _search

    return _search(*args, **kwargs)
