"""Does the cpu-avx512 table predict what ONNX Runtime measures? Random mixed configs of
ResNet-18, ResNet-50 and MobileNetV2 (per-layer kernel classes among fp32 / int8 /
int8-weights), predicted from hardware_profiles/cpu-avx512 and measured end to end here.

Predictions (`haq.cost.LookupCostModel`, as `haq cost` and the search use it):

- ``lookup``: layer rows + transition rows + the model's glue rows (the model is one the
  target profiled, so the glue applies): what `haq cost --model resnet18` answers.
- ``lookup (no glue)``: the same without glue.csv: what a network the target never profiled,
  built from the same layer signatures, would get.
- ``kernel-sum``: the plain sum of the layers' in-graph kernel times (no boundaries, no glue),
  the per-layer-table baseline that under-predicts mixed configs.
- ``... (p10 tables)``: tables re-derived from the same raw observations with every job scaled
  to its fastest 10th-percentile wall time instead of its fastest median, compared with the
  measured 10th percentile: the same model with a statistic less sensitive to other processes
  on this shared 2-vCPU machine.

Each row's ``round_normalized_ms`` (and per pass, ``passes_round_normalized_ms``) is the
config's time with each round's common slowdown divided out (`round_normalized`): the order
the rounds agree on, which the ``vs round medians over their round's mean`` metrics and the
round-normalised pass-to-pass tau read; a measurement less moved by this VM's speed.

Each row's ``pred_boundaries_ms`` is the class-change boundaries' part of each prediction
(transition rows, plus glue where it applies), ``boundaries_ms_mean`` its mean per network,
beside ``pred_ms_mean`` (each method's mean prediction, and the measured mean).

Configs: per config a class mix is drawn from Dirichlet(1, 1, 1), then each layer's class from
that mix (seeded), so the set spans near-uniform to evenly mixed configs; uniform fp32 and int8
are measured alongside as drift references (compared with the tables' own wall times, or the
overlay's for a network only --profile auto measured), and so are the uniform fp32 / int8
configs of the networks the tables profiled (table references: how much faster or slower the
machine runs in this window than when the tables were measured, on a shared VM whose speed
drifts by 10-20 % over hours). ``lookup_drift_corrected`` and
``after_profile_drift_corrected`` scale the predictions by those ratios: diagnostics that use
measurements, to tell the model's error from the machine's drift, not predictions.

Measurement (in a run separate from the table measurement): all configs of a model are
exported and get their ORT session first; then ``--rounds`` rounds each time every config
``--runs-per-round`` times, in a fresh random order per round, so a burst of other load hits
every config alike instead of a few. Per config: the best round's median (the statistic the
tables hold, whose jobs count their fastest pass median: the latency when other tenants of
this shared VM leave the CPUs alone), and the median and 10th percentile of all runs. With
``--passes N`` (default 2) the whole timing runs N times, with --profile-auto before and after
the profile, and each statistic is over the rounds of all passes: the best round's median is
then the fastest pass's, as the tables keep the fastest of their passes (this VM's speed
moves by 10 % within minutes, so one window can sit in a slow phase the profile missed). ``--reanalyze`` recomputes the predictions and metrics for the
saved measurements (after the tables change) without timing.

``--profile-auto``: after the timing run, each model is profiled into this experiment's own
table overlay (experiments/runs/<out>/overlay) exactly as `haq search
--profile auto` does for a network the tables lack, and "lookup after --profile auto" predicts
with it; the other methods read the shipped tables alone. "after --profile auto + the other
configs measured" predicts each config with that overlay plus the network's other configs'
measured latencies, recorded as `haq measure` records a front (leave one out): the cost model
then scales the network by their median measured / predicted ratio; "lookup + the other
configs measured" does the same without profiling (the learned model plus measured fronts).

``--tables DIR``: tables measured by `haq profile --out DIR` (e.g. on this machine when the
shipped ones come from another CPU), with the profile YAML it writes beside DIR; the learned
model is then fitted on those tables alone, so no prediction mixes two machines.

    python experiments/cost_model_validation.py [--models resnet18,resnet50,mobilenet_v2]
        [--configs 20] [--rounds 12] [--runs-per-round 6] [--passes 2] [--threads 1] [--profile-auto]
        [--tables DIR] [--out NAME] [--reanalyze]
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import functools
import json
import math
import os
import shutil
import statistics
import sys
import tempfile
import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch

from haq.cost.learned_target import fit_target
from haq.cost.lookup import LookupCostModel
from haq.export.onnx_export import export_onnx, reuse_float_graph
from haq.hardware.network_walls import uniform_walls
from haq.hardware.ort.aggregation import Tables, aggregate
from haq.hardware.ort.files import profile_yaml_path, read_observations, read_tables
from haq.hardware.ort.machines import cpu_identity
from haq.hardware.ort.target import LAYER_KEY, class_config
from haq.hardware.profile import HardwareProfile, load_profile
from haq.hardware.tables import signature
from haq.models import load_model
from haq.quant import Quantizer
from haq.runtime.machine import machine_info
from haq.runtime.ort import make_session, random_feeds, runtime_info
from haq.runtime.timing import latency_stats, time_interleaved

from common import RESULTS, ROOT, save

CLASSES = ("fp32", "int8", "int8-weights")
TABLES = ROOT / "hardware_profiles" / "cpu-avx512"
NAME = "cost_model_validation"
RUNS = ROOT / "experiments" / "runs"
AFTER = "lookup after --profile auto"
MEASURED = "after --profile auto + the other configs measured"
LEARNED_MEASURED = "lookup + the other configs measured"
REFERENCE_MAX_MS = 25.0
REFERENCE_CLASSES = ("fp32", "int8")  # the uniform configs timed beside the mixed ones
NORMALIZED = "round_normalized_ms"  # `round_normalized`


def kendall_tau(x: list[float], y: list[float]) -> float:
    """Kendall's tau-b of two equally long sequences."""
    n = len(x)
    conc = disc = tx = ty = 0
    for i in range(n):
        for j in range(i + 1, n):
            dx, dy = np.sign(x[i] - x[j]), np.sign(y[i] - y[j])
            if dx == 0 and dy == 0:
                continue
            if dx == 0:
                tx += 1
            elif dy == 0:
                ty += 1
            elif dx == dy:
                conc += 1
            else:
                disc += 1
    denom = ((conc + disc + tx) * (conc + disc + ty)) ** 0.5
    return float((conc - disc) / denom) if denom else float("nan")


