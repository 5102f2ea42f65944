"""Prefix reuse must give exactly the plain path's logits, and skip the work it claims to."""

from __future__ import annotations

import dataclasses
import random
import warnings

import numpy as np
import pytest
import torch
from torch import nn

from haq import BitConfig
from haq.data import TensorData
from haq.errors import HaqError
from haq.evaluate import EvalSetup, LocalEvaluator, build_setup, predict
from haq.evaluate.prefix import PrefixRunner, _clone, cache_budget_bytes
from haq.models import load_model
from haq.models.registry import LoadedModel, Preprocess
from haq.quant import Quantizer
from haq.quant.modules import QuantLayer, _on_grid, _tag

POOL = ["fp32", "w8a8", "w4a8", "w6a6", "w4a4", "w8a32", "w4a32", "w2a8", "w8a6", "w16a16"]


def _stream(names: list[str], seed: int, parents: int = 3) -> list[BitConfig]:
    """Uniform configs, random parents with children changing 1-2 layers, repeats."""
    rng = random.Random(seed)
    out = [BitConfig.uniform(p, names) for p in ("w8a8", "w4a32", "fp32")]
    for _ in range(parents):
        parent = {n: rng.choice(POOL) for n in names}
        out.append(BitConfig(parent))
        for _ in range(3):
            child = dict(parent)
            for n in rng.sample(names, rng.choice((1, 2))):
                child[n] = rng.choice([p for p in POOL if p != parent[n]])
            out.append(BitConfig(child))
        out.append(
            BitConfig({**parent, names[-1]: "w8a8" if parent[names[-1]] != "w8a8" else "fp32"})
        )
        out.append(BitConfig(parent))  # a repeat: every segment cached
    out.append(BitConfig.uniform("w8a8", names))
    return out


def _check_identical(setup: EvalSetup, configs: list[BitConfig]) -> PrefixRunner:
    q, x, bs = setup.quantizer, setup.data.x, setup.evaluator.batch_size
    runner = PrefixRunner.build(q, x, bs)
    assert runner is not None and len(runner.segments) > 1
    for cfg in configs:
        resolved = q.resolve(cfg)
        got = runner.logits(resolved)
        assert got is not None
        assert torch.equal(got, predict(q.apply(resolved), x, bs)), cfg.summary()
    assert runner.stats.fallbacks == 0
    assert runner.stats.segments_reused > 0 and runner.stats.full_hits >= 2
    return runner


