"""What `haq search` takes (`SearchOptions`) and how a resumed search gets back the options
it was started with (from its ``run.json``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from haq.errors import HaqError
from haq.search.budgets import Budgets
from haq.search.drivers import DEFAULT_DRIVER


@dataclass
class SearchOptions:
    """Everything `haq search` takes (the Python API takes the same names)."""

    model: str = "digits_cnn"
    weights: str = "default"
    target: str | None = None
    data: str | None = None  # final test images (and validation with val_split)
    calib_data: str | None = None  # calibration (+ search-time validation without val_split)
    space: str = "default"
    driver: str = DEFAULT_DRIVER
    driver_options: dict[str, str] = field(default_factory=dict)
    objectives: str | None = None  # default: top1,latency with a target, else top1,size
    budget: int = 50
    time_limit: float | None = None  # seconds
    workers: int = 0
    ray_address: str | None = None
    val_limit: int = 1000
    val_split: float | None = None  # validation = this seeded fraction of `data`, test = the rest
    calib_limit: int | None = None  # default 256 (64 for the embedded digits)
    test_limit: int | None = None
    seed: int = 0  # the driver's seed
    data_seed: int = 0  # the image subsets' seed: searches of any seed score the same images
    eval_cache: str | None = None  # SQLite file of metrics shared across searches
    threads: int | None = None  # target threads for latency (cost model), None: profile default
    pins: list[str] = field(default_factory=list)
    ties: list[list[str]] = field(default_factory=list)
    budgets: Budgets = field(default_factory=Budgets)
    out: str | None = None
    resume: bool = False
    progress: bool = True
    command: str = ""
    report: bool = False  # write report.html into the results dir at the end
    ptq: str = (
        "none"  # refinement of every candidate (QuantSettings.ptq), or choices "none,adaround"
    )
    adaround_iterations: int = 1000
    measure_front: bool = False  # time the front on the target's runtime at the end (haq measure)
    profile: str = "auto"  # layers the tables lack: auto / never / ask (haq.search.profiling)
    profile_jobs: int | None = None  # at most this many profiling jobs, least sure first
    tokens: int | None = None  # a text model's tokens per input (None: the entry's, 128)
    group_size: int = 128  # weights per scale of group-wise (weight-only) layers
    weight_only_mapping: str = "symmetric"  # or asymmetric: zero points (QuantSettings)


RESUMED_KEYS = ("model", "weights", "target", "data", "calib_data", "space", "driver", "driver_options",
                "objectives", "val_limit", "val_split", "calib_limit", "seed", "threads", "pins", "ties",
                "ptq", "adaround_iterations", "tokens", "group_size", "weight_only_mapping")  # fmt: skip


def restore_options(opts: SearchOptions, keep_budget: bool = True,
                    keys: tuple[str, ...] = RESUMED_KEYS) -> SearchOptions:  # fmt: skip
    """A resumed search keeps the options it was started with (``--budget`` may raise the
    budget when ``keep_budget`` is False); ``opts.out`` names the results dir."""
    import json

    run_json = Path(opts.out or "") / "run.json"
    if not run_json.is_file():
        raise HaqError(
            f"nothing to resume in {opts.out}; pass the results dir of an earlier search"
        )
    saved = json.loads(run_json.read_text())["options"]
    for key in keys:
        setattr(opts, key, saved.get(key, getattr(opts, key)))
    opts.data_seed = saved.get("data_seed", saved.get("seed", 0))  # older runs: one seed for both
    if keep_budget:
        opts.budget = saved.get("budget", opts.budget)
    return opts


def restored_options(run_dir: str | Path) -> SearchOptions:
    """The options of the search in ``run_dir`` (its test images too), to rebuild its setup."""
    opts = SearchOptions(out=str(run_dir), resume=True, progress=False, profile="never")
    return restore_options(opts, keys=(*RESUMED_KEYS, "test_limit"))