def mape(pred: list[float], meas: list[float]) -> float:
    return float(100 * statistics.fmean(abs(p - m) / m for p, m in zip(pred, meas, strict=True)))


def fill_drift(
    drift: list[dict[str, Any]], walls: dict[tuple[str, str], float], source: str
) -> None:
    """Each uniform reference's timing here over the same config's wall in ``walls`` (the
    tables' measurement, or the overlay's for models only --profile auto measured)."""
    for d in drift:
        ref = walls.get((d["model"], d["pattern"]))
        if d.get("table_ms") is None and ref is not None:
            d.update(table_ms=ref, table_source=source,
                     ratio=round(d["best_round_median_ms"] / ref, 4))  # fmt: skip


def random_configs(n_layers: int, count: int, seed: int) -> list[list[str]]:
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(count):
        mix = rng.dirichlet(np.ones(len(CLASSES)))
        out.append([CLASSES[i] for i in rng.choice(len(CLASSES), size=n_layers, p=mix)])
    return out


@functools.cache
def quantizer(name: str) -> Quantizer:
    """The model as `haq profile` builds it (random weights, 8 seeded calibration images);
    loaded once per process, however many passes and analyses ask for it."""
    loaded = load_model(name, "none")
    gen = torch.Generator().manual_seed(0)
    calib = torch.randn((8, *loaded.preprocess.input_size), generator=gen)
    return Quantizer(loaded.model, loaded.example_input(), calibration_images=calib)


Timings = dict[tuple[str, str, Any], list[list[float]]]  # (role, model, config) -> rounds


def validation_configs(args: argparse.Namespace) -> dict[str, list[list[str]]]:
    """Each model's seeded random configs (kernel class per layer)."""
    return {name: random_configs(len(quantizer(name).layer_names), args.configs, args.seed + mi)
            for mi, name in enumerate(args.models.split(","))}  # fmt: skip


