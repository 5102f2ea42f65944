"""The user's own measured table rows, layered over a target's shipped tables.

`haq profile` and `haq search --profile auto` measure into ``<overlay_dir()>/<target>/`` (same
files as the shipped tables: layers, transitions, glue, layer_map), never into the shipped
tables unless asked. A cost model reads both: an overlay layer row replaces the shipped row of
the same key, transition rows add to the shipped ones, and a model the overlay profiled takes
its glue and layer map from the overlay only.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from haq.errors import HaqError
from haq.hardware.profile import HardwareProfile
from haq.hardware.tables import SIGNATURE_COLUMNS, read_glue, read_table, read_transitions

if TYPE_CHECKING:
    import pandas as pd

TABLE_FILES = ("layers", "transitions", "glue", "layer_map")


def overlay_path(target: str) -> Path:
    from haq.paths import overlay_dir

    return overlay_dir() / target


def measured_here(target: str, model: str) -> bool:
    """Whether the user's overlay holds ``model`` measured on this CPU (text models: any of
    its token counts, ``name@T``): its predictions are then this machine's."""
    from haq.hardware.ort.files import read_observations
    from haq.hardware.ort.machines import cpu_identity
    from haq.runtime.machine import machine_info

    here = cpu_identity(machine_info())
    return any(
        str(ob.get("model")).split("@")[0] == model
        and cpu_identity(ob.get("machine") or {}) == here
        for ob in read_observations(overlay_path(target))
    )


@dataclass
class TableSet:
    """A target's tables as a cost model reads them (shipped + overlay)."""

    layers: pd.DataFrame
    transitions: pd.DataFrame | None
    glue: pd.DataFrame | None
    layer_map: pd.DataFrame | None
    overlay_rows: int = 0  # layer rows the overlay contributed


def _read(what: str, path: Path) -> pd.DataFrame:
    import pandas as pd

    if what == "layers":
        return read_table(path)
    if what == "transitions":
        return read_transitions(path)
    if what == "glue":
        return read_glue(path)
    try:
        return pd.read_csv(path)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as e:
        raise HaqError(f"layer map {path} is not readable CSV ({type(e).__name__}); "
                       "re-measure or restore it") from e  # fmt: skip


def read_overlay(target: str) -> dict[str, pd.DataFrame]:
    """The overlay's tables of ``target`` ({} when it has none); a broken file is one line."""
    d = overlay_path(target)
    out: dict[str, pd.DataFrame] = {}
    for what in TABLE_FILES:
        path = d / f"{what}.csv"
        if not path.is_file():
            continue
        try:
            out[what] = _read(what, path)
        except HaqError as e:
            raise HaqError(f"{e} (your measured overlay for {target}: delete {d} to drop it, "
                           f"or re-run `haq profile --target {target} --model ...`)") from None  # fmt: skip
    return out


def load_tables(profile: HardwareProfile) -> TableSet:
    """The shipped tables of ``profile`` merged with the user's overlay for its id."""
    import pandas as pd

    from haq.hardware.ort.target import drop_stale_rows

    paths = profile.tables
    shipped = drop_stale_rows(profile, {w: _read(w, paths[w]) for w in TABLE_FILES if w in paths})
    overlay = read_overlay(profile.id)
    if not overlay:
        return TableSet(shipped["layers"], shipped.get("transitions"), shipped.get("glue"),
                        shipped.get("layer_map"))  # fmt: skip
    layers = shipped["layers"]
    extra = overlay.get("layers")
    if extra is not None and len(extra):
        key = [
            c for c in [*SIGNATURE_COLUMNS, "precision", "threads"] if c in layers and c in extra
        ]
        mine = {tuple(r) for r in extra[key].astype(str).itertuples(index=False)}
        keep = [tuple(r) not in mine for r in layers[key].astype(str).itertuples(index=False)]
        layers = pd.concat([layers[keep], extra], ignore_index=True)
    mine_models = set(overlay["layer_map"]["model"]) if "layer_map" in overlay else set()

    def merged(what: str, by_model: bool) -> pd.DataFrame | None:
        base, mine = shipped.get(what), overlay.get(what)
        if by_model and base is not None and "model" in base:
            base = base[~base["model"].isin(mine_models)]
        # an empty table (headers only: a profile without alternating configs) adds nothing;
        # concatenated it would turn every column to object dtype
        frames = [f for f in (base, mine) if f is not None and len(f)]
        if not frames:
            return base if base is not None else mine
        return pd.concat(frames, ignore_index=True)

    return TableSet(layers, merged("transitions", False), merged("glue", True),
                    merged("layer_map", True), 0 if extra is None else len(extra))  # fmt: skip
