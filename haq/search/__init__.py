"""The search: space, drivers, objectives, the ask/tell loop and its results directory.

``haq.search(...)`` runs a search: this package module is itself callable, so the call works
whether or not ``haq.search`` has been imported as a package.
"""

import sys
import types
from typing import Any

from haq.search.api import SearchResult, search
from haq.search.options import SearchOptions
from haq.search.runner import Search
from haq.search.space import SearchSpace

__all__ = ["Search", "SearchOptions", "SearchResult", "SearchSpace", "search"]


class _CallableModule(types.ModuleType):
    def __call__(self, *args: Any, **kwargs: Any) -> SearchResult:
        return search(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableModule
