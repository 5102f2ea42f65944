"""Shared machinery of the per-layer cost models: a [layer, kernel class] latency matrix.

A model bound to one network precomputes, for every layer and every kernel class the target
could run on it, the layer's latency (and energy) and who answered for it (the table, the
learned model, the roofline, or nobody), plus the cost of every kernel-class boundary between
consecutive layers. ``score`` then maps the config to kernel classes (a cached rule look-up
per (kind, precision)) and sums array entries: tens of microseconds for a ResNet-50.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from haq.config import FLOAT_BITS, BitConfig, Precision
from haq.cost.base import CostEstimate
from haq.cost.size_bops import SizeBopsModel
from haq.errors import HaqError
from haq.hardware.profile import GRANULARITIES, HardwareProfile
from haq.models.spec import LayerSpec

LOOKUP, LEARNED, ROOFLINE, UNKNOWN = 0, 1, 2, 3
SOURCE_NAMES = ("lookup", "learned", "roofline", "unknown")


class MatrixCostModel:
    """Scores configs from precomputed per-(layer, kernel class) costs; subclasses fill them."""

    name = "matrix"
    primary = LOOKUP  # the source the model's own name stands for

    def __init__(
        self,
        profile: HardwareProfile,
        layers: list[LayerSpec],
        threads: int | None = None,
        batch: int | None = None,
        granularity: str | None = "channel",
        weight_only_group: int | None = None,
        activations: str = "static",
        weight_only_zero_points: bool = False,
    ) -> None:
        if not layers:
            raise HaqError("the model has no Conv2d/Linear layers to cost")
        if granularity is not None and granularity not in GRANULARITIES:
            raise HaqError(
                f"granularity {granularity!r} is unknown; use one of {', '.join(GRANULARITIES)}"
            )
        self.profile = profile
        self.layers = list(layers)
        self.names = [s.name for s in layers]
        self.kinds = [s.kind for s in layers]
        self._name_set = set(self.names)
        self.granularity = granularity
        # weight-only layers group-wise, one float32 scale per this many weights (text
        # models' MatMulNBits); None: at ``granularity`` like the others
        self.weight_only_group = weight_only_group
        self.activations = activations  # static (calibrated) or dynamic grids: other kernels
        self.batch = profile.batch if batch is None else int(batch)
        if self.batch < 1:
            raise HaqError(f"batch must be at least 1, not {self.batch}")
        self.threads = profile.threads[0] if threads is None else int(threads)
        if self.threads not in profile.threads:
            raise HaqError(
                f"target {profile.id} has numbers for threads {', '.join(map(str, profile.threads))}, "
                f"not {self.threads}; pass one of those"
            )
        self.kernels = list(profile.kernels)
        self.kernel_index = {k: i for i, k in enumerate(self.kernels)}
        n, k = len(layers), len(self.kernels)
        self.latency_us = np.full((n, k), np.nan)
        self.energy_uj = np.full((n, k), np.nan)
        self.has_energy = False
        self.source = np.full((n, k), UNKNOWN, dtype=np.int8)
        self.trans_us = np.zeros((max(n - 1, 0), k, k))
        self.trans_uj = np.zeros((max(n - 1, 0), k, k))
        self.trans_known = np.ones((max(n - 1, 0), k, k), dtype=bool)
        self.has_transitions = False
        self._rows = np.arange(n)
        self._bounds = np.arange(max(n - 1, 0))
        self._kcache: dict[tuple[str, Precision], int] = {}
        self._labels: dict[tuple[int, ...], str] = {}
        self.size_bops = SizeBopsModel(self.layers, weight_only_group, weight_only_zero_points)

    # Which cells matter --------------------------------------------------------------------
    def reachable(self) -> list[tuple[int, int]]:
        """(layer, kernel class) cells some precision can select."""
        per_kind = {kind: self.profile.reachable_kernels(kind) for kind in set(self.kinds)}
        return [
            (i, self.kernel_index[k]) for i, kind in enumerate(self.kinds) for k in per_kind[kind]
        ]

    def unmeasured(self, kernels: set[str] | None = None) -> list[str]:
        """Layers with a reachable cell (of ``kernels``, default all) no table row answers."""
        return list(dict.fromkeys(
            self.names[i] for i, k in self.reachable()
            if self.source[i, k] != LOOKUP and (kernels is None or self.kernels[k] in kernels)
        ))  # fmt: skip

    def unmeasured_us(self, kernel: str) -> float:
        """Predicted µs of ``kernel``'s reachable cells no table row answers (learned model or
        roofline): how much of a uniform config's time is a guess."""
        return float(sum(
            self.latency_us[i, k] for i, k in self.reachable()
            if self.kernels[k] == kernel and self.source[i, k] != LOOKUP
            and not np.isnan(self.latency_us[i, k])
        ))  # fmt: skip

    # Config -> kernel classes ---------------------------------------------------------------
    def granularity_of(self, p: Precision) -> str | None:
        """The weight granularity a layer at ``p`` is deployed with."""
        if p.weight_only and self.weight_only_group is not None:
            return "group"
        return self.granularity

    def _resolve(self, kind: str, p: Precision) -> int:
        kernel = self.profile.kernel_for(kind, p, self.granularity_of(p), self.activations)
        idx = -1 if kernel is None else self.kernel_index[kernel]
        self._kcache[(kind, p)] = idx
        return idx

    def _precisions(self, config: BitConfig) -> list[Precision]:
        try:
            if len(config) and not self._name_set.issuperset(config):
                config.validate(self.names)
            return [config[n] for n in self.names]
        except KeyError:
            config.validate(self.names)
            raise

    def _kernels(self, precs: list[Precision]) -> np.ndarray:
        cache = self._kcache
        idx = [
            cache[(kind, p)] if (kind, p) in cache else self._resolve(kind, p)
            for kind, p in zip(self.kinds, precs, strict=True)
        ]
        ks = np.array(idx, dtype=np.intp)
        if (ks < 0).any():
            i = int(np.argmax(ks < 0))
            raise self.profile.unsupported_error(
                self.kinds[i], precs[i], self.names[i], self.granularity_of(precs[i]),
                self.activations,
            )  # fmt: skip
        return ks

    def check(self, config: BitConfig) -> None:
        """Raise a one-line `HaqError` if the target cannot run some layer's precision."""
        self._kernels(self._precisions(config))

    def kernels_of(self, config: BitConfig) -> list[str]:
        """The kernel class each layer runs under ``config`` (layer-table order)."""
        return [self.kernels[k] for k in self._kernels(self._precisions(config))]

    # Scoring --------------------------------------------------------------------------------
    def _label(self, counts: tuple[int, ...]) -> str:
        label = self._labels.get(counts)
        if label is None:
            parts = [self.name]
            for src, count in enumerate(counts):
                if count and src != self.primary:
                    parts.append(f"{SOURCE_NAMES[src]}({count} layer{'s' if count > 1 else ''})")
            label = self._labels[counts] = "+".join(parts)
        return label

    def total_us(self, ks: np.ndarray) -> float:
        """Latency (µs) of one kernel class per layer (indices into `kernels`): the layers'
        cells plus the boundaries between them; NaN where a cell is unknown."""
        trans_us = float(self.trans_us[self._bounds, ks[:-1], ks[1:]].sum()) if len(ks) > 1 else 0.0
        return float(self.latency_us[self._rows, ks].sum()) + trans_us

    def score(self, config: BitConfig) -> CostEstimate:
        precs = self._precisions(config)
        ks = self._kernels(precs)
        src = self.source[self._rows, ks]
        counts = tuple(np.bincount(src, minlength=4).tolist())
        latency_ms = None if counts[UNKNOWN] else self.total_us(ks) / 1000.0
        energy_mj = None
        if self.has_energy:
            e = self.energy_uj[self._rows, ks]
            if not np.isnan(e).any():
                trans_uj = (
                    float(self.trans_uj[self._bounds, ks[:-1], ks[1:]].sum())
                    if len(ks) > 1
                    else 0.0
                )
                energy_mj = (float(e.sum()) + trans_uj) / 1000.0
        w = np.array([p.w_bits or FLOAT_BITS for p in precs], dtype=np.int64)
        a = np.array([p.a_bits or FLOAT_BITS for p in precs], dtype=np.int64)
        sb = self.size_bops
        return CostEstimate(latency_ms, energy_mj, sb.size_bytes(w, a), int((sb.macs * w * a).sum()),
                            self._label(counts))  # fmt: skip

    def breakdown(self, config: BitConfig) -> dict[str, Any]:
        """Per-layer kernel, latency and source, and every kernel-class boundary's cost."""
        est = self.score(config)
        precs = self._precisions(config)
        ks = self._kernels(precs)
        layers = []
        for i, (name, kind, p, k) in enumerate(zip(self.names, self.kinds, precs, ks, strict=True)):
            lat = self.latency_us[i, k]
            layers.append({
                "name": name, "kind": kind, "precision": str(p), "kernel": self.kernels[k],
                "latency_us": None if np.isnan(lat) else float(lat),
                "energy_uj": None if np.isnan(self.energy_uj[i, k]) else float(self.energy_uj[i, k]),
                "source": SOURCE_NAMES[self.source[i, k]],
            })  # fmt: skip
        boundaries = []
        for i in range(len(ks) - 1):
            f, t = ks[i], ks[i + 1]
            if f != t:
                boundaries.append({
                    "after": self.names[i], "before": self.names[i + 1],
                    "from": self.kernels[f], "to": self.kernels[t],
                    "latency_us": float(self.trans_us[i, f, t]),
                    "costed": bool(self.has_transitions and self.trans_known[i, f, t]),
                })  # fmt: skip
        return {**est.to_dict(), "target": self.profile.id, "batch": self.batch,
                "threads": self.threads, "layers": layers, "boundaries": boundaries}  # fmt: skip
