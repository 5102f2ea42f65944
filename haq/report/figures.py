"""The report's plotly figures, one function each; plotly is imported here only."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from haq.report.data import AXES, Run
from haq.report.views import (
    BASELINE,
    DOMINATED,
    FAILED,
    FRONT,
    INFEASIBLE,
    ClassView,
    History,
    Measured,
    bits_text,
    heat_matrix,
    trial_roles,
)
from haq.search.objectives import UNITS

PALETTE = ("#d62728", "#1f77b4", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#17becf")
FLOAT_COLOUR = "#bdbdbd"
LAYOUT = {"template": "plotly_white", "margin": {"l": 70, "r": 30, "t": 60, "b": 60}}


def _go() -> Any:
    import plotly.graph_objects as go

    return go


def _fmt(v: Any, digits: int = 4) -> str:
    return "–" if v is None or (isinstance(v, float) and np.isnan(v)) else f"{v:.{digits}g}"


def _hover(run: Run, t: pd.DataFrame, roles: pd.Series) -> pd.Series:
    """Per trial: name, role, objectives, validation and test top-1, per-layer precisions."""
    order = run.layer_order
    names = {p["trial"]: p["name"] for p in run.pareto["points"]}
    lines = []
    for i, r in t.iterrows():
        name = names.get(r.trial, f"trial-{r.trial:04d}")
        head = f"<b>{name}</b> · {roles[i]}" + (f" ({r.label})" if isinstance(r.label, str) else "")
        objs = " · ".join(f"{n} {_fmt(r.get(f'obj_{n}'))} {UNITS[n]}" for n in run.objectives)
        acc = f"val top-1 {_fmt(r.val_top1)} % · test top-1 {_fmt(r.get('test_top1'))} %"
        bits = bits_text(r.config, order) if isinstance(r.config, str) else ""
        lines.append(
            "<br>".join([head, f"{r.source} · {r.status}", objs, acc, str(r.summary), bits])
        )
    return pd.Series(lines, index=t.index)


TITLES = {DOMINATED: "dominated", INFEASIBLE: "infeasible (accuracy budget)",
          FAILED: "failed / rejected (no accuracy)", BASELINE: "uniform baselines", FRONT: "Pareto front"}  # fmt: skip


def _styles(colour: str, single: bool) -> dict[str, dict[str, Any]]:
    """Marker style per role; one run keeps the conventional colours, several get one each."""
    return {
        DOMINATED: {"marker": {"color": PALETTE[1] if single else colour, "size": 6, "opacity": 0.3}},
        INFEASIBLE: {"marker": {"color": PALETTE[4] if single else colour, "size": 8, "symbol": "triangle-up-open"}},
        FAILED: {"marker": {"color": "#7f7f7f", "size": 8, "symbol": "x-thin-open",
                            "line": {"width": 1.5, "color": "#7f7f7f"}}},
        BASELINE: {"mode": "markers+text", "textposition": "top center",
                   "marker": {"color": "black" if single else colour, "size": 13, "symbol": "star"}},
        FRONT: {"mode": "lines+markers", "line": {"color": colour, "shape": "hv", "width": 1.5},
                "marker": {"color": colour, "size": 10, "line": {"color": "black", "width": 1}}},
    }  # fmt: skip


def _axis_pairs(runs: Sequence[Run]) -> list[tuple[str, str]]:
    """(accuracy, cost) pairs every run has values for, the runs' own objectives first."""

    def common(kind: str) -> list[str]:
        return [
            n for n in runs[0].axis_options(kind) if all(n in r.axis_options(kind) for r in runs)
        ]

    return [(y, x) for y in common("accuracy") for x in common("cost")]


def _axis_button(y: str, x: str, traces: list[tuple[pd.DataFrame, bool]]) -> dict[str, Any]:
    """One menu entry: every trace's points on these axes, sorted by x (the front's staircase);
    points without an accuracy sit on a strip below the lowest drawn one."""
    ycol, xcol = AXES[y][0], AXES[x][0]
    drawn = pd.concat([rows[ycol] for rows, strip in traces if not strip])
    lo, hi = float(drawn.min()), float(drawn.max())
    floor = lo - 0.05 * max(hi - lo, 1.0)
    data: dict[str, list[list[Any]]] = {"x": [], "y": [], "hovertext": [], "text": []}
    for rows, strip in traces:
        r = rows.sort_values(xcol, kind="stable")
        data["x"].append(r[xcol].tolist())
        data["y"].append([floor] * len(r) if strip else r[ycol].tolist())
        data["hovertext"].append(r["_hover"].tolist())
        data["text"].append([lab if isinstance(lab, str) else "" for lab in r["label"]])
    layout = {"xaxis.title.text": AXES[x][1], "yaxis.title.text": AXES[y][1]}
    return {"label": f"{y} vs {x}", "method": "update", "args": [data, layout]}