def time_pass(args: argparse.Namespace, table_wall: dict[tuple[str, str], float]) -> Timings:
    """One pass: every config of each model (and its uniform fp32 / int8 references) timed
    interleaved per model, then the table networks' uniform configs (`time_table_references`);
    per config the ms of each run of each round."""
    out: Timings = {}
    with reuse_float_graph():
        for mi, (name, configs) in enumerate(validation_configs(args).items()):
            q = quantizer(name)
            n = len(q.layer_names)
            refs = [[c] * n for c in REFERENCE_CLASSES]
            sessions = []
            for kernels in configs + refs:
                data, _ = export_onnx(q, class_config(q.layer_names, kernels))
                sessions.append(make_session(data, threads=args.threads))
            feeds = random_feeds(sessions[0], 1)
            for sess in sessions:  # warm-up
                for _ in range(3):
                    sess.run(None, feeds)
            times = time_interleaved(sessions, feeds, args.rounds, args.runs_per_round,
                                     args.seed + mi)  # fmt: skip
            del sessions
            for ci, ts in enumerate(times):
                key = (
                    ("config", name, ci)
                    if ci < len(configs)
                    else ("drift", name, refs[ci - len(configs)][0])
                )
                out[key] = ts
                if ci < len(configs):
                    st = latency_stats(ts)
                    print(f"{name:>13} #{ci:2d} median {st.median_ms:.3f} ms  best round "
                          f"{st.best_round_median_ms:.3f} ms  p10 {st.p10_ms:.3f} ms", flush=True)  # fmt: skip
        out.update(time_table_references(args, table_wall))
    return out


def round_normalized(sessions: list[list[list[float]]]) -> list[float]:
    """Per session of one interleaved timing (aligned rounds: every session timed once per
    round), its round medians over the geometric mean of all sessions' in that round, the
    median of that over rounds, times the fastest round's geometric mean: a time on the best
    round's scale from which whatever slowed a whole round (this VM's speed moving between
    rounds, seconds apart) cancels, so the configs' order is the one each round agrees on."""
    med = np.array([[statistics.median(runs) for runs in rounds] for rounds in sessions])
    mean = np.exp(np.log(med).mean(axis=0))  # per round
    return (np.median(med / mean, axis=1) * mean.min()).tolist()


def run_measurements(args: argparse.Namespace, obs: list[dict[str, Any]]) -> dict[str, Any]:
    """``--passes`` timing passes (with --profile-auto, the profile runs after the first, so
    the passes bracket it); per config the statistics over the rounds of all passes: its
    best round's median is the fastest pass's, the tables' own statistic (the fastest of
    their passes), so a slow phase of this shared VM in one window does not decide it."""
    table_wall = uniform_walls(obs, args.threads)
    t_start = time.time()
    load_start = os.getloadavg()
    timings = time_pass(args, table_wall)
    passes = [{k: latency_stats(v).best_round_median_ms for k, v in timings.items()}]
    profile_seconds = profile_overlay(args) if args.profile_auto else None
    for _ in range(args.passes - 1):
        more = time_pass(args, table_wall)
        passes.append({k: latency_stats(v).best_round_median_ms for k, v in more.items()})
        for key, rounds in more.items():
            timings[key] = timings[key] + rounds
    rows: list[dict[str, Any]] = []
    drift: list[dict[str, Any]] = []
    for name, configs in validation_configs(args).items():
        keys = [("config", name, ci) for ci in range(len(configs))]
        group = [timings[k] for k in keys + [("drift", name, c) for c in REFERENCE_CLASSES]]
        normalized = round_normalized(group)
        per_pass = [round_normalized([t[p * args.rounds : (p + 1) * args.rounds] for t in group])
                    for p in range(args.passes)]  # fmt: skip
        for ci, kernels in enumerate(configs):
            key = keys[ci]
            rows.append({"model": name, "config": ci, "kernels": kernels,
                         "counts": {c: kernels.count(c) for c in CLASSES},
                         **latency_stats(timings[key]).to_dict(),
                         "passes_best_round_ms": [p[key] for p in passes],
                         "round_normalized_ms": normalized[ci],
                         "passes_round_normalized_ms": [p[ci] for p in per_pass]})  # fmt: skip
    for (role, name, cls), ts in timings.items():
        if role != "config":
            drift.append({"model": name, "pattern": cls, **latency_stats(ts).to_dict(),
                          "passes_best_round_ms": [p[(role, name, cls)] for p in passes],
                          **({"role": "table reference"} if role == "reference" else {})})  # fmt: skip
    fill_drift(drift, table_wall, "tables")
    return {"rows": rows, "drift": drift, "loadavg_start": load_start, "passes": args.passes,
            "loadavg_end": os.getloadavg(), "measuring_seconds": round(time.time() - t_start, 1),
            **({"profile_seconds": profile_seconds} if profile_seconds else {})}  # fmt: skip


