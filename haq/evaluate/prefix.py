"""Evaluating many configs on the same tensors, computing shared prefixes of activations once.

Configs that agree on their first layers compute identical activations up to the first layer
where they differ. `PrefixRunner` traces the folded float model once with torch.fx, cuts the
graph where exactly one value is live, and caches each segment's output (every batch of the
evaluation tensor) under the part of the config that output depends on. A new config resumes
from the deepest cached segment it shares, so a search re-runs only the suffix it changed.

Logits are bit-identical to ``predict(quantizer.apply(config), x, batch_size)``: the applied
model's own modules (and their hooks) run on the same batches, in the same order; only the
Python that glues them together is replayed from the graph. Anything the replay could get wrong
(a model fx cannot trace, hooks it does not know) makes `build` return None or `logits` return
None, and the caller takes the plain path.
"""

from __future__ import annotations

import bisect
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.fx as fx
from torch import nn
from torch.nn.modules import module as nn_module

from haq.config import BitConfig, Precision
from haq.errors import HaqError
from haq.evaluate.activation_cache import ActivationCache, Entry, Key, cache_budget_bytes
from haq.quant import Quantizer
from haq.quant.modules import _GRID, quantize_output_hook

log = logging.getLogger(__name__)

_Hook = Callable[..., Any]


class _Unsupported(Exception):
    """The replay cannot promise the plain path's numbers; use the plain path."""


@dataclass(frozen=True)
class _Call:
    """One module call seen while tracing (inner calls are recorded before outer ones)."""

    path: str
    node: fx.Node | None  # the node producing the call's output; None: not a single proxy
    leaf: bool
    first: int  # graph index of the first node created during the call
    last: int  # graph index of the last node created during the call (first - 1: none)


class _RecordingTracer(fx.Tracer):
    """An fx tracer that records, for every module call, the node that produces its output.

    Quantizable layers and absorbed ReLUs are forced to be leaves, so the applied model's
    replacements (QuantConv2d, Identity) are what the replay calls.
    """

    def __init__(self, leaves: set[str]) -> None:
        super().__init__()
        self.forced_leaves = leaves
        self.raw_calls: list[tuple[str, fx.Node | None, bool, fx.Node | None, fx.Node | None]]
        self.raw_calls = []

    def is_leaf_module(self, m: nn.Module, module_qualified_name: str) -> bool:
        name = module_qualified_name
        if name in self.forced_leaves:
            return True
        if any(leaf.startswith(name + ".") for leaf in self.forced_leaves):
            return False  # e.g. a torch.nn container holding quantizable layers: trace into it
        return super().is_leaf_module(m, name)

    def _last_node(self) -> fx.Node | None:
        return next(reversed(self.graph.nodes), None)

    def call_module(
        self,
        m: nn.Module,
        forward: Callable[..., Any],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
    ) -> Any:
        path = self.path_of_module(m)
        before = self._last_node()
        out = super().call_module(m, forward, args, kwargs)
        node = out.node if isinstance(out, fx.Proxy) else None
        leaf = self.is_leaf_module(m, path)
        self.raw_calls.append((path, node, leaf, before, self._last_node()))
        return out


@dataclass
class _Segment:
    start: int  # first step position
    stop: int  # one past the last step position
    out: fx.Node | None  # the single value live at ``stop``; None for the last segment
    deps: tuple[str, ...]  # the layers whose precision this segment's output depends on
    bytes_per_sample: float  # estimated size of ``out`` per image (from the probe run)
    out_mutated: bool  # later ops modify ``out`` in place: reuse it through a private copy


@dataclass
class _Context:
    """What one applied model contributes to the replay."""

    modules: dict[str, nn.Module]
    root: nn.Module
    hooks: dict[str, tuple[nn.Module, list[_Hook]]]
    attrs: dict[str, Any] = field(default_factory=dict)


@dataclass
class PrefixStats:
    """Work counters (segment passes over the whole data tensor)."""

    evaluations: int = 0
    segments_run: int = 0
    segments_reused: int = 0
    full_hits: int = 0
    fallbacks: int = 0
    seconds: float = 0.0


