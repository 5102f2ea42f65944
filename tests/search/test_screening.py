"""Whole-config screening: the calibration images' mean loss of a whole config (KL to the
float model without labels), computed once per config."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
import torch.nn.functional as F

from haq.config import BitConfig
from haq.search.options import SearchOptions
from haq.search.runner import Search
from haq.search.screening import ConfigScreen


def _source(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("HAQ_CACHE_DIR", str(tmp_path / "cache"))
    search = Search(SearchOptions(model="digits_cnn", target="npu-bitfusion-edge", budget=10,
                                  out=str(tmp_path / "run"), progress=False))  # fmt: skip
    return search, search.driver_context().sensitivity


def test_scores_are_the_calibration_loss_of_the_whole_config_once_each(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    search, source = _source(tmp_path, monkeypatch)
    names = [s.name for s in search.layers]
    w8, w2 = BitConfig.uniform("w8a8", names), BitConfig.uniform("w2a2", names)
    screen = ConfigScreen(source)
    s8, s2, again = screen.scores([w8, w2, w8])
    ev = source.evaluator
    assert s8 == pytest.approx(float(F.cross_entropy(ev.logits(w8).double(), ev.data.y)))
    assert s2 > s8 and again == s8  # two-bit everything loses; a repeat is the same score
    assert screen.passes == 2
    screen.scores([w2])
    assert screen.passes == 2  # kept for the life of the search


def test_without_labels_the_score_is_the_kl_to_the_float_model(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    search, source = _source(tmp_path, monkeypatch)
    ev = source.evaluator
    ev.data = replace(ev.data, y=None)
    names = [s.name for s in search.layers]
    fp32, w2 = ConfigScreen(source).scores(
        [BitConfig.uniform("fp32", names), BitConfig.uniform("w2a2", names)]
    )
    assert fp32 == pytest.approx(0.0, abs=1e-12) and w2 > 0
