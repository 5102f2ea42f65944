"""haq-ddpg: the resource wall keeps every episode within its budget; options are checked."""

from __future__ import annotations

from pathlib import Path

import pytest

import haq
from haq import HaqError
from haq.search.drivers import get_driver


def test_wall_enforces_the_budget(tmp_path: Path) -> None:
    res = haq.search(model="digits_cnn", target="npu-bitfusion-edge", driver="haq-ddpg", budget=30,
                     workers=0, progress=False, out=str(tmp_path / "d"),
                     driver_options={"preserve": "0.6", "warmup": "5"})  # fmt: skip
    t = res.trials
    w8 = t[t["label"] == "w8a8"]["latency_ms"].iloc[0]
    episodes = t[t["source"] == "ddpg"]
    assert len(episodes) >= 20
    assert (episodes["latency_ms"] <= 0.6 * w8 + 1e-12).all()
    # first and last layers stay at 8 bits, as in HAQ
    import json

    for cfg in episodes["config"]:
        layers = json.loads(cfg)["layers"]
        assert layers["conv1"] == "w8a8" and layers["fc2"] == "w8a8"


def test_bad_options() -> None:
    for bad in ({"preserve": "0"}, {"preserve": "x"}, {"warmup": "-1"}, {"sigma": "1"}):
        with pytest.raises(HaqError, match="driver option|has no option"):
            get_driver("haq-ddpg").make(bad)
