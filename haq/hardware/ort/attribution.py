"""Attribution of one profiled ORT run: every executed node's time to a layer or a boundary.

`profile_nodes` runs an exported config with ORT's profiler; `Attributor` assigns each node
to the layer it belongs to or to the boundary in front of the first layer it feeds (the rules:
`haq.hardware.ort.aggregation`).
"""

from __future__ import annotations

import json
import math
import statistics
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from haq.runtime.ort import LayerMap, make_session, model_source, per_run_node_times

if TYPE_CHECKING:
    import onnx


# --------------------------------------------------------------------------- profiling


@dataclass
class NodeTimes:
    """Per-run kernel µs of every executed node of one profiled session."""

    runs: int
    times: dict[str, list[float]]  # node -> µs per run
    ops: dict[str, str]  # node -> op type (domain-tagged for NCHWc)
    optimized: Any  # onnx GraphProto ORT ran


def profile_nodes(data: bytes, threads: int, warmup: int, runs: int) -> NodeTimes:
    """Run ``data`` ``warmup + runs`` times with ORT's profiler; per-node µs of the last runs."""

    import onnx

    src, _ = model_source(data)
    with tempfile.TemporaryDirectory(prefix="haq-profile-") as tmp:
        opt = Path(tmp) / "optimized.onnx"
        sess = make_session(src, threads=threads, profile=True, optimized_model_path=opt,
                            profile_prefix=str(Path(tmp) / "profile"))  # fmt: skip
        feeds = {
            i.name: _input_like(i.shape, i.type) for i in sess.get_inputs()
        }  # values do not change the kernel time
        for _ in range(warmup + runs):
            sess.run(None, feeds)
        with open(sess.end_profiling()) as f:
            events = json.load(f)
        graph = onnx.load(str(opt), load_external_data=False).graph
    n_runs, times, info = per_run_node_times(events, runs)
    name_unnamed_nodes(graph, info)
    domains = {n.name: n.domain for n in graph.node}
    ops = {
        node: f"{meta['op_type'] or '?'}[nchwc]"
        if domains.get(node, "").endswith("nchwc")
        else (meta["op_type"] or "?")
        for node, meta in info.items()
    }
    return NodeTimes(n_runs, times, ops, graph)


def name_unnamed_nodes(graph: Any, info: dict[str, dict[str, Any]]) -> None:
    """Give the optimized graph's nameless nodes the names ORT's profile calls them.

    Nodes ORT makes itself (e.g. HardSwish inlined as HardSigmoid + Mul in a quantized graph)
    have no name in the saved graph and ``<op>_<internal index>`` in the profile, so no name
    matches and their time was lost to the tables (up to 12 % of mobilenet_v3's int8 run).
    The saved graph and the sequential executor share one topological order, so per op type
    the k-th nameless node in the graph is the k-th unknown profiled node in execution order;
    where the counts differ, the nodes stay unnamed (unmatched, as before)."""
    known = {n.name for n in graph.node if n.name}
    unnamed: dict[str, list[Any]] = {}
    for n in graph.node:
        if not n.name:
            unnamed.setdefault(n.op_type, []).append(n)
    profiled: dict[str, list[str]] = {}
    for node, meta in sorted(info.items(), key=lambda kv: kv[1]["order"]):
        if node not in known:
            profiled.setdefault(str(meta["op_type"]), []).append(node)
    for op, nodes in unnamed.items():
        names = profiled.get(op, [])
        if len(names) == len(nodes):
            for n, name in zip(nodes, names, strict=True):
                n.name = name


def _input_like(shape: Sequence[Any], ort_type: str) -> Any:
    import numpy as np

    dims = [d if isinstance(d, int) and d > 0 else 1 for d in shape]
    dtype = np.float32 if ort_type == "tensor(float)" else np.int64
    return np.random.default_rng(0).standard_normal(dims).astype(dtype)


class Attributor:
    """Assigns every executed node to a layer index or a boundary index (module docstring)."""

    def __init__(self, exported: onnx.ModelProto, optimized: Any, names: Sequence[str]) -> None:
        self.n = len(names)
        self.index = {n: i for i, n in enumerate(names)}
        self.layer_map = LayerMap(exported)
        self.nodes = {n.name: n for n in optimized.node}
        consts = {t.name for t in optimized.initializer}
        changed = True
        while changed:  # constant tensors: initializers and what only they feed
            changed = False
            for n in optimized.node:
                ins = [i for i in n.input if i]
                if ins and all(i in consts for i in ins) and not all(o in consts for o in n.output):
                    consts.update(o for o in n.output if o)
                    changed = True
        self.consts = consts
        self.consumers: dict[str, list[Any]] = {}
        for n in optimized.node:
            for i in n.input:
                if i:
                    self.consumers.setdefault(i, []).append(n)
        self.layer_of: dict[str, int] = {}
        for n in optimized.node:
            m = self.layer_map.match(n.name, n.op_type, list(n.input), list(n.output))
            if m.layer is not None and m.layer in self.index:
                self.layer_of[n.name] = self.index[m.layer]
        self._memo: dict[str, int | None] = {}

    def _first_layer(self, tensor: str, depth: int = 0) -> int | None:
        """Smallest layer index reached downstream of ``tensor`` (through non-layer nodes)."""
        if tensor in self._memo:
            return self._memo[tensor]
        best: int | None = None
        if depth < 200:
            for c in self.consumers.get(tensor, []):
                if c.name in self.layer_of:
                    cand: int | None = self.layer_of[c.name]
                else:
                    found = [self._first_layer(o, depth + 1) for o in c.output if o]
                    cand = min((f for f in found if f is not None), default=None)
                if cand is not None and (best is None or cand < best):
                    best = cand
        self._memo[tensor] = best
        return best

    def assign(self, node: str) -> tuple[str, int] | None:
        """``("layer", i)``, ``("boundary", j)``, or None (not in the optimized graph)."""
        if node in self.layer_of:
            return "layer", self.layer_of[node]
        proto = self.nodes.get(node)
        if proto is None:
            return None
        downstream = [self._first_layer(o) for o in proto.output if o]
        first = min((d for d in downstream if d is not None), default=None)
        ins = [i for i in proto.input if i]
        if ins and all(i in self.consts for i in ins) and first is not None:
            return "layer", first  # per-run weight processing (dequantize) of that layer
        return "boundary", self.n if first is None else first


def median_p10_p90(values: Sequence[float]) -> tuple[float, float, float]:
    """(median, p10, p90) with linear interpolation."""
    xs = sorted(values)
    if not xs:
        return 0.0, 0.0, 0.0

    def q(p: float) -> float:
        pos = (len(xs) - 1) * p
        lo = math.floor(pos)
        hi = min(lo + 1, len(xs) - 1)
        return xs[lo] + (xs[hi] - xs[lo]) * (pos - lo)

    return statistics.median(xs), q(0.1), q(0.9)