def time_table_references(
    args: argparse.Namespace, table_wall: dict[tuple[str, str], float]
) -> Timings:
    """The uniform fp32 / int8 configs of the networks the tables profiled (those whose fp32
    wall is under REFERENCE_MAX_MS, to bound the time), timed interleaved after the validated
    networks: their times over the tables' own walls say how much faster or slower the
    machine runs now than when the tables were measured."""
    names = sorted(m for (m, c), ms in table_wall.items()
                   if c == "fp32" and ms <= REFERENCE_MAX_MS and (m, "int8") in table_wall)  # fmt: skip
    out: Timings = {}
    for name in names:  # one interleaved block per network (one input shape)
        q = quantizer(name)
        sessions = [make_session(export_onnx(q, class_config(q.layer_names, [c] * len(q.layer_names)))[0],
                                 threads=args.threads) for c in REFERENCE_CLASSES]  # fmt: skip
        times = time_interleaved(sessions, random_feeds(sessions[0], 1), args.rounds,
                                 args.runs_per_round, args.seed)  # fmt: skip
        for cls, ts in zip(REFERENCE_CLASSES, times, strict=True):
            out[("reference", name, cls)] = ts
            print(f"table reference {name} {cls}: best round "
                  f"{latency_stats(ts).best_round_median_ms:.3f} ms (tables "
                  f"{table_wall[(name, cls)]:.3f} ms)", flush=True)  # fmt: skip
    return out


@contextlib.contextmanager
def overlay_env(path: Path) -> Iterator[None]:
    """Cost models built inside read ``path`` as the user's table overlay."""
    old = os.environ.get("HAQ_OVERLAY_DIR")
    os.environ["HAQ_OVERLAY_DIR"] = str(path)
    try:
        yield
    finally:
        if old is None:
            os.environ.pop("HAQ_OVERLAY_DIR")
        else:
            os.environ["HAQ_OVERLAY_DIR"] = old


def overlay_dir(args: argparse.Namespace) -> Path:
    """The table overlay --profile auto measures into: one per results name."""
    return RUNS / args.out / "overlay"


def profile_overlay(args: argparse.Namespace) -> dict[str, float]:
    """`haq search --profile auto`'s step for each model: profile it into this experiment's
    overlay (resumable; its classes at the validation's thread count); seconds per model."""
    from haq.hardware.ort.jobs import profile_target
    from haq.search.profiling import REPEATS

    out = {}
    for name in args.models.split(","):
        start = time.time()
        profile_target([name], threads=(args.threads,), classes=CLASSES, repeats=REPEATS,
                       directory=overlay_dir(args) / Path(args.tables).name, write_yaml=False)  # fmt: skip
        out[name] = round(time.time() - start, 1)
    return out


def variant_profile(profile: HardwareProfile, tables: Tables, tmp: Path) -> HardwareProfile:
    """``profile`` reading ``tables`` (written to ``tmp``) instead of its own files."""
    tmp.mkdir(parents=True, exist_ok=True)
    paths = dict(profile.tables)
    for key in ("layers", "transitions", "glue"):
        paths[key] = tmp / f"{key}.csv"
        getattr(tables, key).to_csv(paths[key], index=False)
    return dataclasses.replace(profile, tables=paths)


