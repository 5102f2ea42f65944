"""The hybrid driver's accuracy surrogate: the link inverts, and the convex fit predicts mild
many-layer mixes that an additive fit to the same configs overstates."""

from __future__ import annotations

import numpy as np

from haq.search.drivers.surrogate import fit_drops, link, unlink


def test_link_is_convex_identity_below_zero_and_inverted_by_unlink() -> None:
    s = np.array([-2.0, 0.0, 0.5, 1.0, 4.0])
    assert np.allclose(unlink(link(s)), s)
    assert link(-2.0) == -2.0
    assert link(2.0) > 2 * link(1.0)  # two effects together cost more than each alone twice
    assert np.allclose(unlink(link(s, 0.0), 0.0), s)


def _data(rng: np.random.Generator, n_pairs: int, curvature: float) -> tuple:
    effects = rng.uniform(0.05, 0.6, n_pairs)
    # the configs a search evaluates: one- or two-pair moves near the reference, and
    # aggressive ILP-like points with most pairs on
    rows = [np.eye(n_pairs)[i] for i in range(n_pairs)]
    rows += [(rng.random(n_pairs) < 0.7).astype(float) for _ in range(15)]
    x = np.array(rows)
    drops = link(x @ effects, curvature) + rng.normal(0, 0.05, len(x))
    return x, drops, effects


def test_convex_fit_predicts_mild_mixes_an_additive_fit_overstates() -> None:
    rng = np.random.default_rng(0)
    x, drops, effects = _data(rng, 20, 0.2)
    proxy = effects * rng.uniform(0.5, 2.0, len(effects))  # a proxy right within 2x
    mild = (rng.random((50, 20)) < 0.3).astype(float)  # a third of the layers lowered
    truth = link(mild @ effects, 0.2)
    convex = fit_drops(x, drops, proxy, anchor=90.0, box=10.0, curvature=0.2)
    additive = fit_drops(x, drops, proxy, anchor=90.0, box=10.0, curvature=0.0)
    err_convex = [
        convex.drop(list(np.flatnonzero(m))) - t for m, t in zip(mild, truth, strict=True)
    ]
    err_add = [additive.drop(list(np.flatnonzero(m))) - t for m, t in zip(mild, truth, strict=True)]
    assert np.mean(err_add) > 0.3  # the additive fit overstates the mild mixes
    assert abs(np.mean(err_convex)) < 0.5 * np.mean(err_add)


def test_residual_scale_is_out_of_sample() -> None:
    rng = np.random.default_rng(1)
    x, drops, effects = _data(rng, 20, 0.2)
    fit = fit_drops(x, drops, effects, anchor=90.0, box=10.0, curvature=0.2)
    inside = drops <= 10.0
    pred = np.array([fit.drop(list(np.flatnonzero(r))) for r in x])
    in_sample = float(np.sqrt(np.mean((pred - drops)[inside] ** 2)))
    assert fit.sigma > in_sample