def _resnet18_small() -> LoadedModel:
    """torchvision resnet18 (in-place ReLUs, residual blocks, downsample convs) at 32x32."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        lm = load_model("resnet18", "none")
    entry = dataclasses.replace(
        lm.entry, preprocess=Preprocess((3, 32, 32), (0.5,) * 3, (0.25,) * 3)
    )
    return LoadedModel("resnet18", lm.model, entry, "none")


def test_digits_cnn_logits_identical() -> None:
    setup = build_setup("digits_cnn", limit=150, batch_size=64)  # ragged last batch
    runner = _check_identical(setup, _stream(setup.quantizer.layer_names, seed=0, parents=4))
    assert runner.cache_used <= runner.cache_limit


def test_cifar_resnet20_logits_identical() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        setup = build_setup("cifar_resnet20", "none", "synthetic:56", calib_limit=32, limit=24,
                            batch_size=10)  # fmt: skip
    runner = _check_identical(setup, _stream(setup.quantizer.layer_names, seed=1, parents=2))
    # blocks are segments: the stem conv, one per residual block, then the head
    assert len(runner.segments) == 11


def test_torchvision_resnet18_inplace_relu_logits_identical() -> None:
    setup = build_setup(_resnet18_small(), "none", "synthetic:28", calib_limit=12, limit=16,
                        batch_size=6)  # fmt: skip
    _check_identical(setup, _stream(setup.quantizer.layer_names, seed=2, parents=2))


def test_evaluator_metrics_identical_and_float_uses_reference() -> None:
    setup = build_setup("digits_cnn", limit=120, batch_size=50)
    q = setup.quantizer
    fast = LocalEvaluator(q, setup.data, 50)
    plain = LocalEvaluator(q, setup.data, 50, reuse_prefixes=False)
    assert plain.prefix_runner is None
    for cfg in _stream(q.layer_names, seed=3, parents=2):
        a, b = fast.evaluate(cfg), plain.evaluate(cfg)
        assert a.metrics.to_dict() == b.metrics.to_dict()
        assert a.config == b.config
    runner = fast.prefix_runner
    assert runner is not None
    before = runner.stats.evaluations
    assert fast.evaluate("fp32").metrics.agreement == 100.0
    assert runner.stats.evaluations == before  # all-float: the reference logits, no replay


def _count_layer_calls(q: Quantizer, monkeypatch: pytest.MonkeyPatch) -> dict[str, int]:
    """Count every quantizable layer call of every applied model (and the apply calls)."""
    counts: dict[str, int] = {"apply": 0}
    apply = q.apply

    def counting_apply(config: BitConfig | str) -> nn.Module:
        model = apply(config)
        counts["apply"] += 1
        for name in q.layer_names:

            def pre(_m: nn.Module, _i: tuple[torch.Tensor, ...], name: str = name) -> None:
                counts[name] = counts.get(name, 0) + 1

            model.get_submodule(name).register_forward_pre_hook(pre)
        return model

    monkeypatch.setattr(q, "apply", counting_apply)
    return counts


def test_cache_hits_skip_work(monkeypatch: pytest.MonkeyPatch) -> None:
    setup = build_setup("digits_cnn", limit=100, batch_size=40)  # 3 batches
    q = setup.quantizer
    names = q.layer_names
    runner = PrefixRunner.build(q, setup.data.x, 40)
    assert runner is not None
    counts = _count_layer_calls(q, monkeypatch)
    a = q.resolve(BitConfig({n: "w8a8" for n in names}))
    runner.logits(a)
    assert runner.stats.segments_run == len(runner.segments)
    assert all(counts[n] == 3 for n in names)
    # only the last layer differs: only the last segment runs again
    b = q.resolve(BitConfig({**dict(a.items()), names[-1]: "w4a8"}))
    got = runner.logits(b)
    assert runner.stats.segments_run == len(runner.segments) + 1
    assert counts[names[-1]] == 6 and all(counts[n] == 3 for n in names[:-1])
    # a repeat runs nothing, not even apply
    applies = counts["apply"]
    again = runner.logits(b)
    assert again is not None and got is not None and torch.equal(again, got)
    assert runner.stats.full_hits == 1 and counts["apply"] == applies
    # a change in the first layer runs everything
    runner.logits(q.resolve(BitConfig({**dict(a.items()), names[0]: "w4a4"})))
    assert runner.stats.segments_run == 2 * len(runner.segments) + 1
    assert runner.stats.fallbacks == 0


def test_recalibration_clears_the_cache() -> None:
    setup = build_setup("digits_cnn", limit=64, batch_size=32)
    q, x = setup.quantizer, setup.data.x
    runner = PrefixRunner.build(q, x, 32)
    assert runner is not None
    cfg = q.resolve("w8a8")
    runner.logits(cfg)
    assert setup.calib is not None
    q.calibrate(setup.calib.x[:16])
    got = runner.logits(cfg)
    assert runner.stats.full_hits == 0
    assert got is not None and torch.equal(got, predict(q.apply(cfg), x, 32))


def test_cache_stays_within_its_byte_bound() -> None:
    setup = build_setup("digits_cnn", limit=200, batch_size=64)
    q, x = setup.quantizer, setup.data.x
    probe = PrefixRunner.build(q, x, 64)
    assert probe is not None
    first = probe.segments[0].bytes_per_sample * x.shape[0]
    limit = int(2.5 * first)  # room for a few entries, never for every segment of a config
    runner = PrefixRunner.build(q, x, 64, cache_bytes=limit)
    assert runner is not None and runner.cache_limit == limit
    for cfg in _stream(q.layer_names, seed=4, parents=3):
        resolved = q.resolve(cfg)
        got = runner.logits(resolved)
        assert got is not None and torch.equal(got, predict(q.apply(resolved), x, 64))
        assert 0 < runner.cache_used <= limit
        held = sum(t.untyped_storage().nbytes() for e in runner._cache.values() for t in e.tensors)
        assert held == runner.cache_used
    assert runner.stats.segments_reused > 0


def test_cache_budget_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HAQ_PREFIX_CACHE_MB", raising=False)
    assert cache_budget_bytes() == 2**30
    monkeypatch.setenv("HAQ_PREFIX_CACHE_MB", "2.5")
    assert cache_budget_bytes() == int(2.5 * 2**20)
    monkeypatch.setenv("HAQ_PREFIX_CACHE_MB", "lots")
    with pytest.raises(HaqError, match="HAQ_PREFIX_CACHE_MB"):
        cache_budget_bytes()
    monkeypatch.setenv("HAQ_PREFIX_CACHE_MB", "0")
    setup = build_setup("digits_cnn", limit=60)
    assert setup.evaluator.prefix_runner is None  # off: the plain path
    assert setup.evaluator.evaluate("w8a8").metrics.n_images == 60


class _Branchy(nn.Module):
    """Data-dependent control flow: fx cannot trace it."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.fc = nn.Linear(4 * 8 * 8, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv(x)
        if y.sum() > 0:
            y = torch.relu(y)
        return self.fc(torch.flatten(y, 1))


