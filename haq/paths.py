"""Where haq's data folders (search spaces, hardware profiles, cost models) and caches live.

A source checkout keeps them at the top level; a wheel carries them under ``haq/_data``.
``HAQ_DATA_DIR`` overrides both; ``HAQ_CACHE_DIR`` moves the user cache (trained digits model,
distilled data, reference outputs); ``HAQ_OVERLAY_DIR`` moves the user's own measured table
rows (`haq.hardware.overlay`), which are data, not cache.
"""

from __future__ import annotations

import os
from pathlib import Path

_PKG = Path(__file__).resolve().parent
DATA_FOLDERS = ("search_spaces", "hardware_profiles", "cost_models")


def data_dir(name: str) -> Path:
    """Path of one of `DATA_FOLDERS`, from the override, the wheel, or the checkout."""
    if name not in DATA_FOLDERS:
        raise ValueError(f"unknown data folder {name!r}; one of {DATA_FOLDERS}")
    override = os.environ.get("HAQ_DATA_DIR")
    candidates = [Path(override) / name] if override else []
    candidates += [_PKG / "_data" / name, _PKG.parent / name]
    for c in candidates:
        if c.is_dir():
            return c
    return candidates[-1]


def cache_dir() -> Path:
    """The per-user cache (created on demand)."""
    override = os.environ.get("HAQ_CACHE_DIR")
    if override:
        path = Path(override)
    else:
        from platformdirs import user_cache_dir

        path = Path(user_cache_dir("haq"))
    path.mkdir(parents=True, exist_ok=True)
    return path


def overlay_dir() -> Path:
    """The per-user table overlay root (not created here): one sub-folder per target."""
    override = os.environ.get("HAQ_OVERLAY_DIR")
    if override:
        return Path(override)
    from platformdirs import user_data_dir

    return Path(user_data_dir("haq")) / "tables"
