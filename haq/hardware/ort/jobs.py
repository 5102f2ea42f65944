"""Profiling runs: plan the jobs of ``haq profile``, export each config, record its observation.

`profile_target` plans the jobs (uniform and alternating configs per model and thread
count), skips those already observed (a killed run resumes), measures each new one
(`haq.hardware.ort.observation`) and re-derives the tables after every job
(`haq.hardware.ort.aggregation`, `haq.hardware.ort.files`).
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

from haq.errors import HaqError
from haq.hardware.ort.aggregation import Tables, spec_row
from haq.hardware.ort.budget import Priority, select_jobs
from haq.hardware.ort.files import (
    default_dir,
    profile_yaml_path,
    read_observations,
    table_meta,
    write_all,
)
from haq.hardware.ort.machines import machine_record, recorded_machine, stamp_legacy
from haq.hardware.ort.observation import JobSpec, add_wall, lost_time, measure_job, time_wall
from haq.hardware.ort.target import (
    DYNAMIC_CLASSES,
    DYNAMIC_MODES,
    GROUP_SIZE,
    KERNEL_CLASSES,
    MATMULNBITS_CLASSES,
    PAIR_CLASSES,
    PROBES_DIR,
    TARGET,
    TARGETS,
    TEXT_CLASSES,
    TEXT_GROUP_SIZE,
    TOKEN_CLASS,
    class_config,
    write_profile_yaml,
)
from haq.runtime.machine import machine_info, wait_for_idle
from haq.runtime.ort import runtime_info

if TYPE_CHECKING:
    from haq.models.spec import LayerSpec
    from haq.quant import Quantizer


# --------------------------------------------------------------------------- jobs


def plan_configs(
    names: Sequence[str], kinds: Sequence[str], classes: Sequence[str], transitions: bool
) -> list[tuple[str, tuple[str, ...]]]:
    """(config label, per-layer classes) for one model: uniform, alternating, MatMulNBits.
    Where every layer is a Linear (text models), dynamic int8 and MatMulNBits pair with the
    others too: their transitions are measured on the model's own token tensors, not
    interpolated from a CNN classifier's flattened vector. The two dynamic classes never
    pair: they are two activation modes, and a config has one."""
    all_linear = set(kinds) == {"linear"}
    pairable = PAIR_CLASSES + ((*DYNAMIC_CLASSES, *MATMULNBITS_CLASSES) if all_linear else ())
    pair = [c for c in pairable if c in classes]
    out = [(f"uniform:{c}", tuple([c] * len(names))) for c in pair]
    if transitions:
        for a in pair:
            for b in pair:
                if a != b and not {a, b} <= set(DYNAMIC_CLASSES):
                    out.append(
                        (f"alt:{a}/{b}", tuple(a if i % 2 == 0 else b for i in range(len(names))))
                    )
    if "linear" in kinds and not all_linear:
        for c in MATMULNBITS_CLASSES:
            if c in classes:
                out.append((f"fp32+{c}", tuple(c if k == "linear" else "fp32" for k in kinds)))
    return out


@dataclass
class _Model:
    name: str
    specs: list[LayerSpec]
    channel: Quantizer
    group: Quantizer | None = None
    macs: int = 0
    text: bool = False
    token: Quantizer | None = None  # text models: per-token dynamic activations


def model_label(name: str, tokens: int | None) -> str:
    """The name a model's observations go under: ``minilm@16`` for a text model at 16 tokens."""
    return name if tokens is None else f"{name}@{tokens}"


def _split_label(label: str) -> tuple[str, int | None]:
    name, _, tokens = label.rpartition("@")
    return (name, int(tokens)) if name and tokens.isdigit() else (label, None)


