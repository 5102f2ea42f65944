"""A target this CPU can measure, for the tests of measuring and profiling."""

from __future__ import annotations

import pytest

from haq.cli import main
from haq.hardware.profile import get_target
from haq.hardware.reachable import runtime_gap


@pytest.fixture(scope="session")
def local_target(tmp_path_factory: pytest.TempPathFactory) -> str:
    """cpu-avx512 where this CPU runs its kernels; else this CPU profiled as a target of its
    own (`haq profile --out`, digits_cnn only), so the measuring path is tested on any CPU."""
    if runtime_gap(get_target("cpu-avx512")) is None:
        return "cpu-avx512"
    out = tmp_path_factory.mktemp("target") / "this-cpu"
    assert main(["profile", "--target", "cpu-avx512", "--model", "digits_cnn", "--threads", "1",
                 "--kernels", "fp32,int8,int8-weights", "--out", str(out)]) == 0  # fmt: skip
    return f"{out}.yaml"
