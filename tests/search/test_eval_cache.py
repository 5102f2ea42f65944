"""The evaluation cache shared across searches: the same metrics, no recomputation, still an
evaluation of the search that reads it; other images never share rows."""

from __future__ import annotations

import multiprocessing as mp
from pathlib import Path
from typing import Any

import haq
from haq import BitConfig
from haq.errors import HaqError
from haq.evaluate.metrics import Metrics
from haq.search import SearchResult
from haq.search.eval_cache import EvaluationCache


def _search(out: Path, **kw) -> SearchResult:
    return haq.search(model="digits_cnn", budget=12, out=str(out), workers=0, progress=False, **kw)


def test_second_search_reuses_the_first_ones_metrics(tmp_path: Path) -> None:
    cache = str(tmp_path / "evals.sqlite")
    first = _search(tmp_path / "a", eval_cache=cache).trials
    assert not first["reused"].any()
    plain = _search(tmp_path / "b", seed=1).trials
    again = _search(tmp_path / "c", seed=1, eval_cache=cache).trials
    done = again[again["state"] == "complete"]
    shared = done[done["config_hash"].isin(set(first["config_hash"]))]
    assert len(shared) >= 3  # the baselines at least
    assert shared["reused"].all() and (shared["eval_seconds"] == 0).all()
    assert not shared["cached"].any()  # counts as an evaluation of this search
    # the same metrics as computing them: a different seed scores the same images
    ref = plain.set_index("config_hash")["val_top1"]
    for h, top1 in zip(shared["config_hash"], shared["val_top1"], strict=True):
        if h in ref.index:
            assert top1 == ref[h]
    # test re-scoring of the front is shared too
    assert again["test_top1"].notna().sum() >= 1


def test_contexts_do_not_share_rows(tmp_path: Path) -> None:
    a = EvaluationCache(tmp_path / "e.sqlite", "ctx-a")
    b = a.for_context("ctx-b")
    cfg = BitConfig.uniform("w8a8", ["conv1", "fc"])
    a.put(cfg, Metrics(n_images=100, top1=91.5, top5=99.0))
    assert a.get(cfg) == Metrics(n_images=100, top1=91.5, top5=99.0) and len(a) == 1
    assert b.get(cfg) is None and len(b) == 0


def test_other_images_miss(tmp_path: Path) -> None:
    cache = str(tmp_path / "evals.sqlite")
    _search(tmp_path / "a", eval_cache=cache)
    other = _search(tmp_path / "b", eval_cache=cache, data_seed=3).trials
    assert not other["reused"].any()


def test_unusable_cache_file_is_one_line(tmp_path: Path, capsys) -> None:  # noqa: ANN001
    from haq.cli import main

    bad = tmp_path / "a-directory"
    bad.mkdir()
    code = main(["search", "--budget", "2", "--workers", "0", "--eval-cache", str(bad),
                 "--out", str(tmp_path / "run"), "-q"])  # fmt: skip
    err = capsys.readouterr().err.strip()
    assert code == 2 and "--eval-cache" in err and len(err.splitlines()) == 1
    assert not (tmp_path / "run").exists()


def _open_after(path: str, barrier: Any, answers: Any) -> None:
    barrier.wait()
    try:
        EvaluationCache(Path(path), "ctx")
        answers.put("ok")
    except HaqError as e:
        answers.put(str(e))


def test_searches_opening_a_new_cache_together_all_get_it(tmp_path: Path) -> None:
    # switching a new file to WAL answers "database is locked" at once, without waiting
    ctx = mp.get_context("fork")
    answers = ctx.Queue()
    for k in range(30):
        barrier = ctx.Barrier(3)
        procs = [ctx.Process(target=_open_after, args=(str(tmp_path / f"{k}.sqlite"), barrier, answers))
                 for _ in range(3)]  # fmt: skip
        for p in procs:
            p.start()
        for p in procs:
            p.join()
    got = [answers.get() for _ in range(90)]
    assert got == ["ok"] * 90, [g for g in got if g != "ok"][:1]