def front_figure(runs: Sequence[Run]) -> Any:
    """Every trial of every run against selectable axes (a menu of accuracy x cost pairs);
    the front in full colour, dominated trials faded, baselines as stars, infeasible trials
    as open triangles, failed or rejected ones (no accuracy) as crosses on a strip below."""
    go = _go()
    fig = go.Figure()
    traces: list[tuple[pd.DataFrame, bool]] = []  # (trials of the trace, is the failed strip)
    single = len(runs) == 1
    for k, run in enumerate(runs):
        t = run.trials
        roles = trial_roles(run)
        hover = _hover(run, t, roles)
        styles = _styles(PALETTE[k % len(PALETTE)], single)
        for role in (DOMINATED, INFEASIBLE, FAILED, BASELINE, FRONT):
            # baselines on the front are starred too (the front trace holds them as well)
            baseline = t["label"].notna() & (t["state"] == "complete")
            pick = baseline if role == BASELINE else roles == role
            rows = t[pick].assign(_hover=hover[pick])
            if rows.empty:
                continue
            name = TITLES[role] if single else f"{run.label}: {TITLES[role]}"
            fig.add_trace(go.Scatter(name=f"{name} ({len(rows)})", legendgroup=run.label,
                                     hovertemplate="%{hovertext}<extra></extra>",
                                     meta={"role": role, "run": run.label}, **{"mode": "markers", **styles[role]}))  # fmt: skip
            traces.append((rows, role == FAILED))
    buttons = [_axis_button(y, x, traces) for y, x in _axis_pairs(runs)]
    data, layout = buttons[0]["args"]
    for i, trace in enumerate(fig.data):
        trace.update({key: values[i] for key, values in data.items()})
    fig.update_layout(
        **LAYOUT, height=560, xaxis_title=layout["xaxis.title.text"], yaxis_title=layout["yaxis.title.text"],
        legend={"orientation": "h", "y": -0.15},
        updatemenus=[{"buttons": buttons, "x": 1.0, "xanchor": "right", "y": 1.12, "yanchor": "top",
                      "direction": "down", "showactive": True}],
    )  # fmt: skip
    return fig


def heatmap_figure(run: Run) -> Any:
    """Layers (execution order, top down) x front points; colour = bits, float in grey."""
    from plotly.subplots import make_subplots

    go = _go()
    points, labels, w, a = heat_matrix(run)
    levels = sorted({b for m in (w, a) for row in m for b in row if b is not None})
    index = {b: i for i, b in enumerate(levels)}
    n = len(levels) + 1  # + float
    colours = _sequential(len(levels)) + [FLOAT_COLOUR]
    scale = []
    for i, c in enumerate(colours):
        scale += [[i / n, c], [(i + 1) / n, c]]

    def z(m: list[list[Any]]) -> list[list[int]]:
        return [[len(levels) if b is None else index[b] for b in row] for row in m]

    def text(m: list[list[Any]]) -> list[list[str]]:
        return [["float" if b is None else f"{b} bits" for b in row] for row in m]

    fig = make_subplots(rows=1, cols=2, shared_yaxes=True, subplot_titles=("weight bits", "activation bits"),
                        horizontal_spacing=0.03)  # fmt: skip
    for col, m in ((1, w), (2, a)):
        fig.add_trace(go.Heatmap(z=z(m), x=points, y=labels, text=text(m), coloraxis="coloraxis",
                                 xgap=1, ygap=1, meta={"role": "heatmap"},
                                 hovertemplate="%{y}<br>%{x}: %{text}<extra></extra>"), row=1, col=col)  # fmt: skip
    ticks = [str(b) for b in levels] + ["float"]
    fig.update_layout(
        **LAYOUT, height=max(320, 16 * len(labels) + 170),
        coloraxis={"colorscale": scale, "cmin": -0.5, "cmax": n - 0.5,
                   "colorbar": {"title": "bits", "tickvals": list(range(n)), "ticktext": ticks}},
    )  # fmt: skip
    fig.update_yaxes(autorange="reversed", tickfont={"size": 10})
    fig.update_xaxes(tickangle=-45, tickfont={"size": 10})
    return fig


