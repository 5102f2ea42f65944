"""Serial and Ray executors: same numbers, every trial answered, crashed workers retried."""

from __future__ import annotations

import pickle
import random
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from haq import BitConfig
from haq.evaluate import EvalResult
from haq.evaluate.pool import EvalFailure, EvalSpec, RayExecutor, SerialExecutor

SPEC = EvalSpec(
    "digits_cnn",
    data="digits",
    calib_data="digits:train",
    limit=150,
    calib_limit=64,
    batch_size=64,
    threads_per_worker=1,
)
LAYERS = ["conv1", "conv2", "conv3_dw", "conv4_pw", "fc1", "fc2"]
CHOICES = ["w8a8", "w4a8", "w6a6", "w2a8", "w4a32", "fp32"]


def _configs(n: int, seed: int = 0) -> list[BitConfig]:
    rng = random.Random(seed)
    return [BitConfig({name: rng.choice(CHOICES) for name in LAYERS}) for _ in range(n)]


@pytest.fixture(scope="module")
def cache_env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The session's test cache, set before module fixtures build models (and Ray starts)."""
    cache = tmp_path_factory.getbasetemp() / "haq-cache"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HAQ_CACHE_DIR", str(cache))
        yield cache


@pytest.fixture(scope="module")
def serial(cache_env: Path) -> Iterator[SerialExecutor]:
    with SerialExecutor(SPEC) as ex:  # builds first: trains and caches the digits model once
        yield ex


@pytest.fixture(scope="module")
def ray_cluster(cache_env: Path, serial: SerialExecutor) -> Iterator[None]:
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level="ERROR")
    yield
    ray.shutdown()


def _collect(ex: RayExecutor | SerialExecutor) -> dict[int, EvalResult | EvalFailure]:
    out: dict[int, EvalResult | EvalFailure] = {}
    while ex.pending():
        tid, res = ex.next_result(timeout=120)
        assert tid not in out
        out[tid] = res
    return out


def test_results_pickle_small(serial: SerialExecutor) -> None:
    (res,) = serial.evaluate_all(["w8a8"])
    assert isinstance(res, EvalResult)
    back = pickle.loads(pickle.dumps(res))
    assert back.config == res.config and back.config.hash == res.config.hash
    assert back.metrics == res.metrics
    assert len(pickle.dumps(res)) < 4096  # metrics + config + seconds, no tensors
    assert pickle.loads(pickle.dumps(SPEC)) == SPEC


def test_serial_and_ray_give_identical_metrics(serial: SerialExecutor, ray_cluster: None) -> None:
    configs = _configs(8)
    expected = serial.evaluate_all(configs)
    with RayExecutor(SPEC, workers=2) as ex:
        assert ex.capacity() == 2 and ex.pending() == 0
        for i, c in enumerate(configs):  # more than capacity: the rest queue
            ex.submit(i, c)
        assert ex.pending() == len(configs)
        got = _collect(ex)
        assert ex.restarts == 0
    assert sorted(got) == list(range(len(configs)))
    for i, exp in enumerate(expected):
        res = got[i]
        assert isinstance(res, EvalResult) and isinstance(exp, EvalResult)
        assert res.config == configs[i]
        assert res.metrics.to_dict() == exp.metrics.to_dict()
        assert res.seconds > 0


def test_crashed_worker_is_retried_then_reported(serial: SerialExecutor, ray_cluster: None) -> None:
    # trial 1 kills its worker once (retried on a fresh actor); trial 2 kills it every time
    spec = replace(SPEC, crash_on_trial=((1, 1), (2, 99)))
    configs = _configs(4, seed=1)
    expected = serial.evaluate_all(configs)
    with RayExecutor(spec, workers=2) as ex:
        for i, c in enumerate(configs[:3]):
            ex.submit(i, c)
        got = _collect(ex)
        assert ex.restarts == 3  # one for trial 1, two for trial 2
        # the pool still works after the failures, and a config the model cannot take is
        # reported at once (a HaqError is deterministic, not retried)
        ex.submit(3, configs[3])
        ex.submit(4, BitConfig({"no_such_layer": "w8a8"}, default="w8a8"))
        got.update(_collect(ex))
    assert sorted(got) == [0, 1, 2, 3, 4]
    for i in (0, 1, 3):
        res = got[i]
        assert isinstance(res, EvalResult)
        assert res.metrics.to_dict() == expected[i].metrics.to_dict()  # type: ignore[union-attr]
    fail = got[2]
    assert isinstance(fail, EvalFailure)
    assert fail.trial_id == 2 and fail.config == configs[2] and fail.attempts == 2
    assert "died" in fail.error
    bad = got[4]
    assert isinstance(bad, EvalFailure) and bad.attempts == 1 and "no_such_layer" in bad.error


def test_serial_executor_retries_and_reports(serial: SerialExecutor) -> None:
    spec = replace(SPEC, crash_on_trial=((1, 1), (2, 99)))
    with SerialExecutor(spec, evaluator=serial.evaluator) as ex:
        assert ex.capacity() == 1
        out = ex.evaluate_all(_configs(3, seed=2))
    assert isinstance(out[0], EvalResult) and isinstance(out[1], EvalResult)
    assert isinstance(out[2], EvalFailure) and out[2].attempts == 2
    assert "simulated crash" in out[2].error


def test_bad_spec_fails_at_startup(ray_cluster: None) -> None:
    from haq.errors import HaqError

    with pytest.raises(HaqError, match="unknown model"):
        RayExecutor(replace(SPEC, model="no_such_model"), workers=1)


def test_import_stays_light() -> None:
    code = "import sys, haq.evaluate.pool; assert 'ray' not in sys.modules, 'ray imported'"
    subprocess.run([sys.executable, "-c", code], check=True)
