"""Model intake: registry, weights loading, preprocessing and layer discovery.

Names resolve on first use (PEP 562) so that torch-free submodules (`haq.models.spec`) can be
imported without torch.
"""

from __future__ import annotations

import importlib
from typing import Any

_WHERE = {
    "LayerSpec": "haq.models.spec",
    "discover_layers": "haq.models.layers",
    "layers_frame": "haq.models.layers",
    **dict.fromkeys(["LoadedModel", "ModelEntry", "Preprocess", "get_entry", "list_models",
                     "load_model", "register"], "haq.models.registry"),
}  # fmt: skip
__all__ = sorted(_WHERE)


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module 'haq.models' has no attribute {name!r}")
    value = getattr(importlib.import_module(_WHERE[name]), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_WHERE))
