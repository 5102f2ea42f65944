"""User models given as ``package.module:factory`` (or ``path/to/file.py:factory``).

The factory is called with no arguments and returns an ``nn.Module``. The module may set

- ``HAQ_PREPROCESS``: a `Preprocess` or a dict of its fields (default: ImageNet 3x224x224),
- ``HAQ_NUM_CLASSES``: the number of output classes (default 1000),
- ``HAQ_DEFAULT_DATA``: the data source that suits the model (default none),

so a model haq has never heard of gets the same treatment as the built-in families.
"""

from __future__ import annotations

import dataclasses
import importlib
import importlib.util
import os
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from types import ModuleType
from typing import Any

from torch import nn

from haq.errors import HaqError
from haq.models.registry import ModelEntry, Preprocess
from haq.models.weights import load_state_dict_file, warn_random_weights

IMAGENET_PREPROCESS = Preprocess(
    input_size=(3, 224, 224),
    mean=(0.485, 0.456, 0.406),
    std=(0.229, 0.224, 0.225),
    resize=256,
    crop=224,
)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__


def _import(module_name: str, spec: str) -> ModuleType:
    """Import the factory's module, from a ``.py`` path or by name (current dir included)."""
    if module_name.endswith(".py"):
        path = Path(module_name).expanduser()
        if not path.is_file():
            raise HaqError(f"model file {module_name!r} for {spec!r} not found")
        mod_name = f"haq_user_model_{path.stem}"
        loader_spec = importlib.util.spec_from_file_location(mod_name, path)
        if loader_spec is None or loader_spec.loader is None:
            raise HaqError(f"cannot import {module_name!r} for {spec!r}; is it a Python file?")
        module = importlib.util.module_from_spec(loader_spec)
        sys.modules[mod_name] = module
        try:
            loader_spec.loader.exec_module(module)
        except Exception as exc:
            sys.modules.pop(mod_name, None)
            raise HaqError(
                f"importing {module_name!r} for {spec!r} failed ({_first_line(exc)})"
            ) from exc
        return module
    # The `haq` console script does not put the working directory on sys.path; users expect
    # `--model mymodels:build` to find ./mymodels.py, so look there last.
    cwd = os.getcwd()
    if cwd not in sys.path and "" not in sys.path:
        sys.path.append(cwd)
    try:
        return importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        raise HaqError(
            f"cannot import module {module_name!r} for model {spec!r} ({_first_line(exc)}); "
            "install it or run haq where it is importable (PYTHONPATH)"
        ) from exc
    except Exception as exc:
        raise HaqError(
            f"importing module {module_name!r} for model {spec!r} failed ({_first_line(exc)})"
        ) from exc


def _preprocess(module: ModuleType, spec: str) -> Preprocess:
    """``HAQ_PREPROCESS`` as a `Preprocess`, or the ImageNet default."""
    raw: Any = getattr(module, "HAQ_PREPROCESS", None)
    if raw is None:
        return IMAGENET_PREPROCESS
    if isinstance(raw, Preprocess):
        return raw
    if not isinstance(raw, Mapping):
        raise HaqError(
            f"HAQ_PREPROCESS in {module.__name__} for {spec!r} must be a Preprocess or a "
            f"dict, not {type(raw).__name__}"
        )
    fields = {f.name for f in dataclasses.fields(Preprocess)}
    unknown = sorted(set(raw) - fields)
    if unknown:
        raise HaqError(
            f"HAQ_PREPROCESS in {module.__name__} has unknown keys {unknown}; use {sorted(fields)}"
        )
    values = {k: tuple(v) if isinstance(v, list) else v for k, v in raw.items()}
    try:
        pre = Preprocess(**values)
    except TypeError as exc:
        raise HaqError(
            f"HAQ_PREPROCESS in {module.__name__} is incomplete ({_first_line(exc)}); it needs "
            "input_size, mean and std"
        ) from exc
    if len(pre.input_size) != 3:
        raise HaqError(
            f"HAQ_PREPROCESS input_size in {module.__name__} must be (C, H, W), "
            f"not {pre.input_size}"
        )
    return pre


def _reset_parameters(model: nn.Module) -> None:
    """Re-initialise every layer that knows how, for ``--weights none`` on a pretrained net."""
    for m in model.modules():
        reset = getattr(m, "reset_parameters", None)
        if callable(reset):
            reset()


def custom_entry(spec: str) -> ModelEntry:
    """A registry entry for ``package.module:factory``; import errors surface here."""
    module_name, sep, attr = spec.rpartition(":")
    if not sep or not module_name or not attr:
        raise HaqError(f"custom model {spec!r} must look like 'package.module:factory'")
    module = _import(module_name, spec)
    factory = getattr(module, attr, None)
    if factory is None:
        raise HaqError(f"module {module_name!r} has no attribute {attr!r} (model {spec!r})")
    if not callable(factory):
        raise HaqError(f"{spec!r} is a {type(factory).__name__}, not a callable factory")
    preprocess = _preprocess(module, spec)
    num_classes = int(getattr(module, "HAQ_NUM_CLASSES", 1000))
    default_data = getattr(module, "HAQ_DEFAULT_DATA", None)
    doc = (getattr(factory, "__doc__", None) or "").strip().splitlines()
    description = f"user model {spec}" + (f": {doc[0]}" if doc else "")
    return ModelEntry(
        name=spec,
        build=_builder(spec, factory),
        preprocess=preprocess,
        num_classes=num_classes,
        description=description,
        family="custom",
        default_data=default_data,
        tags=("custom",),
    )


def _builder(spec: str, factory: Callable[[], Any]) -> Callable[[str], nn.Module]:
    def build(weights: str) -> nn.Module:
        """``default``: as the factory returns it; ``none``: re-initialised; else a file."""
        try:
            model = factory()
        except HaqError:
            raise
        except Exception as exc:
            raise HaqError(f"factory {spec!r} raised {_first_line(exc)}") from exc
        if not isinstance(model, nn.Module):
            raise HaqError(
                f"factory {spec!r} returned a {type(model).__name__}, not a torch.nn.Module"
            )
        if weights == "none":
            _reset_parameters(model)
            warn_random_weights(spec)
        elif weights != "default":
            load_state_dict_file(model, weights, spec)
        return model.eval()

    return build
