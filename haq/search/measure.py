"""Measure a finished search's front on the target's real runtime, beside the prediction.

Every front point (and every uniform baseline the run scored) is exported exactly as
`haq export` ships it, timed in ONNX Runtime with the statistic the target's tables hold
(interleaved rounds, the fastest round's median, at the target's threads and batch), and the
front is re-ranked on measured latency: a point another measured point now dominates is
marked, never dropped.

```
<run>/measured.json     per config hash: predicted and measured ms, statistics, dominance;
                        "machine_check": the configs running one kernel class throughout
                        against their wall time in the tables (is this machine in the state
                        the tables were measured in?)
<overlay>/<target>/networks.jsonl   every measured config, which later cost models of this
                        network on this CPU learn from (`haq.hardware.network_walls`)
<run>/pareto.json       points and baselines gain measured_latency_ms, latency_error_pct,
                        dominated_when_measured; the payload gains "measured" (summary, order)
<run>/trials.parquet    gains a measured_latency_ms column (by config hash)
```
All three are rewritten atomically; a resumed search keeps the measurements of configs it
still holds (`ResultsDir` merges measured.json into what it writes).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from haq.errors import HaqError
from haq.progress import emit
from haq.search.results import ResultsDir


@dataclass(frozen=True)
class MeasureOptions:
    rounds: int = 10  # interleaved rounds over all configs
    runs_per_round: int = 10  # timed runs of each config per round
    warmup: int = 3  # untimed runs of each session before the first round
    threads: int | None = None  # default: the threads the run's cost model scored
    seed: int = 0  # order of the configs within each round
    progress: bool = True

    def check(self) -> None:
        for name, value in (("--rounds", self.rounds), ("--runs-per-round", self.runs_per_round)):
            if value < 1:
                raise HaqError(f"{name} must be at least 1, not {value}")
        if self.warmup < 0:
            raise HaqError(f"--warmup must be 0 or more, not {self.warmup}")
        if self.threads is not None and self.threads < 1:
            raise HaqError(f"--threads must be at least 1, not {self.threads}")


def measurable_target(target: str | None) -> Any:
    """The profile of ``target`` when its runtime is on this machine; else one line."""
    from haq.hardware.profile import get_target
    from haq.hardware.reachable import require_measurable

    if not target:
        raise HaqError("measuring latency needs a --target whose runtime is on this machine "
                       "(e.g. --target cpu-avx512); this search has none")  # fmt: skip
    profile = get_target(target)
    require_measurable(profile)
    return profile


def measured_target(run: dict[str, Any], threads: int | None = None) -> tuple[Any, int, int]:
    """(profile, threads, batch) a run's latency was predicted for; refuses a target whose
    runtime is not on this machine (one line, before anything is exported)."""
    profile = measurable_target(run.get("target"))
    saved = (run.get("options") or {}).get("threads")
    return profile, threads or saved or profile.threads[0], profile.batch


@dataclass(frozen=True)
class _Entry:
    """One distinct config of the front or the baselines, as pareto.json names it."""

    name: str
    config: Any  # BitConfig
    predicted_ms: float | None
    objectives: dict[str, float]


def _entries(results: ResultsDir, pareto: dict[str, Any]) -> list[_Entry]:
    """Front points then baselines, one per distinct config (configs from trials.parquet)."""
    import pandas as pd

    from haq.config import BitConfig

    by_trial = pd.read_parquet(results.trials_path, columns=["trial", "config"])
    config_of = dict(zip(by_trial["trial"], by_trial["config"], strict=True))
    named = [(p["name"], p) for p in pareto["points"]]
    named += [(label, b) for label, b in pareto.get("baselines", {}).items()]
    out: dict[str, _Entry] = {}
    for name, e in named:
        config = BitConfig.from_dict(json.loads(config_of[e["trial"]]))
        if config.hash not in out:
            out[config.hash] = _Entry(name, config, (e.get("cost") or {}).get("latency_ms"),
                                      dict(e.get("objectives") or {}))  # fmt: skip
    return list(out.values())


def measure_front(
    run_dir: str | Path, opts: MeasureOptions = MeasureOptions(), search: Any = None
) -> dict[str, Any]:
    """Measure the front of the run in ``run_dir``; returns (and writes) measured.json's content.

    ``search``: the run's `Search`, when the caller (a search that just finished) holds it
    (its calibrated quantizer and cost model); else it is rebuilt from the run's options.
    """
    import numpy as np

    from haq.export.onnx_export import export_onnx, reuse_float_graph
    from haq.hardware.reachable import machine_note
    from haq.runtime.machine import CpuWatch, busy_message, machine_info
    from haq.runtime.ort import make_session, random_feeds, runtime_info
    from haq.runtime.timing import latency_stats, time_interleaved

    opts.check()
    results = ResultsDir(run_dir)
    if not results.pareto_path.is_file():
        raise HaqError(f"{run_dir} holds no finished search (no pareto.json); pass a run dir "
                       "written by `haq search`")  # fmt: skip
    run = results.read_run()
    profile, threads, batch = measured_target(run, opts.threads)
    pareto = json.loads(results.pareto_path.read_text())
    entries = _entries(results, pareto)
    if not entries:
        raise HaqError(f"the front of {run_dir} is empty: nothing to measure")
    if search is None:
        from haq.search.options import restored_options
        from haq.search.runner import Search

        search = Search(restored_options(run_dir))
    quantizer = search.deploy_quantizer()
    say = (lambda m: emit("note", m)) if opts.progress else (lambda m: None)
    say(f"measuring {len(entries)} configs of {run_dir} on {profile.id} (ONNX Runtime, "
        f"{threads} thread{'s' if threads > 1 else ''}, batch {batch})")  # fmt: skip
    note = machine_note(profile, str(run.get("model")))
    if note:
        say(note)
    t0 = time.time()
    sessions = []
    with reuse_float_graph():
        for k, e in enumerate(entries):
            sessions.append(
                make_session(export_onnx(quantizer, e.config, batch=batch)[0], threads=threads)
            )
            say(f"  exported [{k + 1}/{len(entries)}] {e.name} ({e.config.summary()})")
    feeds = random_feeds(sessions[0], batch)
    for sess in sessions:
        for _ in range(opts.warmup):
            sess.run(None, feeds)
    start = time.time()
    watch = CpuWatch()

    last = [start]

    def on_round(k: int) -> None:  # a line every 2 s at most, and the last round
        now = time.time()
        if now - last[0] >= 2.0 or k + 1 == opts.rounds:
            last[0] = now
            eta = (now - start) / (k + 1) * (opts.rounds - k - 1)
            say(f"  timed round {k + 1}/{opts.rounds}, ETA {eta:.0f} s")

    times = time_interleaved(sessions, feeds, opts.rounds, opts.runs_per_round, opts.seed, on_round)
    busy = busy_message(None, watch.others(), threads)
    del sessions
    rows: dict[str, dict[str, Any]] = {}
    for e, per_round in zip(entries, times, strict=True):
        st = latency_stats(per_round)
        ms = st.best_round_median_ms
        rows[e.config.hash] = {
            "name": e.name, "summary": e.config.summary(), "predicted_ms": e.predicted_ms,
            "measured_latency_ms": round(ms, 5),
            "latency_error_pct": round(100 * (e.predicted_ms - ms) / ms, 2) if e.predicted_ms else None,
            "stats": st.to_dict(),
        }  # fmt: skip
    _mark_dominated(entries, rows, pareto["objectives"])
    from haq.hardware.network_walls import machine_check

    kernels = {e.config.hash: search.cost_model.kernels_of(e.config) for e in entries}
    check = machine_check(profile, str(run.get("model")), threads, batch, kernels, rows)
    learned_from = _record_networks(profile, search, str(run.get("model")), threads, batch,
                                    kernels, rows)  # fmt: skip
    errors = [
        abs(r["latency_error_pct"]) for r in rows.values() if r["latency_error_pct"] is not None
    ]
    out = {
        "target": profile.id, "threads": threads, "batch": batch,
        "statistic": "fastest round's median of interleaved rounds (the tables' statistic)",
        "rounds": opts.rounds, "runs_per_round": opts.runs_per_round, "warmup": opts.warmup,
        "machine": machine_info(), "runtime": runtime_info(), "busy_warning": busy,
        "machine_note": note,
        "date": time.strftime("%Y-%m-%dT%H:%M:%S"), "seconds": round(time.time() - t0, 2),
        "mape_pct": round(float(np.mean(errors)), 2) if errors else None,
        "machine_check": check,
        "recorded_to": learned_from,
        "configs": rows,
    }  # fmt: skip
    results.write_measured(out)
    say(f"measured in {out['seconds']:.0f} s; mean |predicted - measured| / measured "
        f"{out['mape_pct']}%" + (f"; warning: {busy}" if busy else ""))  # fmt: skip
    if check.get("note"):
        say(check["note"])
    return out


def _record_networks(profile: Any, search: Any, model: str, threads: int, batch: int,
                     kernels: dict[str, list[str]], rows: dict[str, dict[str, Any]]) -> str | None:  # fmt: skip
    """Every measured config into the user's overlay as a measured network
    (`haq.hardware.network_walls`), which later cost models of this network learn from; the
    file's path, or None for a target without tables."""
    from haq.hardware.network_walls import network_digest, record_networks

    if "layers" not in profile.tables:
        return None
    digest = network_digest(search.cost_model.layers)
    path = record_networks(profile.id, [
        {"network": digest, "model": model, "threads": threads, "batch": batch,
         "group": search.cost_model.weight_only_group,
         "kernels": kernels[h], "measured_ms": r["measured_latency_ms"],
         "date": time.strftime("%Y-%m-%dT%H:%M:%S")}
        for h, r in rows.items()
    ])  # fmt: skip
    return str(path)


def _mark_dominated(entries: list[_Entry], rows: dict[str, dict[str, Any]],
                    objectives: dict[str, str]) -> None:  # fmt: skip
    """``dominated_when_measured`` per config: the run's objectives with latency replaced by
    the measurement, against every other measured config (only when latency is an objective)."""
    if "latency" not in objectives:
        return
    import numpy as np

    from haq.pareto import non_dominated_mask

    names = list(objectives)
    scored = [e for e in entries if all(n in e.objectives for n in names)]
    if not scored:
        return
    values = [[rows[e.config.hash]["measured_latency_ms"] if n == "latency" else e.objectives[n]
               for n in names] for e in scored]  # fmt: skip
    mask = non_dominated_mask(np.array(values, dtype=float), [objectives[n] for n in names])
    for e, keep in zip(scored, mask, strict=True):
        rows[e.config.hash]["dominated_when_measured"] = not bool(keep)
