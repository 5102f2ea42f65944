"""The hybrid driver's accuracy surrogate: a drop from the reference config, additive in
(variable, choice) pairs under a convex link, fitted on the evaluated configs.

Quantization noise of different layers adds up in the network's output (which is why the
summed per-layer proxy works at all), but the accuracy lost grows faster than the noise while
few predictions have flipped yet: two layers that each cost half a point cost more than a point
together. A purely additive fit to the evaluated configs (most of them either near the
reference or aggressive ILP points) then overstates the drop of the mild many-layer mixes in
between. So the model is ``drop = g(s)``, ``s`` the summed pair effects, ``g(s) = s + c s^2``
on ``s > 0``: each pair's effect is fitted by ridge regression on ``g^-1(drop)`` towards the
sensitivity proxy times one fitted scale (the prior), and the residual scale is the
leave-one-out error (in-sample residuals of a ridge fit understate how wrong it is on a
config it has not seen).

A config's prediction is the fit's, not its nearest evaluated neighbour's accuracy minus the
fitted difference: measured on the driver's own searches, a neighbour's residual predicts
little of a child's, and inheriting it sends the search after the neighbourhoods of
configs that were lucky on the validation images.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

RIDGE = 2.0  # pull of each pair's fitted effect towards its proxy prior (in squared points)
MIN_NOISE = 0.1  # accuracy points: the smallest residual scale the surrogate assumes
CURVATURE = 0.2  # c of the link, per point of summed effect


def link(s: np.ndarray | float, c: float = CURVATURE) -> np.ndarray:
    """Drop in points from the summed pair effects ``s`` (identity below zero)."""
    s = np.asarray(s, dtype=float)
    return s + c * np.maximum(s, 0.0) ** 2


def unlink(y: np.ndarray, c: float = CURVATURE) -> np.ndarray:
    """The inverse of `link`: the summed effect that loses ``y`` points."""
    y = np.asarray(y, dtype=float)
    if c == 0:
        return y
    return np.where(y > 0, (np.sqrt(1.0 + 4.0 * c * np.maximum(y, 0.0)) - 1.0) / (2.0 * c), y)


@dataclass(frozen=True)
class DropFit:
    """One accuracy objective's fit: per-pair effects, the reference's accuracy, the error."""

    effects: np.ndarray  # one per pair, in link units
    anchor: float  # accuracy of the reference config (drop 0)
    sigma: float  # leave-one-out residual scale, in accuracy points
    curvature: float

    def drop(self, pair_ids: list[int]) -> float:
        """Points lost from the reference by the config leaving it in ``pair_ids``."""
        return float(link(self.effects[pair_ids].sum(), self.curvature))

    def accuracy(self, pair_ids: list[int]) -> float:
        return self.anchor - self.drop(pair_ids)


def fit_drops(x: np.ndarray, drops: np.ndarray, proxy: np.ndarray, anchor: float, box: float,
              curvature: float = CURVATURE) -> DropFit:  # fmt: skip
    """Fit on ``x`` (configs x pairs, 1 where a config leaves the reference in that pair),
    their measured ``drops`` from the reference and each pair's ``proxy`` penalty; the
    residual scale is measured on the configs within ``box`` points of the reference."""
    c = curvature
    z = unlink(drops, c)
    s = x @ proxy
    keep = s > 0
    alpha = (
        max(float((s[keep] * z[keep]).sum() / (s[keep] ** 2).sum()), 1e-6) if keep.any() else 1.0
    )
    prior = alpha * proxy
    a = x.T @ x + RIDGE * np.eye(x.shape[1])
    effects = prior + np.linalg.solve(a, x.T @ (z - x @ prior))
    inside = drops <= box
    sigma = 0.0
    if inside.any():
        hat = np.einsum("ij,ji->i", x, np.linalg.solve(a, x.T))
        loo = z - (z - x @ effects) / np.maximum(1.0 - hat, 1e-6)
        sigma = float(np.sqrt(np.mean((link(loo, c) - drops)[inside] ** 2)))
    return DropFit(effects, anchor, max(sigma, MIN_NOISE), c)
