"""Editing an exported ONNX graph in place: the helper the exporter and its kernel
replacements (QDQ pairs, MatMulNBits, dynamic int8) share, outside the exporter so the
replacements do not import it back."""

from __future__ import annotations

from typing import Any

import numpy as np

WEIGHT_OPS = ("Conv", "Gemm", "MatMul")
#: Changes of the graphs haq hands ONNX Runtime that change measured times; a measured target
#: says which one its tables saw (`haq.hardware.ort.target.drop_stale_rows`). 1: until
#: 2026-12-07; 2: an 8-bit Q after a float tensor's max pool stays there (`keep_max_pools_float`).
EXPORT_REVISION = 2
#: Ops ONNX Runtime's QDQPropagationTransformer moves a QuantizeLinear backward through.
Q_PROPAGATES = ("MaxPool", "Reshape", "Transpose", "Squeeze", "Unsqueeze", "Slice")


class GraphEditor:
    """Small editing helper over an onnx GraphProto: initializers, producers, consumers."""

    def __init__(self, model: Any) -> None:
        self.model = model
        self.graph = model.graph
        self.inits = {t.name: t for t in self.graph.initializer}
        self.outputs = {o.name for o in self.graph.output}
        self.before: dict[int, list[Any]] = {}  # new nodes to place before node #i
        self.after: dict[int, list[Any]] = {}
        self.removed: set[int] = set()
        self._q_memo: dict[tuple[str, float, int, int], str] = {}

    def consumers(self, tensor: str) -> list[tuple[int, Any]]:
        return [(i, n) for i, n in enumerate(self.graph.node) if tensor in n.input]

    def add_init(self, name: str, array: np.ndarray) -> str:
        from onnx import numpy_helper

        self.graph.initializer.append(numpy_helper.from_array(array, name))
        self.inits[name] = self.graph.initializer[-1]
        return name

    def init_array(self, name: str) -> np.ndarray:
        from onnx import numpy_helper

        return numpy_helper.to_array(self.inits[name])

    def qdq(self, tensor: str, scale: float, zp: int, bits: int, idx: int, tag: str) -> str:
        """Q->DQ of ``tensor`` on an unsigned ``bits`` grid, placed before node ``idx``."""
        from onnx import helper

        key = (tensor, scale, zp, bits)
        if key in self._q_memo:
            return self._q_memo[key]
        dtype = np.uint8 if bits <= 8 else np.uint16
        s = self.add_init(f"{tag}_scale", np.array(scale, dtype=np.float32))
        z = self.add_init(f"{tag}_zero_point", np.array(zp, dtype=dtype))
        nodes = []
        src = tensor
        if bits not in (8, 16):  # keep the narrower grid inside the wider container
            lo = self.add_init(f"{tag}_clip_min", np.array((0 - zp) * scale, dtype=np.float32))
            hi = self.add_init(
                f"{tag}_clip_max", np.array((2**bits - 1 - zp) * scale, dtype=np.float32)
            )
            nodes.append(
                helper.make_node("Clip", [tensor, lo, hi], [f"{tag}_clipped"], name=f"{tag}_Clip")
            )
            src = f"{tag}_clipped"
        nodes.append(
            helper.make_node(
                "QuantizeLinear", [src, s, z], [f"{tag}_q"], name=f"{tag}_QuantizeLinear"
            )
        )
        nodes.append(
            helper.make_node(
                "DequantizeLinear",
                [f"{tag}_q", s, z],
                [f"{tag}_dq"],
                name=f"{tag}_DequantizeLinear",
            )
        )
        self.before.setdefault(idx, []).extend(nodes)
        self._q_memo[key] = f"{tag}_dq"
        return f"{tag}_dq"

    def absorb_bias_add(self, node: Any, name: str) -> tuple[str, bool]:
        """(the tensor a replacement of Linear ``name``'s ``node`` writes, whether it adds the
        bias itself). A MatMul (a Linear on token sequences) exports its bias as the ``Add`` of
        ``<name>.bias`` that is its only reader: that Add is removed and its output taken; a
        Gemm holds its bias."""
        output = node.output[0]
        if node.op_type != "MatMul":
            return output, True
        consumers = self.consumers(output)
        if len(consumers) != 1 or output in self.outputs:
            return output, False
        j, c = consumers[0]
        if c.op_type != "Add" or f"{name}.bias" not in c.input:
            return output, False
        self.removed.add(j)
        return c.output[0], True

    def all_nodes(self) -> list[Any]:
        nodes = []
        for i, n in enumerate(self.graph.node):
            nodes.extend(self.before.get(i, []))
            if i not in self.removed:
                nodes.append(n)
            nodes.extend(self.after.get(i, []))
        return nodes

    def rewire(self, tensor: str, replacement: str) -> None:
        """Every reader of ``tensor`` reads ``replacement`` instead, except the nodes that make
        ``replacement`` from it (its Clip/Q/DQ chain)."""
        chain = producers_of(replacement, self.all_nodes(), stop=tensor)
        if tensor in self.outputs:
            return
        for n in self.all_nodes():
            if id(n) in chain:
                continue
            for k, inp in enumerate(n.input):
                if inp == tensor:
                    n.input[k] = replacement

    def finish(self) -> None:
        """Place inserted nodes (topologically sorted), drop removed ones and initializers
        nothing reads any more."""
        nodes = self.keep_max_pools_float(self.all_nodes())
        nodes = toposort(nodes, {i.name for i in self.graph.input} | set(self.inits))
        del self.graph.node[:]
        self.graph.node.extend(nodes)
        used = {i for n in nodes for i in n.input} | self.outputs
        keep = [t for t in self.graph.initializer if t.name in used]
        del self.graph.initializer[:]
        self.graph.initializer.extend(keep)

    def keep_max_pools_float(self, nodes: list[Any]) -> list[Any]:
        """A Clip to its own grid's range in front of every 8-bit QuantizeLinear that ORT
        would move in front of a MaxPool of a float tensor.

        A float layer's output read by an int8 layer behind a max pool (a float stem, then
        int8 blocks) is quantized after the pool. ORT's QDQ propagation moves that Q backward
        through the pool (`Q_PROPAGATES`), and the pool then runs on uint8 in NCHW, a generic
        kernel 16-33x slower than the float pool after an NCHWc conv (ResNet-18's stem: 3.2-3.5
        ms at 1 thread, the network's int8 blocks take about as long). A Clip stops the
        propagation (not one of those ops), changes no value (Q saturates to the same range)
        and ORT's ClipQuantFusion removes it afterwards, so the pool stays float and the Q reads
        the 4x smaller pooled tensor. A Q behind a DequantizeLinear (an int8 producer) is left
        alone: ORT does not propagate it and runs that pool on uint8 in NHWC, fast."""
        from onnx import helper

        by_output = {o: n for n in nodes for o in n.output}
        out = []
        for n in nodes:
            if n.op_type == "QuantizeLinear" and self._float_max_pool_behind(n, by_output):
                scale = float(self.init_array(n.input[1]))
                zp = self.init_array(n.input[2])
                top = float(np.iinfo(zp.dtype).max)
                tag = f"{n.name}_pool_guard"
                lo = self.add_init(f"{tag}_min", np.array((0 - int(zp)) * scale, np.float32))
                hi = self.add_init(f"{tag}_max", np.array((top - int(zp)) * scale, np.float32))
                out.append(helper.make_node("Clip", [n.input[0], lo, hi], [f"{tag}_out"],
                                            name=f"{tag}_Clip"))  # fmt: skip
                n.input[0] = f"{tag}_out"
            out.append(n)
        return out

    def _float_max_pool_behind(self, q: Any, by_output: dict[str, Any]) -> bool:
        """Whether ORT's propagation would carry 8-bit per-tensor ``q`` back through a
        MaxPool onto a tensor no DequantizeLinear made."""
        if len(q.input) < 3 or q.input[1] not in self.inits or q.input[2] not in self.inits:
            return False
        zp = self.init_array(q.input[2])
        if zp.size != 1 or zp.dtype not in (np.uint8, np.int8):
            return False
        pooled, node = False, by_output.get(q.input[0])
        while node is not None and node.op_type in Q_PROPAGATES:
            pooled = pooled or node.op_type == "MaxPool"
            node = by_output.get(node.input[0])
        return pooled and (node is None or node.op_type != "DequantizeLinear")