def _load(label: str, weights: str, calib_images: int) -> _Model:
    import torch

    from haq.models import load_model
    from haq.models.weights import quiet_random_weights
    from haq.quant import Quantizer, QuantSettings
    from haq.quant.settings import text_settings

    name, tokens = _split_label(label)
    if tokens is not None and weights == "none":
        # random init zeroes Linear biases, which the exporter folds away with the Adds
        # that identify token Linears: text models ship their weights (offline), use them
        weights = "default"
    with quiet_random_weights(weights):  # latency does not depend on the values
        loaded = load_model(name, weights, tokens)
    example = loaded.example_input()
    if loaded.preprocess.is_text:  # dynamic int8 needs no calibration
        text = text_settings(QuantSettings(group_size=TEXT_GROUP_SIZE))
        q, token = (Quantizer(loaded.model, example, replace(text, activations=DYNAMIC_MODES[c]))
                    for c in DYNAMIC_CLASSES)  # fmt: skip
        # weight-only Linears are group-wise under text settings: one quantizer exports them
        return _Model(label, q.layers, q, q, sum(s.macs for s in q.layers), text=True, token=token)
    gen = torch.Generator().manual_seed(0)
    calib = torch.randn((calib_images, *loaded.preprocess.input_size), generator=gen)
    q = Quantizer(loaded.model, example, calibration_images=calib)
    group = None
    if any(s.kind == "linear" for s in q.layers):
        group = Quantizer(loaded.model, example,
                          QuantSettings(granularity="group", group_size=GROUP_SIZE))  # fmt: skip
    return _Model(label, q.layers, q, group, sum(s.macs for s in q.layers))


def _export(model: _Model, label: str, kernels: Sequence[str]) -> tuple[bytes, str]:
    """The ONNX of one planned config and its `graph_digest`."""
    from haq.export.onnx_export import export_onnx

    q = model.group if label.startswith("fp32+matmulnbits") else model.channel
    if TOKEN_CLASS in kernels:
        q = model.token
    if q is None:
        raise HaqError(f"{model.name} has no Linear layer for {label}")
    data, _ = export_onnx(q, class_config([s.name for s in model.specs], kernels))
    return data, graph_digest(data)


def graph_digest(data: bytes) -> str:
    """Hash of an exported graph's structure (ops, attributes, wiring, tensor shapes and
    dtypes, not weight values): observations of another structure are stale."""
    import hashlib

    import onnx

    model = onnx.load_model_from_string(data)
    h = hashlib.sha256()
    for n in model.graph.node:
        attrs = sorted((a.name, a.i, a.f, a.s, tuple(a.ints)) for a in n.attribute)
        h.update(repr((n.op_type, n.domain, list(n.input), list(n.output), attrs)).encode())
    for t in model.graph.initializer:
        h.update(repr((t.name, t.data_type, tuple(t.dims))).encode())
    return h.hexdigest()[:16]


@dataclass
class ProfileReport:
    directory: Path
    measured: int
    skipped: int
    failed: list[str] = field(default_factory=list)
    seconds: float = 0.0
    tables: Tables | None = None
    deferred: int = 0  # pending jobs left out by max_jobs


