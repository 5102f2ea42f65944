"""Model intake: registry, weights loading, preprocessing and layer discovery."""

from haq.models.layers import LayerSpec, discover_layers, layers_frame
from haq.models.registry import (
    LoadedModel,
    ModelEntry,
    Preprocess,
    get_entry,
    list_models,
    load_model,
    register,
)

__all__ = [
    "LayerSpec",
    "LoadedModel",
    "ModelEntry",
    "Preprocess",
    "discover_layers",
    "get_entry",
    "layers_frame",
    "list_models",
    "load_model",
    "register",
]
