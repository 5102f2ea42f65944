"""Latency tables derived from profiling observations (layers, transitions, glue) and their files.

The latency model the tables implement, for a config giving layer ``l`` kernel class ``k_l``
(layers in execution order ``0..n-1``; `haq.cost.LookupCostModel` computes the sums, the third
only for a model the target profiled)::

    latency = sum_l  L[signature_l, k_l]                                      (layers.csv)
            + sum_{j: k_{j-1} != k_j}  T[k_{j-1} -> k_j, channels_j, h_j, w_j]  (transitions.csv)
            + sum_{j=0..n}  G[model, j, k_{j-1}, k_j]                          (glue.csv)

Boundary ``j`` is the gap in front of layer ``j`` in execution order; its tensor is the input
of layer ``j`` (`boundary_keys`; ``j = 0`` is the model input, ``j = n`` the output).

Attribution of one profiled run (every executed node lands in exactly one bucket):

- a layer's nodes (`haq.runtime.ort.LayerMap`: the Conv/Gemm with what ORT fused into it) and
  the nodes that only process its constant weights on every run (the weight DequantizeLinear
  of ``int8-weights`` / ``qdq16``) -> the layer's *kernel time*;
- every other node (Quantize/Dequantize, Transpose, NCHWc Reorder, and the model ops Add, ReLU,
  pooling, reshape) -> the boundary in front of the first layer (execution order) it feeds;
  nodes that feed no layer -> the output boundary. Model ops are boundary costs, not a fixed
  per-model term, because whether they run at all depends on the neighbouring kernels: an
  fp32 NCHWc conv absorbs the residual Add and ReLU, next to an int8 conv they run on their own.

All node times of a run are scaled by ``wall median / profiled total`` (the profiler's own
overhead, up to 2.5x on tiny models, and drift between the two sessions), so the buckets of a
measured config sum to its wall time (``scale`` column; `aggregate(scaled=False)` gives the
unscaled variant); node time the attribution could not place (``unmatched_us``, e.g. nameless
nodes before `haq.hardware.ort.attribution.name_unnamed_nodes`) is spread over the buckets in
proportion, so they still sum to it.

Layer rows (``latency_us``) = kernel time + the boundary in front of the layer when its
predecessor has the same class (``entry_us``: what ORT runs around a layer among its own kind,
from the uniform config; the model input for layer 0) + the output boundary for the last
layer (``exit_us``). So a uniform config is the plain sum of its layer rows, and same-class
boundaries need no transition rows (as `haq.hardware.tables` documents transitions: the extra
time of a boundary whose classes differ).

Transition rows come from *alternating* configs (even layers ``a``, odd layers ``b``, and the
reverse), which hold every boundary position in both directions: boundary time + the change of
the layer's own kernel time against the uniform config (``delta_us``: a layer runs slower right
after a precision change, e.g. int8 convs +5-17% on ResNet-18) - the ``entry_us`` its layer row
already charges; the mean over all observed boundaries with the key (``n``, ``models``),
floored at 0 (``raw_us`` keeps the mean). Rows are also keyed by the elements pooled away in
front of the layer (``reduced_elements``, `haq.models.spec.reduced_in_front`): a class change
in front of a squeeze-excite block's first conv converts the tensor before its pool, which
the 1x1 shape cannot show.

Glue (glue.csv, per model): what the shared, shape-keyed tables cannot know about one
model's graph, per boundary position ``j`` and class pair ``(k_{j-1}, k_j)`` (the
"kernel-class pattern" at that boundary): measured (layer ``j`` kernel time + boundary ``j``)
minus what the shared tables charge there, from the uniform (same-class pairs) and
alternating (different-class pairs) configs; ``j = n`` holds the output boundary. It carries
e.g. ORT's uint8 MaxPool in NCHW when an fp32 stem conv feeds an int8 conv (+4 ms on
ResNet-18: the shape-keyed ``fp32 -> int8`` row averages it over every 64x56x56 boundary),
rows measured in another model (the first model to measure a signature wins, with the mean of
its same-signature layers), and transition rows floored at 0. Summed along a config (by
`haq.cost.LookupCostModel`, which recognises a profiled model by ``layer_map.csv``), a uniform
config of a profiled model comes out at its measured wall time (alternating ones too, but for
their input and output positions, taken from the uniform configs); a pair never observed at a
position adds 0; unprofiled models have no glue and get the shared tables alone.

The observations and the tables derived from them are read and written by
`haq.hardware.ort.files`.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from haq.errors import HaqError
from haq.hardware.ort.target import (
    GLUE_KEY,
    LAYER_KEY,
    MATMULNBITS_CLASSES,
    TARGET,
    TRANSITION_FALLBACK,
    TRANSITION_KEY,
    boundary_keys,
)
from haq.hardware.tables import INPUT, OUTPUT, SIGNATURE_COLUMNS, signature

if TYPE_CHECKING:
    import pandas as pd

    from haq.models.spec import LayerSpec


def spec_row(s: LayerSpec) -> list[Any]:
    return [s.kind, s.in_channels, s.out_channels, *s.kernel, *s.stride, s.groups, *s.in_hw,
            *s.out_hw, s.macs, s.params, s.act]  # fmt: skip


def spec_signature(row: Sequence[Any], batch: int) -> dict[str, Any]:
    return dict(zip(SIGNATURE_COLUMNS, [*row[:12], batch], strict=True))


# --------------------------------------------------------------------------- aggregation


@dataclass
class Tables:
    layers: pd.DataFrame
    transitions: pd.DataFrame
    glue: pd.DataFrame


def uniform_class(config: str) -> str | None:
    return config.removeprefix("uniform:") if config.startswith("uniform:") else None


def _is_mnb(config: str) -> bool:
    """MatMulNBits configs (``fp32+matmulnbits4``): only their Linear layers are new."""
    return "+matmulnbits" in config


def aggregate(
    observations: Sequence[dict[str, Any]],
    *,
    scaled: bool = True,
    with_delta: bool = True,
    wall_stat: str = "median",
) -> Tables:
    """Derive the three tables from raw observations (see the module docstring).

    Variants for validation: ``scaled=False`` keeps the profiler's node times as measured;
    ``with_delta=False`` leaves the in-context kernel-time change out of transition rows;
    ``wall_stat="p10"`` scales to the fastest 10th-percentile wall time instead of the fastest
    median (less sensitive to other processes on a shared machine).
    """
    if wall_stat not in ("median", "p10"):
        raise HaqError(f"wall_stat must be 'median' or 'p10', not {wall_stat!r}")

    def scale_of(ob: dict[str, Any]) -> float:
        if not scaled:
            return 1.0
        # node time no bucket holds (``unmatched_us``: nodes the attribution could not place)
        # is spread over the others, so the buckets still sum to the wall
        total = float(ob["profiled_total_us"]) or 1.0
        placed = total / max(total - float(ob.get("unmatched_us", 0.0)), 1e-9)
        if wall_stat == "median":
            return float(ob["scale"]) * placed
        return min(w["p10_us"] for w in ob["walls"]) / total * placed

    import pandas as pd

    # In-graph kernel time of each layer in the uniform config of its class (Δ reference).
    ref: dict[tuple[Any, ...], float] = {}
    for ob in observations:
        if uniform_class(ob["config"]) is not None:
            s = scale_of(ob)
            for idx, _, k, med, *_ in ob["layers"]:
                ref[(ob["model"], ob["threads"], ob["batch"], k, idx)] = med * s
    # Layers: kernel + same-class entry (+ exit after the last layer), from uniform configs
    # and MatMulNBits' own; same-signature layers of one job averaged; the first job wins.
    layer_rows: dict[tuple[Any, ...], dict[str, Any]] = {}
    for ob in observations:
        s = scale_of(ob)
        if ob["config"].startswith("alt:"):
            continue
        kernels, n = ob["kernels"], len(ob["kernels"])
        bound = {b[0]: b[1] * s for b in ob["boundaries"]}
        groups: dict[tuple[Any, ...], list[tuple[float, float, float, float, float, str]]] = {}
        for idx, _, k, med, p10, p90, ops in ob["layers"]:
            if _is_mnb(ob["config"]) and k not in MATMULNBITS_CLASSES:
                continue
            prev = INPUT if idx == 0 else kernels[idx - 1]
            entry = bound.get(idx, 0.0) if prev in (INPUT, k) else 0.0
            exit_ = bound.get(n, 0.0) if idx == n - 1 else 0.0
            sig = spec_signature(ob["specs"][idx], ob["batch"])
            groups.setdefault((*sig.values(), k, ob["threads"]), []).append(
                (med * s, p10 * s, p90 * s, entry, exit_, ops)
            )
        for key, items in groups.items():
            if key in layer_rows:
                continue
            kern, p10, p90, entry, exit_ = (statistics.fmean(i[j] for i in items) for j in range(5))
            layer_rows[key] = {
                **dict(zip(SIGNATURE_COLUMNS, key[: len(SIGNATURE_COLUMNS)], strict=True)),
                "precision": key[-2],
                "kernel": items[0][5] or "?",
                "latency_us": round(kern + entry + exit_, 2),
                "p10_us": round(p10 + entry + exit_, 2),
                "p90_us": round(p90 + entry + exit_, 2),
                "runs": ob["profile_runs"],
                "threads": ob["threads"],
                "kernel_us": round(kern, 2),
                "entry_us": round(entry, 2),
                "exit_us": round(exit_, 2),
                "scale": round(s, 5),
                "n_layers": len(items),
                "model": ob["model"],
                "config": ob["config"],
            }
    layers = pd.DataFrame(list(layer_rows.values()))
    entry_of = {k: v["entry_us"] for k, v in layer_rows.items()}
    # Transitions: boundaries between different classes, minus the entry the layer row holds.
    obs_t: dict[tuple[Any, ...], list[tuple[float, float, float, str]]] = {}
    for ob in observations:
        if uniform_class(ob["config"]) is not None:
            continue
        s = scale_of(ob)
        specs = [_SpecView(r) for r in ob["specs"]]
        keys = boundary_keys(specs, ob["kernels"], ob["batch"], ob["threads"])
        for (j, med, *_), key in zip(ob["boundaries"], keys, strict=True):
            src, dst = key[0], key[1]
            if src in (dst, INPUT) or dst == OUTPUT:
                continue  # folded into the layer rows
            if (
                _is_mnb(ob["config"])
                and dst not in MATMULNBITS_CLASSES
                and src not in MATMULNBITS_CLASSES
            ):
                continue
            delta = 0.0
            if with_delta and ob["config"].startswith("alt:"):
                r = ref.get((ob["model"], ob["threads"], ob["batch"], dst, j))
                if r is not None:
                    delta = ob["layers"][j][3] * s - r
            sig = spec_signature(ob["specs"][j], ob["batch"])
            entry = entry_of.get((*sig.values(), dst, ob["threads"]), 0.0)
            obs_t.setdefault(key, []).append((med * s, delta, entry, ob["model"]))
    t_rows = []
    for key, vals in obs_t.items():
        raw = statistics.fmean(v[0] + v[1] - v[2] for v in vals)
        t_rows.append({
            **dict(zip(TRANSITION_KEY, key, strict=True)),
            "latency_us": round(max(raw, 0.0), 2),
            "raw_us": round(raw, 2),
            "nodes_us": round(statistics.fmean(v[0] for v in vals), 2),
            "delta_us": round(statistics.fmean(v[1] for v in vals), 2),
            "entry_us": round(statistics.fmean(v[2] for v in vals), 2),
            "n": len(vals),
            "models": ";".join(sorted({v[3] for v in vals})),
        })  # fmt: skip
    transitions = pd.DataFrame(t_rows, columns=[*TRANSITION_KEY, "latency_us", "raw_us",
                                                "nodes_us", "delta_us", "entry_us", "n",
                                                "models"])  # fmt: skip
    # Glue: per model and boundary position, measured (layer kernel + boundary in front of it)
    # minus what the shared tables charge there, for each observed (from, to) class pair.
    lookup = _Lookup(layers, transitions)
    obs_g: dict[tuple[Any, ...], list[float]] = {}
    names: dict[tuple[str, int], str] = {}
    for ob in observations:
        s = scale_of(ob)
        specs = [_SpecView(r) for r in ob["specs"]]
        kernels, n = ob["kernels"], len(ob["kernels"])
        keys = boundary_keys(specs, kernels, ob["batch"], ob["threads"])
        mnb, alt = _is_mnb(ob["config"]), ob["config"].startswith("alt:")
        for j, key in enumerate(keys):
            if mnb and key[0] not in MATMULNBITS_CLASSES and key[1] not in MATMULNBITS_CLASSES:
                continue
            if alt and (key[0] in (key[1], INPUT) or key[1] == OUTPUT):
                continue  # the input/output positions come from the uniform configs
            measured = ob["boundaries"][j][1] * s
            table = 0.0
            if j < n:
                measured += ob["layers"][j][3] * s
                try:
                    table = lookup.layer(specs[j], kernels[j], ob["threads"], ob["batch"])
                except HaqError:  # no row (its uniform config is being re-measured)
                    continue
                if j > 0 and key[0] != key[1]:
                    table += lookup.transition(key)
            names[(ob["model"], j)] = ob["layers"][j][1] if j < n else OUTPUT
            gkey = (ob["model"], ob["threads"], ob["batch"], j, key[0], key[1])
            obs_g.setdefault(gkey, []).append(measured - table)
    g_rows = [
        {**dict(zip(GLUE_KEY, key, strict=True)), "layer": names[(key[0], key[3])],
         "latency_us": round(statistics.fmean(v), 2), "n": len(v)}
        for key, v in obs_g.items()
    ]  # fmt: skip
    glue = pd.DataFrame(g_rows, columns=[*GLUE_KEY, "layer", "latency_us", "n"])
    return Tables(sorted_rows(layers, LAYER_KEY), sorted_rows(transitions, TRANSITION_KEY),
                  sorted_rows(glue, GLUE_KEY))  # fmt: skip


def sorted_rows(frame: pd.DataFrame, key: list[str]) -> pd.DataFrame:
    if frame.empty:
        return frame
    return frame.sort_values(key, kind="stable").reset_index(drop=True)


class _SpecView:
    """The LayerSpec fields `boundaries` and `signature` read, from a stored spec row."""

    def __init__(self, row: Sequence[Any]) -> None:
        self.kind = row[0]
        self.in_channels, self.out_channels = row[1], row[2]
        self.kernel, self.stride, self.groups = (row[3], row[4]), (row[5], row[6]), row[7]
        self.in_hw, self.out_hw = (row[8], row[9]), (row[10], row[11])


# --------------------------------------------------------------------------- prediction


class _Lookup:
    """Exact-key look-ups of layer and transition rows (to derive the glue)."""

    def __init__(self, layers: pd.DataFrame, transitions: pd.DataFrame) -> None:
        self.layers: dict[tuple[Any, ...], float] = {}
        if not layers.empty:
            for r in layers.to_dict("records"):
                self.layers[tuple(r[c] for c in LAYER_KEY)] = float(r["latency_us"])
        self.transitions: dict[tuple[Any, ...], float] = {}
        if not transitions.empty:
            for r in transitions.to_dict("records"):
                self.transitions[tuple(r[c] for c in TRANSITION_KEY)] = float(r["latency_us"])

    def layer(self, spec: Any, cls: str, threads: int, batch: int) -> float:
        key = (*signature(spec, batch).values(), cls, threads)
        if key not in self.layers:
            raise HaqError(
                f"{TARGET} has no {cls} row for {spec.kind} {spec.in_channels}->"
                f"{spec.out_channels} k{spec.kernel[0]} s{spec.stride[0]} at "
                f"{spec.in_hw[0]}x{spec.in_hw[1]}, {threads} thread(s); measure the model with "
                f"`haq profile --target {TARGET} --model <name> --threads {threads}`"
            )
        return self.layers[key]

    def transition(self, key: tuple[Any, ...]) -> float:
        if key[0] == key[1]:
            return 0.0
        if key in self.transitions:
            return self.transitions[key]
        alt = (TRANSITION_FALLBACK.get(key[0], key[0]), TRANSITION_FALLBACK.get(key[1], key[1]),
               *key[2:])  # fmt: skip
        return self.transitions.get(alt, 0.0)