def producers_of(tensor: str, nodes: list[Any], stop: str) -> set[int]:
    """ids of the nodes on the path that computes ``tensor`` back to ``stop``."""
    by_output = {o: n for n in nodes for o in n.output}
    chain: set[int] = set()
    todo = [tensor]
    while todo:
        n = by_output.get(todo.pop())
        if n is None or id(n) in chain:
            continue
        chain.add(id(n))
        todo += [i for i in n.input if i != stop]
    return chain


def toposort(nodes: list[Any], available: set[str]) -> list[Any]:
    """Kahn's order, keeping the given order wherever the data flow allows."""
    import heapq

    produced_by = {o: i for i, n in enumerate(nodes) for o in n.output}
    deps = [
        {produced_by[x] for x in n.input if x and x in produced_by and x not in available}
        for n in nodes
    ]
    users: dict[int, list[int]] = {}
    for i, d in enumerate(deps):
        for j in d:
            users.setdefault(j, []).append(i)
    waiting = [len(d) for d in deps]
    ready = [i for i, w in enumerate(waiting) if w == 0]
    heapq.heapify(ready)
    order = []
    while ready:
        i = heapq.heappop(ready)
        order.append(nodes[i])
        for u in users.get(i, []):
            waiting[u] -= 1
            if waiting[u] == 0:
                heapq.heappush(ready, u)
    if len(order) != len(nodes):
        raise RuntimeError("exported graph has a cycle; this is a bug in haq's exporter")
    return order


def find_layer_nodes(g: GraphEditor, layers: list[str]) -> dict[str, int]:
    """Node index of each layer's Conv/Gemm/MatMul, found by its ``<layer>.weight`` input, or,
    for a Linear on 3-D input (the exporter folds its weight into a transposed constant), the
    MatMul whose only reader is the ``Add`` of ``<layer>.bias``."""
    by_weight, by_bias = {}, {}
    for i, n in enumerate(g.graph.node):
        if n.op_type in WEIGHT_OPS and len(n.input) > 1:
            by_weight[n.input[1]] = i
        if n.op_type == "MatMul":
            readers = [c for _, c in g.consumers(n.output[0])]
            if len(readers) == 1 and readers[0].op_type == "Add":
                for inp in readers[0].input:
                    by_bias[inp] = i
    found = {}
    for name in layers:
        i = by_weight.get(f"{name}.weight", by_bias.get(f"{name}.bias"))
        if i is not None:
            found[name] = i
    return found
