"""Fit a target's learned cost model from its tables: the rows, the graph around them, the fit.

The shipped tables (plus the user's overlay, and with ``probes`` the probe networks' rows)
are joined with what each row's model says about the graph around the layer (the activation
after it, the elements pooled in front of it: `with_graph_context`), then
`haq.cost.learned.LearnedCostModel` is fitted and saved where `haq fit-cost-model` puts it.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from haq.cost.learned import LearnedCostModel
from haq.errors import HaqError
from haq.hardware.profile import HardwareProfile
from haq.hardware.tables import SHAPE_COLUMNS
from haq.models.spec import reduced_in_front

#: Which probe-network rows join a fit. ``missing`` (default): only those of (op kind, kernel
#: class) pairs no named network's row has, e.g. grouped convs beside tables of dense networks,
#: which the learned model otherwise cannot answer (the roofline runs 4-10x fast on them,
#: `experiments/gconv_rows.py`); where the named networks have rows they are the better data
#: (with every probe row, mobilenet_v3_small and shufflenet_v2 end to end got worse,
#: `cost_model_validation_unprofiled_probes.json`). ``all``: every probe row; ``none``.
PROBE_ROWS = ("missing", "all", "none")


def with_graph_context(table: pd.DataFrame, layer_map: pd.DataFrame) -> pd.DataFrame:
    """``table`` with what the graph around each row's layers adds, where it can be known:
    rows that name the model that measured them (``model``) take, over that model's layers
    with the signature, the most common activation after them (layer_map ``act``: an ``act``
    column) and the mean of the elements pooled in front of them (`reduced_in_front` from the
    layer map's execution order: a ``reduced_elements`` column). Without a ``model`` column the
    table is returned as is."""
    if "model" not in table:
        return table
    keys = ["model", *SHAPE_COLUMNS]
    context = layer_map[keys].drop_duplicates()
    if "act" in layer_map:
        acts = layer_map.groupby(keys)["act"].agg(lambda a: a.mode().iloc[0])
        context = context.merge(acts.reset_index(), on=keys)
    if "index" in layer_map:
        ordered = layer_map.sort_values(["model", "index"])
        h, w = ordered["in_h"] * ordered["in_w"], ordered["out_h"] * ordered["out_w"]
        ordered = ordered.assign(
            in_el=ordered["in_channels"] * h, out_el=ordered["out_channels"] * w
        )
        reduced = pd.concat([
            pd.Series(reduced_in_front(g["in_el"].tolist(), g["out_el"].tolist()), index=g.index)
            for _, g in ordered.groupby("model", sort=False)
        ])  # fmt: skip
        means = ordered.assign(reduced_elements=reduced).groupby(keys)["reduced_elements"].mean()
        context = context.merge(means.reset_index(), on=keys)
    if len(context.columns) == len(keys):
        return table
    out = table.merge(context, on=keys, how="left")
    if "act" in out:
        out["act"] = out["act"].fillna("none")
    if "reduced_elements" in out:
        out["reduced_elements"] = out["reduced_elements"].fillna(0.0)
    return out


def fit_target(
    profile: HardwareProfile,
    holdout_model: str | None = None,
    out: str | Path | None = None,
    max_iter: int = 300,
    save: bool = True,
    probes: str = "missing",
    column: str = "latency_us",
) -> LearnedCostModel:
    """Fit the learned model on a target's own tables plus the probe networks' rows
    (``tables.probes``) that ``probes`` (`PROBE_ROWS`) lets in, and (by default) save it
    (`LearnedCostModel.folder_of`). ``column``: the time to learn, the table's ``latency_us``
    (what the cost models add up) or, for analysis, e.g. ``kernel_us`` (the layer's own nodes,
    without the boundary in front of it).

    The user's overlay rows (`haq.hardware.overlay`: profiled layers) are training data too;
    a model fitted on any goes to the user's folder (`LearnedCostModel.user_folder`), never
    over the shipped one unless ``out`` names it."""
    from haq.hardware.overlay import load_tables
    from haq.hardware.tables import read_table

    if probes not in PROBE_ROWS:
        raise HaqError(f"probes must be one of {', '.join(PROBE_ROWS)}, not {probes!r}")
    if "layers" not in profile.tables:
        raise HaqError(f"target {profile.id} has no latency table to learn from; measure one first")
    tables = load_tables(profile)
    layer_map = tables.layer_map
    table = _with_context(tables.layers, layer_map)
    extra = None
    if probes != "none" and "probes" in profile.tables:
        extra = _with_context(read_table(profile.tables["probes"]), _read_map(profile, "probe_map"))
        if probes == "missing":
            extra = _missing_pairs(extra, table)
    for path, rows in ((profile.tables["layers"], table), (profile.tables.get("probes"), extra)):
        unknown = (
            set() if rows is None else set(rows["precision"].astype(str)) - set(profile.kernels)
        )
        if unknown:
            raise HaqError(f"{path} has kernel classes {sorted(unknown)} that profile {profile.id} "
                           "does not declare; add them under 'kernels'")  # fmt: skip
    if column != "latency_us":
        if column not in table:
            raise HaqError(f"{profile.tables['layers']} has no column {column!r} to learn")
        table = table.assign(latency_us=table[column])
        extra = None if extra is None else extra.assign(latency_us=extra[column])
    model = LearnedCostModel(profile.id, max_iter=max_iter)
    model.fit(table, layer_map, holdout_model, threads=profile.threads[0], extra=extra)
    model.report["table"] = str(profile.tables["layers"].name)
    model.report["overlay_rows"] = tables.overlay_rows
    if save:
        user = tables.overlay_rows > 0 and out is None
        model.report["saved_to"] = str(
            model.save(
                LearnedCostModel.user_folder(profile.id)
                if user
                else out or LearnedCostModel.folder_of(profile)
            )  # fmt: skip
        )
    return model


def _missing_pairs(probes: pd.DataFrame, named: pd.DataFrame) -> pd.DataFrame | None:
    """The probe rows of (op kind, kernel class) pairs no named network's row has."""
    have = set(zip(named["kind"], named["precision"].astype(str), strict=True))
    pairs = zip(probes["kind"], probes["precision"].astype(str), strict=True)
    keep = [pair not in have for pair in pairs]
    return probes[keep].reset_index(drop=True) if any(keep) else None


def _read_map(profile: HardwareProfile, key: str) -> pd.DataFrame | None:
    return pd.read_csv(profile.tables[key]) if key in profile.tables else None


def _with_context(table: pd.DataFrame, layer_map: pd.DataFrame | None) -> pd.DataFrame:
    return table if layer_map is None else with_graph_context(table, layer_map)
