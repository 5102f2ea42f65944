"""Measured whole-network latencies in the user's overlay: recorded atomically, a re-measured
config replaces its record, and a later cost model of the same network on this CPU scales
its latencies by the median measured / predicted ratio once `MIN_CONFIGS` are in."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from haq.config import BitConfig
from haq.cost import LookupCostModel
from haq.errors import HaqError
from haq.hardware.network_walls import (
    FILE,
    MIN_CONFIGS,
    measured_configs,
    network_digest,
    read_networks,
    record_networks,
)
from haq.hardware.overlay import overlay_path
from haq.hardware.profile import get_target
from haq.testing.targets import LAYERS

TARGET = "cpu-avx512"


@pytest.fixture(autouse=True)
def _own_overlay(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HAQ_OVERLAY_DIR", str(tmp_path / "overlay"))


def _layers() -> list:
    return [replace(LAYERS[k], name=f"l{i}", index=i)
            for i, k in enumerate(("conv", "conv", "linear"))]  # fmt: skip


def _configs(model: LookupCostModel) -> list[BitConfig]:
    names = model.names
    picks = [("w8a8", "w8a8", "w8a8"), ("fp32", "w8a8", "w8a8"), ("w8a8", "fp32", "fp32"),
             ("fp32", "fp32", "fp32")]  # fmt: skip
    return [BitConfig.from_dict({"layers": dict(zip(names, p, strict=True))}) for p in picks]


def _records(model: LookupCostModel, configs: list[BitConfig], scale: float, **extra) -> list:
    return [{"network": network_digest(model.layers), "model": "synthetic", "threads": model.threads,
             "batch": model.batch, "kernels": model.kernels_of(c),
             "measured_ms": model.score(c).latency_ms * scale, "date": "2026-12-07", **extra}
            for c in configs]  # fmt: skip


def test_measured_configs_scale_a_later_cost_model() -> None:
    profile = get_target(TARGET)
    raw = LookupCostModel(profile, _layers())
    configs = _configs(raw)
    assert raw.calibration is None
    record_networks(TARGET, _records(raw, configs[: MIN_CONFIGS - 1], 1.3))
    assert LookupCostModel(profile, _layers()).calibration is None  # too few yet
    record_networks(TARGET, _records(raw, configs[MIN_CONFIGS - 1 :], 1.3))
    tuned = LookupCostModel(profile, _layers())
    assert tuned.calibration == {"ratio": pytest.approx(1.3, abs=1e-4), "configs": len(configs)}
    for c in configs:
        assert tuned.score(c).latency_ms == pytest.approx(1.3 * raw.score(c).latency_ms, rel=1e-6)
        assert f"measured({len(configs)} configs)" in tuned.score(c).model
    # another network, thread count or CPU is not this one
    other = [replace(s, out_channels=s.out_channels + 1) if i == 0 else s
             for i, s in enumerate(_layers())]  # fmt: skip
    assert network_digest(other) != network_digest(_layers())
    assert LookupCostModel(profile, other).calibration is None
    assert not measured_configs(TARGET, _layers(), raw.threads + 1, raw.batch)
    assert not measured_configs(TARGET, _layers(), raw.threads, raw.batch, group=32)


def test_a_config_measured_again_replaces_its_record_and_other_cpus_are_ignored() -> None:
    profile = get_target(TARGET)
    raw = LookupCostModel(profile, _layers())
    configs = _configs(raw)
    record_networks(TARGET, _records(raw, configs, 2.0))
    path = record_networks(TARGET, _records(raw, configs, 1.1))
    assert path == overlay_path(TARGET) / FILE
    assert len(read_networks(TARGET)) == len(configs)
    assert LookupCostModel(profile, _layers()).calibration["ratio"] == pytest.approx(1.1, abs=1e-4)
    record_networks(TARGET, _records(raw, configs, 5.0, cpu=["Another CPU", 25, 1]))
    assert len(read_networks(TARGET)) == 2 * len(configs)
    tuned = LookupCostModel(profile, _layers())
    assert tuned.calibration["ratio"] == pytest.approx(1.1, abs=1e-4)
    assert np.isfinite(tuned.latency_us[~np.isnan(tuned.latency_us)]).all()


def test_a_corrupt_networks_file_is_one_line() -> None:
    d = overlay_path(TARGET)
    d.mkdir(parents=True, exist_ok=True)
    (d / FILE).write_text("{not json\n")
    with pytest.raises(HaqError, match="delete it") as e:
        LookupCostModel(get_target(TARGET), _layers())
    assert "\n" not in str(e.value)


def test_a_saved_scale_is_re_applied_and_none_leaves_the_rows() -> None:
    """A resumed search passes the scale its first run used; None ignores the records."""
    profile = get_target(TARGET)
    raw = LookupCostModel(profile, _layers())
    record_networks(TARGET, _records(raw, _configs(raw), 1.5))
    kept = LookupCostModel(profile, _layers(), calibration={"ratio": 1.2, "configs": 7})
    plain = LookupCostModel(profile, _layers(), calibration=None)
    for c in _configs(raw):
        assert kept.score(c).latency_ms == pytest.approx(1.2 * raw.score(c).latency_ms, rel=1e-6)
        assert plain.score(c).latency_ms == raw.score(c).latency_ms
    assert kept.calibration == {"ratio": 1.2, "configs": 7} and plain.calibration is None
    with pytest.raises(HaqError, match="calibration must be"):
        LookupCostModel(profile, _layers(), calibration="sometimes")