def analyze(rows: list[dict[str, Any]], args: argparse.Namespace, cpu: list[Any]) -> dict[str, Any]:
    """Predictions of every method for every measured config, and the metrics. The two
    leave-one-out methods need the measurements' CPU (``cpu``) to be this one (the cost model
    scales by this CPU's measured networks only); elsewhere their saved predictions stay."""
    from haq.hardware.network_walls import this_cpu

    here = list(cpu) == this_cpu()
    tables_dir = Path(args.tables)
    profile = load_profile(profile_yaml_path(tables_dir))  # `haq profile --out`
    tables = read_tables(tables_dir)
    obs = read_observations(tables_dir)
    no_glue = dataclasses.replace(
        profile, tables={k: v for k, v in profile.tables.items() if k != "glue"}
    )
    kernel_us = {
        tuple(r[c] for c in LAYER_KEY): float(r["kernel_us"])
        for r in tables.layers.to_dict("records")
    }
    with tempfile.TemporaryDirectory() as tmp:
        p10 = variant_profile(profile, aggregate(obs, wall_stat="p10"), Path(tmp))
        empty = Path(tmp) / "no-overlay"  # the shipped tables alone: no user overlay
        learned: Any = "auto"  # the shipped learned model, fitted on the shipped tables
        if tables_dir.resolve() != TABLES.resolve():  # tables of another machine: learn them
            with overlay_env(empty):
                learned = fit_target(profile, save=False)
        methods = {"lookup": (profile, "best_round_median_ms", empty),
                   "lookup (no glue)": (no_glue, "best_round_median_ms", empty),
                   "lookup (p10 tables)": (p10, "p10_ms", empty)}  # fmt: skip
        # the overlay of --profile auto lives under experiments/runs/; on a machine without it
        # (a fresh checkout re-analysing saved measurements) its saved predictions are kept
        reuse_after = args.profile_auto and not (overlay_dir(args) / tables_dir.name).is_dir()
        if args.profile_auto and not reuse_after:  # what `haq search --profile auto` scores with
            methods[AFTER] = (profile, "best_round_median_ms", overlay_dir(args))
        for name in dict.fromkeys(r["model"] for r in rows):
            specs = quantizer(name).layers
            names = [s.name for s in specs]
            models = {}
            for m, (prof, _, overlay) in methods.items():
                with overlay_env(overlay):  # + learned / roofline for rows still missing
                    models[m] = LookupCostModel(prof, specs, threads=args.threads, learned=learned)
            for row in (r for r in rows if r["model"] == name):
                config = class_config(names, row["kernels"])
                saved = row.get("pred_ms", {})
                parts = {m: models[m].breakdown(config) for m in methods}  # scores it too
                row["pred_ms"] = {m: p["latency_ms"] for m, p in parts.items()}
                row["pred_boundaries_ms"] = {  # the class-change boundaries' share of it
                    m: sum(b["latency_us"] for b in p["boundaries"]) / 1e3 for m, p in parts.items()
                }
                if reuse_after:
                    row["pred_ms"][AFTER] = saved[AFTER]
                for label in (MEASURED, LEARNED_MEASURED):  # kept where not recomputed below
                    if label in saved and (reuse_after or not here):
                        row["pred_ms"][label] = saved[label]
                keys = [(*signature(s, 1).values(), k, args.threads)
                        for s, k in zip(specs, row["kernels"], strict=True)]  # fmt: skip
                if all(k in kernel_us for k in keys):  # a profiled model's own rows
                    row["pred_ms"]["kernel-sum"] = sum(kernel_us[k] for k in keys) / 1e3
                row["answered_by"] = parts["lookup"]["model"]
            for label, base in ((MEASURED, overlay_dir(args)), (LEARNED_MEASURED, empty)):
                if here and (label == LEARNED_MEASURED or AFTER in methods):
                    leave_one_out([r for r in rows if r["model"] == name], specs, profile,
                                  learned, base, args.threads, cpu, label)  # fmt: skip
    model_names = list(dict.fromkeys(r["model"] for r in rows))
    cases = [(m, key) for m, (_, key, _) in methods.items()]
    cases += [(AFTER, "best_round_median_ms")] if reuse_after else []
    cases += [(MEASURED, "best_round_median_ms"), (LEARNED_MEASURED, "best_round_median_ms")]
    cases += [("kernel-sum", "best_round_median_ms"), ("lookup", "median_ms")]
    cases += [("lookup", NORMALIZED), (AFTER, NORMALIZED)]
    cases = [(m, k) for m, k in cases if all(m in r["pred_ms"] and k in r for r in rows)]
    measured_as = {"best_round_median_ms": "best round's median", "median_ms": "median of all",
                   "p10_ms": "10th percentile",
                   NORMALIZED: "round medians over their round's mean"}  # fmt: skip
    summary: dict[str, Any] = {}
    for method, key in cases:
        per_model = {}
        for name in model_names:
            sel = [r for r in rows if r["model"] == name]
            pred = [r["pred_ms"][method] for r in sel]
            meas = [r[key] for r in sel]
            signed = [100 * (p - m) / m for p, m in zip(pred, meas, strict=True)]
            per_model[name] = {
                "mape_pct": round(mape(pred, meas), 2),
                "kendall_tau": round(kendall_tau(pred, meas), 3),
                "mean_signed_error_pct": round(statistics.fmean(signed), 2),
                "signed_errors_pct": sorted(round(e, 1) for e in signed),
            }
        pred = [r["pred_ms"][method] for r in rows]
        meas = [r[key] for r in rows]
        label = (
            method
            if key == methods.get(method, (None, "best_round_median_ms", None))[1]
            else (f"{method} vs {measured_as[key]}")
        )
        summary[label] = {
            "measured": measured_as[key],
            "per_model": per_model,
            "overall": {
                "mape_pct": round(mape(pred, meas), 2),
                "kendall_tau_pooled": round(kendall_tau(pred, meas), 3),
                "kendall_tau_min_per_model": round(min(v["kendall_tau"] for v in per_model.values()), 3),
            },
        }  # fmt: skip
        summary[label]["meets_acceptance"] = summary[label]["overall"]["mape_pct"] <= 5 and all(
            v["kendall_tau"] >= 0.9 for v in per_model.values()
        )
    for label, s in summary.items():
        per = "  ".join(f"{m}: {v['mape_pct']:.1f}% tau {v['kendall_tau']:.2f}"
                        for m, v in s["per_model"].items())  # fmt: skip
        print(f"{label:>32} ({s['measured']}): MAPE {s['overall']['mape_pct']:5.2f}%  "
              f"tau pooled {s['overall']['kendall_tau_pooled']:.3f}  | {per}")  # fmt: skip
    spread = [r["median_ms"] / r["best_round_median_ms"] - 1 for r in rows]

    def mean_of(name: str, value: Any) -> float:
        return round(statistics.fmean(value(r) for r in rows if r["model"] == name), 3)

    boundaries = {name: {m: mean_of(name, lambda r, m=m: r["pred_boundaries_ms"][m])
                         for m in methods} for name in model_names}  # fmt: skip
    means = {name: {"measured": mean_of(name, lambda r: r["best_round_median_ms"]),
                    **{m: mean_of(name, lambda r, m=m: r["pred_ms"][m]) for m in methods}}
             for name in model_names}  # fmt: skip
    return {
        "summary": summary,
        "boundaries_ms_mean": boundaries,
        "pred_ms_mean": means,
        "median_over_best_round_pct": {
            "median": round(100 * statistics.median(spread), 2),
            "max": round(100 * max(spread), 2),
        },  # fmt: skip
        "tables_jobs": len(obs),
    }


