"""The hybrid driver's accuracy surrogate: the link inverts, and the convex fit predicts mild
many-layer mixes that an additive fit to the same configs overstates."""

from __future__ import annotations

import numpy as np
import pytest

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


def test_proxy_map_weighs_the_proxy_beside_the_surrogate_or_says_nothing() -> None:
    from haq.search.drivers.surrogate import MIN_NOISE, fit_proxy_map

    rng = np.random.default_rng(0)
    delta, surrogate = rng.uniform(0, 1, 40), rng.uniform(0, 4, 40)
    drops = 0.5 + 3.0 * delta + 0.8 * surrogate + rng.normal(0, 0.3, 40)
    m = fit_proxy_map(delta, surrogate, drops, box=10.0)
    assert m is not None
    assert m.coef[1] == pytest.approx(3.0, rel=0.15) and m.coef[2] == pytest.approx(0.8, rel=0.15)
    assert m.drop(0.5, 2.0) == pytest.approx(0.5 + 1.5 + 1.6, abs=0.3)
    assert 0.25 < m.sigma < 0.5  # about the noise, a little above it out of sample
    # configs beyond the box are left out of the fit
    far = fit_proxy_map(
        np.append(delta, 0.1), np.append(surrogate, 0.0), np.append(drops, 50.0), 10.0
    )
    assert far is not None and far.coef == pytest.approx(m.coef)
    # a proxy that falls as the drop grows says nothing beyond the surrogate; few configs neither
    assert fit_proxy_map(-delta, surrogate, drops, box=100.0) is None
    assert fit_proxy_map(delta[:5], surrogate[:5], drops[:5], box=10.0) is None
    exact = fit_proxy_map(delta, surrogate, 1.0 + 2.0 * delta + surrogate, box=10.0)
    assert exact is not None and exact.sigma == MIN_NOISE
