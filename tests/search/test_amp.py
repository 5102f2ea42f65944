"""amp-greedy: measured phase 1 as trials, then a cumulative path that only ever gets cheaper."""

from __future__ import annotations

from pathlib import Path

import pytest

import haq
from haq import HaqError


def test_greedy_path_is_monotone_in_cost(tmp_path: Path) -> None:
    res = haq.search(model="digits_cnn", target="npu-bitfusion-edge", driver="amp-greedy", budget=100,
                     workers=0, progress=False, out=str(tmp_path / "a"), pins=["conv2=w8a8"])  # fmt: skip
    t = res.trials
    assert (t["source"] == "sensitivity").sum() > 5  # phase 1 ran as trials of the search
    path = t[t["source"] == "path"].sort_values("trial")
    assert len(path) >= 3
    assert path["latency_ms"].is_monotonic_decreasing and path["latency_ms"].is_unique
    # a second search on the same validation images reuses the measured drops
    again = haq.search(model="digits_cnn", target="npu-bitfusion-edge", driver="amp-greedy", budget=100,
                       workers=0, progress=False, out=str(tmp_path / "b"), pins=["conv2=w8a8"])  # fmt: skip
    assert (again.trials["source"] == "sensitivity").sum() == 0
    # the same path; a step equal to a phase-1 config was not evaluated twice the first time
    path_b = set(again.trials[again.trials["source"] == "path"]["config_hash"])
    assert set(path["config_hash"]) <= path_b
    assert path_b - set(path["config_hash"]) <= set(t[t["source"] == "sensitivity"]["config_hash"])


def test_phase_one_larger_than_the_budget_is_refused(tmp_path: Path) -> None:
    with pytest.raises(HaqError, match="amp-greedy needs .* evaluations for its phase 1"):
        haq.search(model="digits_cnn", target="npu-bitfusion-edge", driver="amp-greedy", budget=4,
                   workers=0, progress=False, out=str(tmp_path / "c"), val_limit=300)  # fmt: skip
    with pytest.raises(HaqError, match="has no option"):
        haq.search(model="digits_cnn", driver="amp-greedy", budget=4, workers=0, progress=False,
                   out=str(tmp_path / "d"), driver_options={"cut": "1"})  # fmt: skip