def leave_one_out(
    rows: list[dict[str, Any]],
    specs: list[Any],
    profile: HardwareProfile,
    learned: Any,
    overlay: Path,
    threads: int,
    cpu: list[Any],
    label: str,
) -> None:
    """``label`` per config: what the cost model on ``overlay`` (after --profile auto, or
    none) predicts for it once the network's other configs were measured (as `haq measure`
    records them, `haq.hardware.network_walls`): no config predicted from its own time."""
    from haq.hardware.network_walls import FILE, network_digest, record_networks

    names = [s.name for s in specs]
    digest = network_digest(specs)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "overlay"
        if overlay.is_dir():
            shutil.copytree(overlay, root)
        for row in rows:
            (root / profile.id / FILE).unlink(missing_ok=True)
            record_networks(profile.id, [
                {"network": digest, "model": r["model"], "threads": threads, "batch": 1,
                 "kernels": r["kernels"], "measured_ms": r["best_round_median_ms"], "cpu": cpu}
                for r in rows if r is not row
            ], directory=root / profile.id)  # fmt: skip
            with overlay_env(root):
                model = LookupCostModel(profile, specs, threads=threads, learned=learned)
            row["pred_ms"][label] = model.score(class_config(names, row["kernels"])).latency_ms


def pass_to_pass_tau(passes: list[list[float]], n: int) -> float:
    """The lowest Kendall tau of one pass's times against the next (``passes``: per config,
    its time in each of ``n`` passes)."""
    return min(kendall_tau([p[a] for p in passes], [p[a + 1] for p in passes])
               for a in range(n - 1))  # fmt: skip