def _sequential(k: int) -> list[str]:
    from plotly.colors import sample_colorscale

    return sample_colorscale("Viridis", [i / max(k - 1, 1) for i in range(k)]) if k else []


def history_figure(runs: Sequence[Run], histories: Sequence[History]) -> Any:
    """Hypervolume (left) and front size (right, dotted) after each evaluation."""
    from plotly.subplots import make_subplots

    go = _go()
    fig = make_subplots(specs=[[{"secondary_y": True}]])
    for k, (run, h) in enumerate(zip(runs, histories, strict=True)):
        colour = PALETTE[(k + 1) % len(PALETTE)] if len(runs) == 1 else PALETTE[k % len(PALETTE)]
        prefix = "" if len(runs) == 1 else f"{run.label}: "
        fig.add_trace(go.Scatter(x=h.evaluations, y=h.hypervolume, name=f"{prefix}hypervolume", mode="lines",
                                 line={"color": colour, "shape": "hv"}), secondary_y=False)  # fmt: skip
        fig.add_trace(go.Scatter(x=h.evaluations, y=h.front_size, name=f"{prefix}front size", mode="lines",
                                 line={"color": colour, "dash": "dot", "shape": "hv"}), secondary_y=True)  # fmt: skip
    fig.update_layout(
        **LAYOUT, height=380, xaxis_title="evaluations", legend={"orientation": "h", "y": -0.2}
    )
    fig.update_yaxes(title_text="hypervolume (normalised axes)", secondary_y=False)
    most = max(max(h.front_size, default=0) for h in histories)
    fig.update_yaxes(title_text="front points", secondary_y=True, rangemode="tozero",
                     dtick=max(1, -(-most // 6)), showgrid=False)  # fmt: skip
    return fig


def class_figure(view: ClassView) -> Any:
    """Per-class accuracy: the float model and the front points (spread ones shown, the rest
    one click away in the legend), the largest loss called out."""
    go = _go()
    point, cls, drop = view.worst
    at = view.classes.index(cls)
    fig = go.Figure(
        go.Bar(x=view.classes, y=view.reference, name="float", marker_color=FLOAT_COLOUR)
    )
    for k, (name, acc) in enumerate(view.points.items()):
        edge = [2.5 if name == point and i == at else 0 for i in range(len(view.classes))]
        fig.add_trace(go.Bar(x=view.classes, y=acc, name=name, visible=True if name in view.shown else "legendonly",
                             marker={"color": PALETTE[k % len(PALETTE)], "line": {"width": edge, "color": "black"}}))  # fmt: skip
    fig.add_annotation(x=cls, y=1.0, yref="paper", yanchor="bottom", showarrow=False, bgcolor="#fff4e5",
                       xanchor="left" if at < len(view.classes) / 2 else "right",
                       text=f"worst: class {cls} on {point} (outlined), {-drop:+.1f} points vs float")  # fmt: skip
    lo = min(min(v) for v in [view.reference, *view.points.values()])
    fig.update_layout(
        **LAYOUT,
        height=420,
        barmode="group",
        xaxis={"title": "class", "type": "category", "range": [-0.5, len(view.classes) - 0.5]},
        yaxis={"title": f"top-1 per class, {view.split} (%)", "range": [max(0.0, lo - 5), 100.5]},
        legend={"orientation": "h", "y": -0.2},
    )
    return fig


def measured_figure(m: Measured) -> Any:
    """Predicted against measured latency; the diagonal is a perfect cost model."""
    go = _go()
    top = max(max(m.predicted_ms), max(m.measured_ms)) * 1.05
    fig = go.Figure([
        go.Scatter(x=[0, top], y=[0, top], mode="lines", name="measured = predicted",
                   line={"color": "#7f7f7f", "dash": "dash"}),
        go.Scatter(x=m.predicted_ms, y=m.measured_ms, mode="markers", name="front points", text=m.names,
                   marker={"size": 10, "color": PALETTE[0]},
                   hovertemplate="%{text}<br>predicted %{x:.4g} ms<br>measured %{y:.4g} ms<extra></extra>"),
    ])  # fmt: skip
    fig.update_layout(
        **LAYOUT,
        height=420,
        xaxis_title="predicted latency (ms)",
        yaxis_title="measured latency (ms)",
    )
    return fig
