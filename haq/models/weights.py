"""Weights loading shared by every model family.

One place turns a user's checkpoint file into a loaded model, so every family accepts the
same layouts (raw state dict, ``{'state_dict': ...}``, ``{'model': ...}``, ``module.``
prefixes from DataParallel) and fails with the same one-line errors.
"""

from __future__ import annotations

import contextlib
import logging
import pickle
import warnings
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from haq.errors import HaqError, RandomWeightsWarning

log = logging.getLogger(__name__)

# Prefixes wrappers add to every key: DataParallel/DDP and torch.compile.
_WRAPPER_PREFIXES = ("module.", "_orig_mod.")
# Buffers older checkpoints lack and BatchNorm fills in itself.
_OPTIONAL_SUFFIXES = ("num_batches_tracked",)


def warn_random_weights(model_name: str) -> None:
    """Say loudly that ``--weights none`` makes accuracy numbers meaningless."""
    msg = (
        f"{model_name} uses random weights (--weights none): accuracy is meaningless; "
        "use it only for layer tables, cost and latency work"
    )
    log.warning(msg)
    warnings.warn(msg, RandomWeightsWarning, stacklevel=3)


@contextlib.contextmanager
def quiet_random_weights(weights: str) -> Iterator[None]:
    """Random weights are fine for latency and cost work: drop the accuracy warning."""
    if weights != "none":
        yield
        return
    disabled = log.disabled
    log.disabled = True
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RandomWeightsWarning)
            yield
    finally:
        log.disabled = disabled


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__


def read_checkpoint(path: str | Path) -> Any:
    """``torch.load`` a checkpoint on CPU, safely when possible.

    ``weights_only=True`` first; a file it refuses (pickled classes, e.g. a whole model or an
    optimizer with custom objects) is loaded fully only after a warning, since the user chose
    the file.
    """
    p = Path(path).expanduser()
    if not p.is_file():
        raise HaqError(f"weights file {str(path)!r} not found; pass an existing checkpoint path")
    try:
        return torch.load(p, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as safe_exc:
        if "Unsupported global" not in str(safe_exc):
            raise _unreadable(path, safe_exc) from safe_exc
        warnings.warn(
            f"{path} holds pickled objects beyond tensors; loading it fully (only do this "
            "for files you trust)",
            stacklevel=3,
        )
        try:
            return torch.load(p, map_location="cpu", weights_only=False)
        except Exception as exc:
            raise _unreadable(path, exc) from exc
    except Exception as exc:
        raise _unreadable(path, exc) from exc


def _unreadable(path: str | Path, exc: BaseException) -> HaqError:
    """One line for a file torch cannot load, with the unpickler's own reason if it gave one."""
    detail = _first_line(exc)
    text = str(exc)
    marker = "WeightsUnpickler error:"
    if marker in text:
        reason = text.split(marker, 1)[1].strip().splitlines()
        if reason:
            detail = f"{type(exc).__name__}: {reason[0]}"
    return HaqError(
        f"cannot read weights file {str(path)!r} ({detail}); "
        "it is not a torch checkpoint or it is corrupt"
    )


def extract_state_dict(obj: Any, path: str | Path) -> dict[str, torch.Tensor]:
    """The tensor state dict inside a loaded checkpoint, with wrapper prefixes stripped."""
    if isinstance(obj, nn.Module):
        obj = obj.state_dict()
    elif isinstance(obj, Mapping):
        for key in ("state_dict", "model", "model_state_dict"):
            inner = obj.get(key)
            if isinstance(inner, nn.Module):
                obj = inner.state_dict()
                break
            if isinstance(inner, Mapping):
                obj = inner
                break
    if not isinstance(obj, Mapping) or not obj:
        raise HaqError(
            f"weights file {str(path)!r} holds no state dict (found {type(obj).__name__}); "
            "save it with torch.save(model.state_dict(), path)"
        )
    out: dict[str, torch.Tensor] = {}
    for key, value in obj.items():
        if not isinstance(value, torch.Tensor):
            raise HaqError(
                f"weights file {str(path)!r} is not a state dict (entry {key!r} is a "
                f"{type(value).__name__}); save it with torch.save(model.state_dict(), path)"
            )
        name = str(key)
        stripped = True
        while stripped:
            stripped = False
            for prefix in _WRAPPER_PREFIXES:
                if name.startswith(prefix):
                    name = name[len(prefix) :]
                    stripped = True
        out[name] = value
    return out


def _shape(t: torch.Tensor) -> str:
    return "x".join(str(d) for d in t.shape) or "scalar"


def apply_state_dict(
    model: nn.Module, state: Mapping[str, torch.Tensor], path: str | Path, model_name: str
) -> nn.Module:
    """Load ``state`` into ``model`` only if it fits exactly; a one-line HaqError otherwise."""
    expected = model.state_dict()
    optional = tuple(_OPTIONAL_SUFFIXES)
    missing = [k for k in expected if k not in state and not k.endswith(optional)]
    unexpected = [k for k in state if k not in expected and not k.endswith(optional)]
    mismatched = [
        k for k in state if k in expected and tuple(state[k].shape) != tuple(expected[k].shape)
    ]
    if missing or unexpected or mismatched:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing keys, first {missing[0]!r}")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected keys, first {unexpected[0]!r}")
        if mismatched:
            k = mismatched[0]
            parts.append(
                f"{len(mismatched)} shape mismatches, first {k!r} "
                f"(file {_shape(state[k])}, model {_shape(expected[k])})"
            )
        raise HaqError(
            f"weights {str(path)!r} do not fit {model_name}: {', '.join(parts)}; "
            "pass the checkpoint saved for this model"
        )
    usable = {k: v for k, v in state.items() if k in expected}
    model.load_state_dict(usable, strict=False)
    return model


def load_state_dict_file(model: nn.Module, path: str | Path, model_name: str) -> nn.Module:
    """Load the checkpoint at ``path`` into ``model`` (in place) and return the model."""
    state = extract_state_dict(read_checkpoint(path), path)
    return apply_state_dict(model, state, path, model_name)