def repeatability(rows: list[dict[str, Any]]) -> dict[str, dict[str, float]]:
    """Per model, how well the measurement agrees with itself: each timing pass's best-round
    medians against the next pass's (the same configs, minutes apart), and how far one
    window's times move from the next's. If each pass is the true time plus its own noise
    (Gaussian-like, independent), tau = (2/pi) asin(rho) and the passes' correlation is the
    square of each pass's correlation with the truth, so even the true order is expected to
    score ``true_order_expected_tau`` against one pass: what tau >= 0.9 asks of the
    measurement, whatever the model. Beside it, the after-profile prediction's tau against
    each pass."""
    out = {}
    for name in dict.fromkeys(r["model"] for r in rows):
        sel = [r for r in rows if r["model"] == name]
        passes = [r.get("passes_best_round_ms") or [] for r in sel]
        n = min(len(p) for p in passes)
        if n < 2:
            continue
        changes = [abs(p[a] / p[a + 1] - 1) * 100 for p in passes for a in range(n - 1)]
        normalized = [r.get("passes_round_normalized_ms") or [] for r in sel]
        tau_normalized = (
            {"pass_to_pass_kendall_tau_round_normalized": round(pass_to_pass_tau(normalized, n), 3)}
            if min(len(p) for p in normalized) >= n else {}
        )  # fmt: skip
        best = [r["best_round_median_ms"] for r in sel]
        tau = pass_to_pass_tau(passes, n)
        rho = math.sin(math.pi / 2 * max(tau, 0.0))
        pred = [r.get("pred_ms", {}).get(AFTER) for r in sel]
        per_pass = ({"after_profile_tau_per_pass": [
            round(kendall_tau(pred, [p[a] for p in passes]), 3) for a in range(n)]}
            if all(v is not None for v in pred) else {})  # fmt: skip
        out[name] = {"pass_to_pass_kendall_tau": round(tau, 3), **tau_normalized, **per_pass,
                     "true_order_expected_tau": round(2 / math.pi * math.asin(math.sqrt(rho)), 3),
                     "pass_to_pass_change_pct_median": round(statistics.median(changes), 2),
                     "pass_to_pass_change_pct_max": round(max(changes), 2),
                     "slowest_over_fastest_config": round(max(best) / min(best), 2)}  # fmt: skip
    if out:
        print("  measurement against itself (pass to pass): " + "  ".join(
            f"{m}: tau {v['pass_to_pass_kendall_tau']:.2f} (true order ~"
            f"{v['true_order_expected_tau']:.2f}), change median "
            f"{v['pass_to_pass_change_pct_median']:.1f}% max {v['pass_to_pass_change_pct_max']:.1f}%"
            + (f", round-normalised tau {v['pass_to_pass_kendall_tau_round_normalized']:.2f}"
               if "pass_to_pass_kendall_tau_round_normalized" in v else "")
            for m, v in out.items()))  # fmt: skip
    return out


def drift_ratios(drift: list[dict[str, Any]]) -> dict[str, dict[str, float]]:
    """How much slower (or faster) the machine ran in the timing window than where each
    prediction's rows were measured: per validated model, its uniform references over the
    overlay's profile minutes later (for the after-profile predictions); for every model, the
    median of the table references over the tables' own walls (for the tables-only ones)."""
    overlay: dict[str, list[float]] = {}
    for d in drift:
        if d.get("table_source") == "overlay" and d.get("ratio"):
            overlay.setdefault(d["model"], []).append(d["ratio"])
    tables = [d["ratio"] for d in drift if d.get("role") == "table reference" and d.get("ratio")]
    models = dict.fromkeys(d["model"] for d in drift if d.get("role") != "table reference")
    return {
        AFTER: {m: statistics.fmean(rs) for m, rs in overlay.items()},
        "lookup": {m: statistics.median(tables) for m in models} if tables else {},
    }