def profile_target(
    models: Sequence[str],
    *,
    target: str = TARGET,
    threads: Sequence[int] = (1, 2),
    classes: Sequence[str] = KERNEL_CLASSES,
    transitions: bool = True,
    runs: int = 30,
    profile_runs: int = 10,
    warmup: int = 5,
    repeats: int = 1,
    weights: str = "none",
    directory: str | Path | None = None,
    profile_yaml: str | Path | None = None,
    calib_images: int = 8,
    wait_idle_s: float = 0.0,
    fresh: bool = False,
    probes: bool = False,
    progress: Callable[[str], None] | None = None,
    write_yaml: bool = True,
    tokens: Sequence[int] = (16, 128),
    max_jobs: int | None = None,
    priority: Priority | None = None,
) -> ProfileReport:
    """Measure (resumably) every pending job of ``models`` and rewrite the tables after each.

    Pass 1 times and profiles each job; passes 2..``repeats`` time its wall clock again (a
    pass over all jobs later, so a burst of other load hits one timing, not all), and the
    fastest median counts (`add_wall`). ``wait_idle_s``: before each timing, wait up to this
    long for other processes to use less than `haq.runtime.machine.IDLE_THRESHOLD` of the CPUs; a timing they
    disturbed anyway is retried once. ``fresh``: discard the stored observations of the
    planned jobs and measure them again (the old ones stay on disk until the first new one is
    written). ``probes``: the models are training networks for the learned cost model
    (`haq.models.probe`): their tables go to ``<directory>/probes/`` (uniform configs only),
    and the target's YAML, rewritten from the main tables, names them. ``write_yaml=False``
    leaves every profile YAML alone (a user's overlay: `haq.hardware.overlay`). A text
    model is measured at each of ``tokens`` (as ``name@T``) with `TEXT_CLASSES` only.
    ``max_jobs``: measure at most that many new jobs, those ``priority`` (the cost model's
    unmeasured µs per class) ranks least sure first (`haq.hardware.ort.budget`); the rest are
    counted in ``report.deferred`` for a later run.
    """
    from haq.export.onnx_export import reuse_float_graph

    if target not in TARGETS:
        raise HaqError(f"unknown target {target!r}; `haq profile` measures: {', '.join(TARGETS)}")
    unknown = [c for c in classes if c not in KERNEL_CLASSES]
    if unknown:
        raise HaqError(f"unknown kernel class {unknown[0]!r}; use {', '.join(KERNEL_CLASSES)}")
    for name, value, least in (("threads", min(threads, default=0), 1), ("runs", runs, 1),
                               ("profile runs", profile_runs, 1), ("warmup", warmup, 0),
                               ("repeats", repeats, 1)):  # fmt: skip
        if value < least:
            raise HaqError(f"{name} must be at least {least}, not {value}")
    say = progress or (lambda msg: print(msg, file=sys.stderr, flush=True))
    main_dir = Path(directory) if directory is not None else default_dir()
    d = main_dir / PROBES_DIR if probes else main_dir
    transitions = transitions and not probes
    observations = read_observations(d)
    by_key = {(o["model"], o["threads"], o["batch"], o["config"]): o for o in observations}
    from haq.models.registry import get_entry

    if not tokens or min(tokens) < 1:
        raise HaqError(f"token counts must be positive, not {list(tokens)}")
    labels = []
    for m in models:  # unknown names fail before any measuring
        text = get_entry(m).preprocess.is_text
        labels += [model_label(m, t) for t in tokens] if text else [m]
    models = labels
    info = {**machine_info(), "runtime": runtime_info()}
    here = machine_record(info)
    yaml_path = Path(profile_yaml) if profile_yaml else profile_yaml_path(main_dir)
    legacy = recorded_machine(yaml_path) or here
    stamp_legacy(observations, legacy)
    if "avx512f" not in info["flags"]:
        say(f"haq: warning: this CPU lacks avx512f; the {target} tables describe this machine")
    t_start = time.time()
    report = ProfileReport(d, 0, 0)
    loaded: dict[str, _Model] = {}
    plans: list[tuple[str, str, tuple[str, ...], list[JobSpec]]] = []
    stale = 0
    for m in models:  # one model in memory at a time; only those with jobs left are kept
        with reuse_float_graph():
            model = _load(m, weights, calib_images)
            rows = [spec_row(s) for s in model.specs]
            for ob in observations:  # layer descriptions as this version discovers them
                if ob["model"] == m and len(ob["specs"]) == len(rows):
                    ob["specs"] = rows
            names = [s.name for s in model.specs]
            kinds = [s.kind for s in model.specs]
            own = [c for c in classes
                   if (c in TEXT_CLASSES if model.text else c not in DYNAMIC_CLASSES)]  # fmt: skip
            planned = plan_configs(names, kinds, own, transitions)
            say(f"{target}: planning {m}: exporting {len(planned)} configs to see which "
                "are measured")  # fmt: skip
            for label, kernels in planned:
                jobs = [JobSpec(m, label, kernels, t) for t in threads]
                digest = graph_digest(_export(model, label, kernels)[0])
                for j in jobs:  # measured from another graph (the exporter changed): redo
                    old = by_key.get(j.key)
                    if old is not None and fresh:
                        observations.remove(by_key.pop(j.key))
                    elif old is not None and (old.get("graph") != digest or lost_time(old)):
                        observations.remove(by_key.pop(j.key))
                        stale += 1
                    elif (
                        old is not None and old["machine"] != here and (len(old["walls"]) < repeats)
                    ):  # never mix two CPUs' timings in one row: this CPU measures it anew
                        observations.remove(by_key.pop(j.key))
                pending = [j for j in jobs if len(by_key.get(j.key, {}).get("walls", ())) < repeats]
                report.skipped += len(jobs) - len(pending)
                if pending:
                    plans.append((m, label, kernels, pending))
                    loaded[m] = model
    if stale:
        say(f"{target}: {stale} jobs were measured on graphs the exporter no longer writes or "
            "lost node time the attribution could not place; measuring them again")  # fmt: skip
    if max_jobs is not None:
        specs_of = {m: loaded[m].specs for m in loaded}
        plans, report.deferred = select_jobs(
            plans, max_jobs, priority, specs_of,
            lambda m, t, c: len(by_key.get((m, t, 1, c), {}).get("walls", ())) >= repeats,
        )  # fmt: skip
        if report.deferred:
            say(f"{target}: a budget of {max_jobs} jobs: measuring those the cost model is "
                f"least sure of; {report.deferred} left for a later run")  # fmt: skip
    # (pass, job) units of work, weighted by the model's MACs for the ETA
    weight = {m: 1.0 + loaded[m].macs / 2e9 for m in loaded}
    units = 0
    todo = 0.0
    for m, _, _, pending in plans:
        for j in pending:
            have = len(by_key.get(j.key, {}).get("walls", ()))
            n = repeats - have
            units += n
            todo += weight[m] * ((3.0 if have == 0 else 0.0) + n)  # profiling ~3 timings
    spent = 0.0
    n_done = 0
    say(f"{target}: {units} timings to take ({report.skipped} jobs already complete in {d}; "
        f"planned in {time.time() - t_start:.0f}s)")  # fmt: skip
    t_measure = time.time()  # the ETA extrapolates the measuring rate only

    def timed(run: Callable[[], dict[str, Any]]) -> tuple[dict[str, Any], float]:
        """Run a timing after waiting for idle CPUs; once more if it was disturbed."""
        waited = 0.0
        for _ in range(2 if wait_idle_s > 0 else 1):
            waited += wait_for_idle(wait_idle_s)[0] if wait_idle_s > 0 else 0.0
            out = run()
            if not out["busy"]:
                break
        return out, waited

    with reuse_float_graph():
        for pass_no in range(repeats):
            for m, label, kernels, pending in plans:
                todo_now = [
                    j for j in pending if len(by_key.get(j.key, {}).get("walls", ())) <= pass_no
                ]
                if not todo_now:
                    continue
                model = loaded[m]
                try:
                    data, digest = _export(model, label, kernels)
                except Exception as e:  # one config failing must not stop the rest
                    report.failed.extend(f"{j.key}: export failed: {oneline(e)}" for j in todo_now)
                    continue
                for job in todo_now:
                    ob = by_key.get(job.key)
                    try:
                        if ob is None:
                            ob, waited = timed(partial(measure_job, job, data, model.specs,
                                runs=runs, profile_runs=profile_runs, warmup=warmup))  # fmt: skip
                            ob["waited_s"], ob["graph"], ob["machine"] = waited, digest, here
                            observations.append(ob)
                            by_key[job.key] = ob
                            report.measured += 1
                            spent += 3.0 * weight[m]
                        else:
                            wall, waited = timed(partial(time_wall, data, job.threads,
                                job.batch, runs, warmup))  # fmt: skip
                            add_wall(ob, wall)
                            ob["waited_s"] = ob.get("waited_s", 0.0) + waited
                    except Exception as e:
                        report.failed.append(f"{job.key}: {oneline(e)}")
                        continue
                    report.tables = write_all(
                        d, observations, table_meta(observations, info), not probes
                    )
                    n_done += 1
                    spent += weight[m]
                    elapsed = time.time() - t_start
                    rate = (time.time() - t_measure) / spent if spent else 0.0
                    eta = rate * max(todo - spent, 0.0)
                    last = ob["walls"][-1]["median_us"]
                    say(f"[{n_done}/{units}] pass {pass_no + 1}/{repeats} {m} {label} "
                        f"{job.threads}t: {last / 1e3:.3f} ms (best {ob['wall_us'] / 1e3:.3f}, "
                        f"scale {ob['scale']:.3f}{', busy' if ob['walls'][-1]['busy'] else ''})"
                        f"  elapsed {elapsed:.0f}s  ETA {eta:.0f}s")  # fmt: skip
    report.seconds = time.time() - t_start
    if report.tables is None and observations:  # nothing new: re-derive (the code may have changed)
        report.tables = write_all(d, observations, table_meta(observations, info), not probes)
    main_obs = read_observations(main_dir) if probes else observations
    stamp_legacy(main_obs, legacy)
    if main_obs and write_yaml:
        write_profile_yaml(yaml_path, main_dir, main_obs, info)
    return report


def oneline(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return f"{type(e).__name__}: {text[0] if text else ''}"
