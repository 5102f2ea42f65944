"""The report page: figures, tables and provenance in one self-contained HTML file.

plotly.js is embedded once (no CDN, works with the network off); each figure is a
``div.plotly-graph-div`` drawn by ``Plotly.newPlot`` when the page loads. The embedded bundle
is plotly.js's cartesian build (scatter, bar, heatmap: everything the report draws), shipped in
``assets/`` at the version the installed plotly writes figures for: a third of the full
bundle's 4.8 MB, so the page parses in about half the time.
"""

from __future__ import annotations

import html
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from haq.errors import HaqError
from haq.io import atomic_write_text, output_file
from haq.report import figures
from haq.report.compare import Comparison, compare
from haq.report.data import Run, load_runs
from haq.report.views import class_view, history, measured_latency
from haq.search.objectives import UNITS

CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 0 auto; max-width: 1180px;
       padding: 0 24px 48px; color: #222; }
h1 { font-size: 1.6em; margin: 24px 0 4px; } h2 { font-size: 1.25em; margin: 36px 0 6px;
       border-bottom: 1px solid #ddd; padding-bottom: 4px; }
p.sub, p.note { color: #555; margin: 4px 0 10px; } p.callout { background: #fff4e5; padding: 8px 12px;
       border-left: 4px solid #ff7f0e; }
table { border-collapse: collapse; font-size: 0.88em; margin: 8px 0; }
th, td { border-bottom: 1px solid #e5e5e5; padding: 4px 10px; text-align: left; vertical-align: top; }
th { background: #fafafa; } td.num { text-align: right; font-variant-numeric: tabular-nums; }
code { font-size: 0.92em; background: #f5f5f5; padding: 1px 4px; border-radius: 3px; word-break: break-all; }
nav a { margin-right: 14px; color: #1f77b4; text-decoration: none; }
"""


def require_plotly() -> None:
    """The report's optional dependency, as a one-line error."""
    try:
        import plotly  # noqa: F401
    except ImportError as e:
        raise HaqError(
            'the HTML report needs plotly; pip install -e ".[report]" (or pip install plotly)'
        ) from e


ASSETS = Path(__file__).with_name("assets")
CARTESIAN = ("4.1.1", ASSETS / "plotly-cartesian.min.js")  # npm plotly.js-cartesian-dist-min


def plotly_js() -> str:
    """The shipped cartesian bundle when it matches the installed plotly, else plotly's full one."""
    from plotly.offline import get_plotlyjs, get_plotlyjs_version

    version, path = CARTESIAN
    if get_plotlyjs_version() == version and path.is_file():
        return path.read_text(encoding="utf-8")
    return get_plotlyjs()


def write_report(run_dirs: Sequence[str | Path], out: str | Path | None = None) -> Path:
    """Read the runs (all checks before anything is written), render, write atomically."""
    if not run_dirs:
        raise HaqError("pass at least one results directory")
    runs = load_runs(run_dirs)
    target = output_file(
        out if out is not None
        else (runs[0].path / "report.html" if len(runs) == 1 else "report.html"),
        "the report", "report.html",
    )  # fmt: skip
    require_plotly()
    page = render(runs)
    atomic_write_text(target, page)
    return target


def render(runs: Sequence[Run]) -> str:
    """The whole page as one string."""
    body = _single(runs[0]) if len(runs) == 1 else _multi(runs)
    title = (
        f"haq report: {runs[0].label}"
        if len(runs) == 1
        else f"haq report: {len(runs)} runs compared"
    )
    return (f"<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
            f"<title>{_e(title)}</title><style>{CSS}</style>"
            f"<script type=\"text/javascript\">{plotly_js()}</script></head>"
            f"<body><h1>{_e(title)}</h1>{body}"
            f"<p class=\"note\">Written by haq on {time.strftime('%Y-%m-%d %H:%M')} from the results "
            f"files alone (no model or data loaded); works offline.</p></body></html>\n")  # fmt: skip


def _plot(fig: Any, div_id: str) -> str:
    import plotly.io as pio

    return pio.to_html(fig, include_plotlyjs=False, full_html=False, div_id=div_id,
                       default_height=f"{fig.layout.height}px",
                       config={"displaylogo": False, "responsive": True})  # fmt: skip


def _single(run: Run) -> str:
    p = run.pareto
    costs = run.cost_objectives
    hv = p.get("hypervolume")
    parts = [
        f'<p class="sub">{_e(p.get("model"))} on {_e(p.get("target") or "no target")} · driver '
        f"{_e(p.get('driver'))} · {p.get('trials')} trials ({p.get('evaluations')} evaluations) · "
        f"{len(p['points'])} front points · hypervolume {_num(hv)}</p>",
        '<nav><a href="#front">front</a><a href="#layers">per layer</a><a href="#progress">progress</a>'
        '<a href="#classes">per class</a><a href="#measured">measured</a><a href="#finetuned">fine-tuned</a><a href="#provenance">provenance</a></nav>',
        '<h2 id="front">Pareto front</h2>',
        f'<p class="note">The front is the run\'s own: feasible and non-dominated in '
        f"{_e(', '.join(run.objectives))} on the validation images; pick other axes in the menu (top right). "
        "Faded: dominated trials; stars: uniform baselines; open triangles: trials over an accuracy budget; "
        "crosses on the bottom strip: failed or rejected trials (no accuracy). Hover a point for its "
        "objectives, validation and test top-1 and per-layer precisions (w / a bits in execution order, "
        "f = float).</p>",
        _plot(figures.front_figure([run]), "front-plot"),
        _front_table(run, costs),
        '<h2 id="layers">Per-layer precision of the front</h2>',
        '<p class="note">Layers top down in execution order (kind, MACs); front points left to right by '
        f"{_e(costs[0] if costs else 'cost')}; grey = float.</p>",
        _plot(figures.heatmap_figure(run), "heatmap-plot"),
        '<h2 id="progress">Search progress</h2>',
        '<p class="note">Hypervolume on the search\'s fixed normalised axes (accuracy / 100, cost / 1.1x the '
        "costliest uniform baseline) and front size after each evaluation.</p>",
        _plot(figures.history_figure([run], [history(run)]), "history-plot"),
        '<h2 id="classes">Per-class accuracy against the float model</h2>',
        _classes(run),
        '<h2 id="measured">Predicted against measured latency</h2>',
        _measured(run),
        '<h2 id="finetuned">Fine-tuned points</h2>',
        _finetuned(run),
        '<h2 id="provenance">Provenance</h2>',
        _table(["", run.label], [[k, v] for k, v in _provenance(run).items()], raw_cols={1}),
    ]
    return "\n".join(parts)


def _finetuned(run: Run) -> str:
    if not run.finetuned:
        return ('<p class="note">No point of this run is fine-tuned yet: '
                "<code>haq finetune RUN_DIR --points NAME --epochs E</code> adds QAT results here.</p>")  # fmt: skip
    head = ["point", "precisions", "test top-1 before", "after", "ONNX Runtime", "epochs", "steps",
            "seconds", "training images", "ONNX file"]  # fmt: skip
    rows = [[e["point"], e["summary"], _num(e["before_top1"]), _num(e["after_top1"]), _num(e["ort_top1"]),
             _num(e["epochs"]), e["steps"], _num(e["seconds"]), f"{e['train_images']} ({e['train_data']})",
             f"<code>{_e(e['onnx'])}</code>"] for e in run.finetuned.values()]  # fmt: skip
    return ('<p class="note">QAT (LSQ) from the searched point, re-scored on the run\'s test images; '
            "ONNX Runtime scores the exported file on the same images.</p>"
            + _table(head, rows, raw_cols={len(head) - 1}, table_id="finetuned-table"))  # fmt: skip


def _front_table(run: Run, costs: list[str]) -> str:
    """The front by cost, each point with its config file: what a person ships."""
    pts = sorted(run.pareto["points"], key=lambda pt: [pt["objectives"][c] for c in costs])
    head = ["point", *(f"{n} ({UNITS[n]})" for n in run.objectives), "val top-1", "test top-1",
            "baseline", "precisions", "config"]  # fmt: skip
    rows = [[pt["name"], *(_num(pt["objectives"][n]) for n in run.objectives), _num(pt["val"].get("top1")),
             _num((pt.get("test") or {}).get("top1")), pt.get("baseline") or "", pt["summary"],
             f"<code>{_e(pt['config_file'])}</code>"] for pt in pts]  # fmt: skip
    return _table(head, rows, raw_cols={len(head) - 1})


def _classes(run: Run) -> str:
    view = class_view(run)
    if view is None:
        return '<p class="note">This run holds no per-class accuracy (no labels: a fidelity-only run).</p>'
    point, cls, drop = view.worst
    where = ("the test images, with the float model re-scored on the same images by the search"
             if view.split == "test" else
             "the validation images (this run stored no float test per-class scores)")  # fmt: skip
    return (f"<p class=\"note\">Per-class top-1 on {where}; read from the run, nothing is re-evaluated. "
            f"Shown by default: {len(view.shown)} front points spread over the front (the others are in the "
            f"legend).</p><p class=\"callout\">Worst loss among the shown points: class <b>{_e(cls)}</b> on "
            f"<b>{_e(point)}</b>, {drop:.1f} points below the float model.</p>"
            + _plot(figures.class_figure(view), "classes-plot"))  # fmt: skip


def _measured(run: Run) -> str:
    m = measured_latency(run)
    if m is None:
        return ("<p class=\"note\">No measured latency in this run: the latencies above are the cost model's "
                "predictions. <code>haq measure RUN_DIR</code> (or <code>haq search --measure-front</code>) "
                "times every front point on the target's runtime; this section then plots prediction "
                "against measurement.</p>")  # fmt: skip
    i = m.info
    note = (f'<p class="note">Measured on {_e(i.get("target"))} ({_e(i.get("threads"))} thread(s), '
            f'{_e(i.get("statistic"))}) on {_e(i.get("date"))}; mean |predicted - measured| / measured '
            f'{_e(i.get("mape_pct"))} %. A point marked dominated is beaten by another measured config '
            "once its latency is measured."
            + (f' The configs that run one kernel class ran {i["machine_ratio"]:.2f}x their wall time '
               "in the target's tables: the machine's state during this measurement, which moves "
               "every measured latency alike." if i.get("machine_ratio") else "")
            + "</p>") if i else ""  # fmt: skip
    head = [
        "point",
        "precisions",
        "predicted (ms)",
        "measured (ms)",
        "error",
        "dominated once measured",
    ]
    order = sorted(range(len(m.names)), key=lambda k: m.measured_ms[k])
    rows = [[m.names[k], m.summaries[k], _num(m.predicted_ms[k]), _num(m.measured_ms[k]),
             f"{100 * (m.predicted_ms[k] - m.measured_ms[k]) / m.measured_ms[k]:+.1f} %",
             "yes" if m.dominated[k] else ""] for k in order]  # fmt: skip
    return (note + _plot(figures.measured_figure(m), "measured-plot")
            + _table(head, rows, table_id="measured-table"))  # fmt: skip


def _provenance(run: Run) -> dict[str, str]:
    """What produced the run: model, weights, target and where its numbers come from, ..."""
    i, p = run.info, run.pareto
    opts = i.get("options", {})
    target = i.get("target_provenance") or _target_info(i.get("target"))
    tgt = "none (size and BOPs only)" if not i.get("target") else (
        f"{_e(i['target'])}: {_e(target['provenance'])} ({_e(target['source'])})" if target else _e(i["target"]))  # fmt: skip
    wall = p.get("wall_seconds")
    return {
        "model": _e(i.get("model")), "weights": _e(i.get("weights")),
        "weights hash": f"<code>{_e(i.get('model_hash'))}</code>", "target": tgt,
        "cost model": _e(i.get("cost_model")),
        "post-training quantization": _e(opts.get("ptq") or "none"),
        "driver": _e(f"{i.get('driver')} {opts.get('driver_options') or ''}".strip()),
        "objectives": _e(", ".join(f"{n} ({d})" for n, d in run.objectives.items())),
        "seed": _e(f"driver {opts.get('seed')}, data {opts.get('data_seed')}"),
        "validation images": _e(f"{(i.get('validation') or {}).get('source')} "
                                f"(limit {(i.get('validation') or {}).get('limit')})"),  # fmt: skip
        "test images": _e((i.get("test") or {}).get("source")),
        "trials": _e(f"{p.get('trials')} ({p.get('evaluations')} evaluations; budget {opts.get('budget')})"),
        "versions": _e(f"haq {i.get('haq')}, optuna {i.get('optuna')}, python {i.get('python')}"),
        "command": f"<code>{_e(i.get('command'))}</code>",
        "wall time": _e(f"{wall / 60:.1f} min" if wall else "–") + _e(f" (started {i.get('first_started')}"
                                                                      f"{', resumed' if i.get('resumed') else ''})"),
        "results dir": f"<code>{_e(run.path.resolve())}</code>",
    }  # fmt: skip


def _target_info(target: str | None) -> dict[str, Any] | None:
    """Older runs did not record the target's provenance: read it from the target's profile."""
    if not target:
        return None
    try:
        from haq.hardware.profile import get_target

        prof = get_target(target)
    except HaqError:
        return None
    return {"provenance": prof.provenance, "source": prof.source}


def _multi(runs: Sequence[Run]) -> str:
    cmp = compare(runs)
    histories = [history(r, cmp.axes.scale, cmp.axes.reference) for r in runs]
    provenance = [_provenance(r) for r in runs]
    keys = list(provenance[0])
    parts = [
        f'<p class="sub">{len(runs)} runs of {_e(", ".join(runs[0].objectives))}: '
        + ", ".join(_e(r.label) for r in runs)
        + "</p>",
        '<h2 id="front">Fronts</h2>',
        '<p class="note">One colour per run; bold markers: each run\'s front, faded: its dominated trials, '
        "stars: its uniform baselines. Click a legend entry to hide it; pick other axes in the menu.</p>",
        _plot(figures.front_figure(runs), "front-plot"),
        '<h2 id="hypervolume">Hypervolume against the union front</h2>',
        _comparison_table(cmp),
        '<h2 id="progress">Hypervolume over evaluations</h2>',
        _plot(figures.history_figure(runs, histories), "history-plot"),
        '<h2 id="provenance">Provenance</h2>',
        _table(
            ["", *(r.label for r in runs)],
            [[k, *(pv[k] for pv in provenance)] for k in keys],
            raw_cols=set(range(1, len(runs) + 1)),
        ),  # fmt: skip
    ]
    return "\n".join(parts)


def _comparison_table(cmp: Comparison) -> str:
    head = ["run", "driver", "target", "seed", "evaluations", "front points", "hypervolume", "of union",
            "points on the union front"]  # fmt: skip
    rows = [[r.label, r.driver, r.target, r.seed, r.evaluations, r.front_size, _num(r.hypervolume),
             f"{r.share:.3f}", r.union_points] for r in cmp.rows]  # fmt: skip
    rows.append(["union front", "", "", "", "", cmp.union_size, _num(cmp.union_hypervolume), "1.000",
                 cmp.union_size])  # fmt: skip
    note = (f"<p class=\"note\">Every front on the same axes: objectives divided by "
            f"{_e(', '.join(f'{s:.4g}' for s in cmp.axes.scale))}, reference point "
            f"{_e(', '.join(f'{v:g}' for v in cmp.axes.reference))} (haq.pareto's exact hypervolume); "
            "validation accuracy, as the searches ranked their trials.</p>")  # fmt: skip
    return note + _table(head, rows, table_id="hypervolume-table")


def _table(
    head: list[Any], rows: list[list[Any]], raw_cols: set[int] | None = None, table_id: str = ""
) -> str:
    """An HTML table; cells are escaped except in ``raw_cols`` (already HTML)."""
    raw = raw_cols or set()

    def cell(k: int, v: Any) -> str:
        text = str(v) if k in raw else _e(v)
        cls = (
            ' class="num"'
            if isinstance(v, int | float) or (isinstance(v, str) and _isnum(v))
            else ""
        )
        return f"<td{cls}>{text}</td>"

    ident = f' id="{table_id}"' if table_id else ""
    out = [f"<table{ident}><tr>" + "".join(f"<th>{_e(h)}</th>" for h in head) + "</tr>"]
    out += ["<tr>" + "".join(cell(k, v) for k, v in enumerate(r)) + "</tr>" for r in rows]
    return "".join(out) + "</table>"


def _isnum(s: str) -> bool:
    try:
        float(s)
    except ValueError:
        return False
    return True


def _num(v: Any) -> str:
    return "–" if v is None else f"{v:.4g}"


def _e(v: Any) -> str:
    return html.escape("" if v is None else str(v))