def drift_corrected(
    rows: list[dict[str, Any]], ratios: dict[str, float], method: str
) -> dict[str, Any]:
    """A diagnostic, not a prediction: ``method``'s predictions scaled per model by ``ratios``
    (`drift_ratios`: the machine's state, not the model), to tell the two error sources apart."""
    out: dict[str, Any] = {}
    errors: list[float] = []
    for model, scale in ratios.items():
        sel = [r for r in rows if r["model"] == model and method in r.get("pred_ms", {})]
        if not sel:
            continue
        err = [100 * (r["pred_ms"][method] * scale / r["best_round_median_ms"] - 1) for r in sel]
        errors += err
        out[model] = {"reference_ratio": round(scale, 4),
                      "mape_pct": round(statistics.fmean(abs(e) for e in err), 2),
                      "mean_signed_error_pct": round(statistics.fmean(err), 2),
                      "signed_errors_pct": sorted(round(e, 1) for e in err)}  # fmt: skip
    if out:
        out["pooled_mape_pct"] = round(statistics.fmean(abs(e) for e in errors), 2)
        print(f"  {method}, scaled by the references' drift: "
              + "  ".join(f"{m}: {v['mape_pct']:.1f}%" for m, v in out.items() if m in ratios)
              + f"  pooled {out['pooled_mape_pct']:.1f}%")  # fmt: skip
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--models", default="resnet18,resnet50,mobilenet_v2")
    ap.add_argument("--configs", type=int, default=20)
    ap.add_argument("--rounds", type=int, default=12)
    ap.add_argument("--runs-per-round", type=int, default=6)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--passes", type=int, default=2,
                    help="timing passes (with --profile-auto: before and after the profile)")  # fmt: skip
    ap.add_argument("--tables", default=str(TABLES))
    ap.add_argument("--out", default=NAME, help="results name under experiments/results/")
    ap.add_argument("--profile-auto", action="store_true",
                    help="also predict after profiling each model into an overlay, as "
                         "`haq search --profile auto` does (profiled after the timing run)")  # fmt: skip
    ap.add_argument("--reanalyze", action="store_true",
                    help="recompute predictions for the measurements in the saved results")  # fmt: skip
    args = ap.parse_args()
    if args.passes < 1:
        ap.error(f"--passes must be at least 1, not {args.passes}")
    warnings.filterwarnings("ignore")
    keys = (
        "models",
        "configs",
        "rounds",
        "runs_per_round",
        "threads",
        "seed",
        "profile_auto",
        "passes",
    )
    if args.reanalyze:
        saved = json.loads((RESULTS / f"{args.out}.json").read_text())
        for key in keys:
            setattr(args, key, saved["args"].get(key, getattr(args, key)))
        measured = {k: saved.get(k) for k in ("rows", "drift", "loadavg_start", "loadavg_end",
                                               "measuring_seconds", "cpu", "measured_at", "profile_seconds", "passes")}  # fmt: skip
    else:
        measured = run_measurements(args, read_observations(args.tables))
        measured["cpu"] = {**machine_info(), "runtime": runtime_info()}
        measured["measured_at"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    if args.profile_auto and not measured.get("profile_seconds"):
        measured["profile_seconds"] = profile_overlay(args)  # resumable: instant when done
    if args.profile_auto and measured.get("drift"):  # models the tables lack: the overlay's walls
        overlay_obs = read_observations(overlay_dir(args) / Path(args.tables).name)
        fill_drift(measured["drift"], uniform_walls(overlay_obs, args.threads), "overlay")
    result = analyze(measured["rows"], args, list(cpu_identity(measured.get("cpu") or {})))
    result["measurement_repeatability"] = repeatability(measured["rows"])
    ratios = drift_ratios(measured.get("drift") or [])
    result["lookup_drift_corrected"] = drift_corrected(measured["rows"], ratios["lookup"], "lookup")
    if args.profile_auto:
        result["after_profile_drift_corrected"] = drift_corrected(
            measured["rows"], ratios[AFTER], AFTER
        )
    save(args.out, {
        "target": "cpu-avx512",
        "args": {k: getattr(args, k) for k in keys},
        "measured": "per config `rounds` interleaved rounds (random order per round) of "
                    "`runs_per_round` timed runs each: the best round's median (the tables' "
                    "statistic: the fastest pass median), the median and 10th percentile of all",
        "predictor_used": "haq.cost.LookupCostModel (lookup+glue for these profiled models)",
        "acceptance": "MAPE <= 5% overall, Kendall tau >= 0.9 per model",
        **result, **measured,
        "tables_meta": str(Path(args.tables) / "layers.meta.json"), "argv": sys.argv[1:],
    })  # fmt: skip


if __name__ == "__main__":
    main()