def test_untraceable_model_falls_back_to_the_plain_path() -> None:
    torch.manual_seed(0)
    q = Quantizer(_Branchy(), torch.zeros(1, 3, 8, 8), calibration_images=torch.randn(16, 3, 8, 8))
    x = torch.randn(20, 3, 8, 8)
    data = TensorData(x, torch.randint(0, 3, (20,)), ["a", "b", "c"], "test", np.arange(20))
    assert PrefixRunner.build(q, x, 8) is None
    fast, plain = LocalEvaluator(q, data, 8), LocalEvaluator(q, data, 8, reuse_prefixes=False)
    assert fast.prefix_runner is None
    for cfg in ("w8a8", "w4a8", BitConfig({"conv": "w4a4", "fc": "fp32"})):
        assert fast.evaluate(cfg).metrics.to_dict() == plain.evaluate(cfg).metrics.to_dict()


def test_foreign_hooks_fall_back_to_the_plain_path(monkeypatch: pytest.MonkeyPatch) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        setup = build_setup("cifar_resnet20", "none", "synthetic:48", calib_limit=16, limit=24,
                            batch_size=12)  # fmt: skip
    q = setup.quantizer
    # a container hook on the float model itself: the trace would inline it, so no replay
    handle = q.base.get_submodule("layer1.0").register_forward_hook(lambda m, i, o: o * 2)
    assert PrefixRunner.build(q, setup.data.x, 12) is None
    handle.remove()
    runner = PrefixRunner.build(q, setup.data.x, 12)
    assert runner is not None
    # a container hook the replay does not know, added to an applied model: that config falls
    # back (the evaluator then predicts the plain way, hook included)
    apply = q.apply

    def hooked_apply(config: BitConfig | str) -> nn.Module:
        model = apply(config)
        model.get_submodule("layer2").register_forward_hook(lambda m, i, o: o + 1)
        return model

    monkeypatch.setattr(q, "apply", hooked_apply)
    assert runner.logits(q.resolve("w8a8")) is None and runner.stats.fallbacks == 1
    ev = LocalEvaluator(q, setup.data, 12)
    got = ev.evaluate("w6a6")
    want = LocalEvaluator(q, setup.data, 12, reuse_prefixes=False).evaluate("w6a6")
    assert got.metrics.to_dict() == want.metrics.to_dict()


def test_corrupted_cache_entry_is_detected_and_dropped() -> None:
    setup = build_setup("digits_cnn", limit=64, batch_size=32)
    q, x = setup.quantizer, setup.data.x
    runner = PrefixRunner.build(q, x, 32)
    assert runner is not None
    names = q.layer_names
    a = q.resolve(BitConfig.uniform("w8a8", names))
    runner.logits(a)
    key = runner.keys(a)[0]
    runner._cache[key].tensors[0].add_(1.0)  # something modified a cached tensor in place
    b = q.resolve(BitConfig({**dict(a.items()), names[1]: "w4a4"}))
    assert runner.logits(b) is None  # refused, not wrong
    assert key not in runner._cache and runner.segments[0].out_mutated
    got = runner.logits(b)
    assert got is not None and torch.equal(got, predict(q.apply(b), x, 32))


def test_clone_keeps_a_valid_grid_tag_only() -> None:
    grid = (0.1, 0, 8)
    with torch.no_grad():
        t = _tag(torch.ones(2, 3), grid)
        c = _clone(t)
        assert c.data_ptr() != t.data_ptr() and _on_grid(c, grid)
        c.relu_()
        assert not _on_grid(c, grid) and _on_grid(t, grid)
        t.add_(1)  # the original's tag is stale now: a clone must not inherit it
        assert not _on_grid(_clone(t), grid)


def test_quant_layers_are_leaves_of_the_trace() -> None:
    setup = build_setup(_resnet18_small(), "none", "synthetic:8", calib_limit=4, limit=4)
    runner = setup.evaluator.prefix_runner
    assert runner is not None
    targets = {str(n.target) for n in runner._steps if n.op == "call_module"}
    assert set(setup.quantizer.layer_names) <= targets
    assert not any(isinstance(m, QuantLayer) for m in setup.quantizer.base.modules())