def _is_output_hook(hook: _Hook) -> bool:
    """Whether ``hook`` is one of haq's output-quantizing hooks (they ignore their inputs)."""
    return getattr(hook, "__qualname__", "").startswith(quantize_output_hook.__qualname__ + ".")


def _clone(t: Any) -> torch.Tensor:
    """A private copy of a cut value (the next segment may modify it in place), grid tag kept."""
    if not isinstance(t, torch.Tensor):
        raise _Unsupported(f"cut value is a {type(t).__name__}, not a tensor")
    c = t.clone()
    if c.stride() != t.stride():
        raise _Unsupported("a clone of a cut value has other strides")
    tag = getattr(t, _GRID, None)
    if tag is not None and not t.is_inference() and tag[-1] == t._version:
        setattr(c, _GRID, (*tag[:-1], c._version))
    return c


def _version(v: Any) -> int:
    return v._version if isinstance(v, torch.Tensor) and not v.is_inference() else -1


class PrefixRunner:
    """Logits of configs on one data tensor, reusing cached prefixes of activations.

    Build with `PrefixRunner.build` (None where the model cannot be replayed exactly).
    """

    def __init__(
        self,
        quantizer: Quantizer,
        x: torch.Tensor,
        batch_size: int,
        cache_bytes: int,
        graph: fx.Graph,
        calls: list[_Call],
    ) -> None:
        self.quantizer = quantizer
        self.x = x
        self.batch_size = batch_size
        self.stats = PrefixStats()
        self._cache = ActivationCache(cache_bytes)
        self._made_with: tuple[object, object] = (quantizer.calibration, quantizer.settings)
        self._graph = graph
        self._prepare(calls)

    # Construction -------------------------------------------------------------------------
    @classmethod
    def build(
        cls,
        quantizer: Quantizer,
        x: torch.Tensor,
        batch_size: int = 256,
        cache_bytes: int | None = None,
    ) -> PrefixRunner | None:
        """A runner for ``quantizer`` on ``x``, or None if its model cannot be replayed exactly."""
        budget = cache_budget_bytes() if cache_bytes is None else cache_bytes
        if x.shape[0] == 0:
            return None
        try:
            graph, calls = _trace(quantizer)
            return cls(quantizer, x, batch_size, budget, graph, calls)
        except Exception as exc:  # fx raises many kinds; any of them means "use the plain path"
            log.debug("prefix reuse off for this model: %s: %s", type(exc).__name__, exc)
            return None

    def _prepare(self, calls: list[_Call]) -> None:
        q = self.quantizer
        nodes = list(self._graph.nodes)
        index = {n: i for i, n in enumerate(nodes)}
        placeholders = [n for n in nodes if n.op == "placeholder"]
        if not placeholders:
            raise _Unsupported("the traced graph has no input")
        self._input = placeholders[0]
        self._consts: dict[fx.Node, Any] = {}
        for p in placeholders[1:]:
            if not p.args:
                raise _Unsupported(f"forward argument {p.target} has no default")
            self._consts[p] = p.args[0]
        steps = [n for n in nodes if n.op not in ("get_attr", "placeholder") or n is self._input]
        self._steps = steps
        pos = {n: i for i, n in enumerate(steps)}
        step_index = [index[n] for n in steps]
        if steps[-1].op != "output":
            raise _Unsupported("the graph does not end in its output")

        # module calls: which containers' hooks the replay must run, and where
        leaf_calls: dict[str, list[int]] = {}
        self._containers: set[str] = {""}
        self._hooked: set[str] = set()  # containers whose hooks the replay can run
        hooks_before: dict[int, list[_Call]] = {}
        hook_pos: dict[str, int] = {}  # module path -> step position its output hook runs at
        for c in calls:
            if c.node is None or c.node.op == "get_attr":
                if not c.leaf:
                    self._containers.add(c.path)
                continue
            if c.leaf:
                if c.node.op != "call_module":
                    raise _Unsupported(f"leaf {c.path} is not a module call")
                leaf_calls.setdefault(c.path, []).append(pos[c.node])
                hook_pos.setdefault(c.path, pos[c.node])
                continue
            self._containers.add(c.path)
            if index[c.node] < c.first:
                continue  # returns a value made outside it: its hooks cannot be replayed
            p = bisect.bisect_right(step_index, c.last)
            hooks_before.setdefault(p, []).append(c)
            hook_pos.setdefault(c.path, p)
            self._hooked.add(c.path)
        self._hooks_before = hooks_before
        replaced = set(q.layer_names) | set(q._absorbed_relu.values())
        for n in nodes:
            if n.op == "get_attr" and any(
                n.target == m or str(n.target).startswith(m + ".") for m in replaced
            ):
                raise _Unsupported(f"{n.target} is read directly, not through its module")
        for name in q.layer_names:
            if name not in leaf_calls:
                raise _Unsupported(f"layer {name} is not called as a module")
        for relu in q._absorbed_relu.values():
            if relu not in leaf_calls:
                raise _Unsupported(f"ReLU {relu} is not called as a module")
        for producer in set(q._producer.values()):
            if producer not in hook_pos:
                raise _Unsupported(f"the output of {producer} cannot be hooked in the replay")
        all_paths = list(q.base.named_modules(remove_duplicate=False))
        if len(all_paths) != len(list(q.base.named_modules())):
            raise _Unsupported("a module is registered under two names")
        for path in self._containers:
            m = q.base.get_submodule(path)
            if m._forward_hooks or m._forward_pre_hooks:
                raise _Unsupported(f"container {path or 'root'} has hooks of its own")
        self._module_targets = sorted({str(n.target) for n in steps if n.op == "call_module"})

        # liveness: a value dies after its last reader
        last_use = [0] * len(steps)
        for i, n in enumerate(steps):
            users = [pos[u] for u in n.users if u in pos]
            last_use[i] = max(users, default=i)
        self._free_after: dict[int, list[fx.Node]] = {}
        for i, n in enumerate(steps):
            self._free_after.setdefault(last_use[i], []).append(n)

        probe = self._probe()
        cuts = self._cuts(last_use, probe)
        quant_pos = {p for name in q.layer_names for p in leaf_calls[name]}
        self.segments = self._segments(cuts, quant_pos, leaf_calls, hook_pos, probe)

    def _probe(self) -> dict[fx.Node, tuple[Any, int]]:
        """Replay the float model on two images: it must match eager exactly. Returns every
        value with the version counter it had when made (-1: not a tensor)."""
        base = self.quantizer.base
        sample = self.x[:2]
        self._probe_batch = sample.shape[0]
        ctx = self._context(base)
        values: dict[fx.Node, tuple[Any, int]] = {}
        with torch.no_grad():
            env = {self._input: sample.clone()}
            out = self._execute(0, len(self._steps), env, ctx, values)
            expected = base(sample.clone())
        if not (isinstance(out, torch.Tensor) and isinstance(expected, torch.Tensor)):
            raise _Unsupported("the model does not return a tensor")
        if not torch.equal(out, expected):
            raise _Unsupported("the replayed graph does not reproduce the model")
        return values

    def _cuts(
        self, last_use: list[int], probe: dict[fx.Node, tuple[Any, int]]
    ) -> dict[int, fx.Node]:
        """Step positions before which exactly one value (a tensor that clones exactly) lives."""
        cuts: dict[int, fx.Node] = {}
        live: set[fx.Node] = set()
        dying: dict[int, list[fx.Node]] = {}
        for c in range(1, len(self._steps)):
            n = self._steps[c - 1]
            if last_use[c - 1] >= c:
                live.add(n)
                dying.setdefault(last_use[c - 1], []).append(n)
            for d in dying.pop(c - 1, []):
                live.discard(d)
            if len(live) == 1:
                (node,) = live
                v = probe[node][0] if node in probe else None
                if isinstance(v, torch.Tensor) and v.clone().stride() == v.stride():
                    cuts[c] = node
        return cuts

    def _segments(
        self,
        cuts: dict[int, fx.Node],
        quant_pos: set[int],
        leaf_calls: dict[str, list[int]],
        hook_pos: dict[str, int],
        probe: dict[fx.Node, tuple[Any, int]],
    ) -> list[_Segment]:
        """Segments of at least one quantizable layer each.

        Between two quantizable layers the cut goes where the prefix depends on the fewest
        layers, and there preferably at a value no later op modifies (it need not be copied).
        """
        q = self.quantizer
        first_pos: dict[str, int] = {}
        for name in q.layer_names:
            # a layer's precision matters where it runs, where the hook of the module producing
            # its input runs (that grid depends on all its readers), and where its absorbed
            # ReLU runs (replaced by an Identity or not)
            where = list(leaf_calls[name])
            producer = q._producer.get(name)
            if producer is not None:
                where.append(hook_pos[producer])
            relu = q._absorbed_relu.get(name)
            if relu is not None:
                where += leaf_calls[relu]
            first_pos[name] = min(where)

        def mutated(c: int) -> bool:
            value, version = probe[cuts[c]]
            return value._version != version

        def n_deps(c: int) -> int:
            return sum(p < c for p in first_pos.values())

        bounds = [0]
        qpos = sorted(quant_pos)
        for j, p in enumerate(qpos[:-1]):  # no cut after the last one: the tail joins it
            if p < bounds[-1]:
                continue
            gap = [c for c in sorted(cuts) if p < c <= qpos[j + 1]]
            if gap:
                fewest = [c for c in gap if n_deps(c) == n_deps(gap[0])]
                bounds.append(next((c for c in fewest if not mutated(c)), fewest[0]))
        bounds.append(len(self._steps))

        order = {name: i for i, name in enumerate(q.layer_names)}
        segments = []
        for k in range(len(bounds) - 1):
            start, stop = bounds[k], bounds[k + 1]
            deps = tuple(sorted((n for n, p in first_pos.items() if p < stop), key=order.get))
            out = cuts.get(stop)
            value, version = probe.get(out if out is not None else self._steps[-1], (None, -1))
            per_sample, out_mutated = 0.0, True
            if isinstance(value, torch.Tensor):
                per_sample = value.untyped_storage().nbytes() / self._probe_batch
                # the replayed model can only modify less in place than the float one: its
                # replacements (quantized layers, Identity for ReLU, output hooks) never do
                out_mutated = value._version != version
            segments.append(_Segment(start, stop, out, deps, per_sample, out_mutated))
        return segments

    # Replay -------------------------------------------------------------------------------
    def _context(self, model: nn.Module) -> _Context:
        """Modules and container hooks of ``model``; raises `_Unsupported` for hooks it cannot
        replay (anything but haq's output hooks, on containers whose output is its own)."""
        if nn_module._global_forward_hooks or nn_module._global_forward_pre_hooks:
            raise _Unsupported("global module hooks are installed")
        hooks: dict[str, tuple[nn.Module, list[_Hook]]] = {}
        for path in self._containers:
            m = model.get_submodule(path)
            if m._forward_pre_hooks or m._forward_hooks_with_kwargs:
                raise _Unsupported(f"{path or 'root'} has hooks the replay cannot run")
            if not m._forward_hooks:
                continue
            hs = list(m._forward_hooks.values())
            if path not in self._hooked or not all(_is_output_hook(h) for h in hs):
                raise _Unsupported(f"{path or 'root'} has hooks the replay cannot run")
            hooks[path] = (m, hs)
        modules = {t: model.get_submodule(t) for t in self._module_targets}
        return _Context(modules, model, hooks)

    def _attr(self, ctx: _Context, target: str) -> Any:
        if target not in ctx.attrs:
            obj: Any = ctx.root
            for part in target.split("."):
                obj = getattr(obj, part)
            ctx.attrs[target] = obj
        return ctx.attrs[target]

    def _execute(
        self,
        start: int,
        stop: int,
        env: dict[fx.Node, Any],
        ctx: _Context,
        record: dict[fx.Node, tuple[Any, int]] | None = None,
    ) -> Any:
        """Run steps ``start``..``stop`` as fx.Interpreter would, against ``ctx``'s modules,
        container output hooks included. Returns the graph's output if the range reaches it
        (else None: the values are in ``env``)."""

        def load(n: fx.Node) -> Any:
            if n in env:
                return env[n]
            if n in self._consts:
                return self._consts[n]
            if n.op == "get_attr":
                return self._attr(ctx, str(n.target))
            raise _Unsupported(f"value {n.name} is not available")

        for p in range(start, stop):
            for call in self._hooks_before.get(p, ()):
                entry = ctx.hooks.get(call.path)
                if entry is not None and call.node in env:
                    module, hs = entry
                    for h in hs:
                        r = h(module, (), env[call.node])
                        if r is not None:
                            env[call.node] = r
            n = self._steps[p]
            if n.op == "placeholder":
                pass  # bound by the caller
            elif n.op == "output":
                result = fx.node.map_arg(n.args[0], load)
                if record is not None:
                    record[n] = (result, _version(result))
                return result
            else:
                args = fx.node.map_arg(n.args, load)
                kwargs = fx.node.map_arg(n.kwargs, load)
                if n.op == "call_module":
                    value = ctx.modules[str(n.target)](*args, **kwargs)
                elif n.op == "call_function":
                    value = n.target(*args, **kwargs)  # type: ignore[operator]
                elif n.op == "call_method":
                    self_obj, *rest = args
                    value = getattr(self_obj, str(n.target))(*rest, **kwargs)
                else:
                    raise _Unsupported(f"unknown node kind {n.op}")
                env[n] = value
                if record is not None:
                    record[n] = (value, _version(value))
            for dead in self._free_after.get(p, ()):
                env.pop(dead, None)
        return None

    def _run_segment(self, k: int, value: Any, ctx: _Context) -> Any:
        seg = self.segments[k]
        start_node = self._input if k == 0 else self.segments[k - 1].out
        assert start_node is not None
        env: dict[fx.Node, Any] = {start_node: value}
        out = self._execute(seg.start, seg.stop, env, ctx)
        if seg.out is None:
            return out
        if seg.out not in env:
            raise _Unsupported(f"segment {k} lost its output")
        return env[seg.out]

    # Public -------------------------------------------------------------------------------
    def keys(self, config: BitConfig) -> list[tuple[int, tuple[Precision, ...]]]:
        """The cache key of every segment's output under ``config`` (a resolved config)."""
        return [(k, tuple(config[n] for n in seg.deps)) for k, seg in enumerate(self.segments)]

    @property
    def cache_limit(self) -> int:
        return self._cache.limit

    @property
    def cache_used(self) -> int:
        """Bytes of activations held in the cache now."""
        return self._cache.used

    def clear(self) -> None:
        self._cache.clear()

    def cached_segments(self) -> list[int]:
        """The segment of every cache entry, least recently used first."""
        return [k for k, _ in self._cache]

    @torch.no_grad()  # not inference_mode: quantized layers use version counters to skip work
    def logits(self, config: BitConfig) -> torch.Tensor | None:
        """Float32 logits of the resolved ``config`` on ``x`` (None: take the plain path)."""
        t0 = time.perf_counter()
        try:
            return self._logits(config)
        except HaqError:
            raise  # the user's error (e.g. no calibration data): the plain path says the same
        except _Unsupported as exc:
            log.debug("prefix replay refused a config: %s", exc)
        except Exception as exc:  # a replay failure must never cost the evaluation itself
            log.warning("prefix replay failed (%s: %s); evaluating the plain way",
                        type(exc).__name__, exc)  # fmt: skip
        finally:
            self.stats.seconds += time.perf_counter() - t0
        self.stats.fallbacks += 1
        return None

    def _logits(self, config: BitConfig) -> torch.Tensor:
        made_with = (self.quantizer.calibration, self.quantizer.settings)
        if made_with[0] is not self._made_with[0] or made_with[1] is not self._made_with[1]:
            self.clear()  # recalibrated: every cached activation is stale
            self._made_with = made_with
        keys = self.keys(config)
        n_seg = len(self.segments)
        start, cached = 0, None
        for k in reversed(range(n_seg)):
            entry = self._cache.get(keys[k])
            if entry is not None:
                start, cached = k + 1, entry
                break
        self.stats.evaluations += 1
        self.stats.segments_reused += start
        if cached is not None and start == n_seg:
            self.stats.full_hits += 1
            return torch.cat([t.float() for t in cached.tensors])
        applied = self.quantizer.apply(config)
        applied.eval()
        ctx = self._context(applied)
        store = self._plan(start)
        # make room first, so the cache and this run's new entries together stay in budget
        planned = sum(self.segments[k].bytes_per_sample * self.x.shape[0] for k in store)
        self._cache.evict(self.cache_limit - planned)
        outs: dict[int, Entry] = {k: Entry([], [], [], 0) for k in store}
        results = []
        n = self.x.shape[0]
        for b, i in enumerate(range(0, n, self.batch_size)):
            if cached is None:
                value: Any = self.x[i : i + self.batch_size]
            else:
                value = self._reuse(keys[start - 1], cached, b)
            for k in range(start, n_seg):
                value = self._run_segment(k, value, ctx)
                if k in store:
                    if not isinstance(value, torch.Tensor):
                        raise _Unsupported(f"segment {k} does not make a tensor")
                    entry = outs[k]
                    entry.tensors.append(value)
                    entry.versions.append(value._version)
                    entry.tags.append(getattr(value, _GRID, None))
                    if k < n_seg - 1 and self.segments[k].out_mutated:
                        value = _clone(value)
            if not isinstance(value, torch.Tensor):
                raise _Unsupported("the model does not return a tensor")
            results.append(value.float())
        self.stats.segments_run += n_seg - start
        for k in sorted(store, reverse=True):  # deepest first: shallow prefixes evicted last
            self._cache.insert(keys[k], outs[k])
        return torch.cat(results)

    def _reuse(self, key: Key, entry: Entry, b: int) -> Any:
        """Batch ``b`` of a cached segment output, as the next segment may consume it."""
        t = entry.tensors[b]
        if t._version != entry.versions[b]:
            # modified in place after all (the probe missed it): never trust it again
            self._cache.drop(key)
            self.segments[key[0]].out_mutated = True
            raise _Unsupported(f"cached output of segment {key[0]} was modified in place")
        tag = entry.tags[b]
        if getattr(t, _GRID, None) != tag:
            setattr(t, _GRID, tag)
        return _clone(t) if self.segments[key[0]].out_mutated else t

    def _plan(self, start: int) -> set[int]:
        """Which new segment outputs to keep, within the budget, shallow ones first."""
        n = self.x.shape[0]
        total, store = 0.0, set()
        for k in range(start, len(self.segments)):
            need = self.segments[k].bytes_per_sample * n
            if need > 0 and total + need <= self.cache_limit:
                store.add(k)
                total += need
        return store


def _trace(quantizer: Quantizer) -> tuple[fx.Graph, list[_Call]]:
    """The fx graph of the folded float model and every module call in it."""
    leaves = set(quantizer.layer_names) | set(quantizer._absorbed_relu.values())
    tracer = _RecordingTracer(leaves)
    graph = tracer.trace(quantizer.base)
    index = {n: i for i, n in enumerate(graph.nodes)}
    calls = []
    for path, node, leaf, before, after in tracer.raw_calls:
        first = index[before] + 1 if before is not None else 0
        last = index[after] if after is not None else -1
        calls.append(_Call(path, node, leaf, first, last))
    return graph, calls
