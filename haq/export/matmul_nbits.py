"""Weight-only group-quantized Linear layers as ONNX Runtime's ``com.microsoft.MatMulNBits``.

MatMulNBits (onnxruntime 1.32 contrib op, domain ``com.microsoft``, version 1) computes
``Y = A @ dequant(B).T + bias`` with B quantized block-wise along K. Facts checked against ORT
1.32.0 (schema and experiments; see tests/export/test_matmul_nbits.py):

- ``bits`` 2, 4 or 8 (3 fails at session start); ``block_size`` a power of two >= 16.
- B: uint8 ``(N, ceil(K / block_size), block_size * bits / 8)``, values packed along K, the
  first value in the lowest bits of each byte (4-bit: low nibble first; 2-bit: bits 0-1 first).
  A last partial block is padded (the padding is never multiplied).
- scales: float ``(N, k_blocks)`` (a flat ``N * k_blocks`` vector works too).
- zero_points omitted: ``2^(bits-1)``. haq's symmetric integers ``q in [-qmax, qmax]`` are
  stored as ``q + 2^(bits-1)``, so the kernel dequantizes exactly ``q * scale``.
- zero_points given (asymmetric weights): uint8, each row's ``k_blocks`` values packed as B's
  are (``8 / bits`` a byte, first in the lowest bits), every row starting on a new byte. haq's
  centred integers of a group are stored as ``q + zp`` with ``zp = max(0, -min q)``: any zero
  point that keeps ``q + zp`` on the grid dequantizes to the same ``q * scale``.
- optional ``bias`` (input 5, shape ``(N,)``), added after the product.
- ``accuracy_level`` 4 lets the kernel quantize A to int8 per block (the fast path the speed-up
  figures were measured with; about 0.3-1% relative output error the simulation does not
  model); 0 computes in float and matches ``A @ dequant(B).T`` to float rounding.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from haq.errors import HaqError
from haq.export.graph import GraphEditor
from haq.quant.modules import QuantLayer, QuantLinear
from haq.quant.quantizers import MATMULNBITS_BITS

DOMAIN = "com.microsoft"
OP_TYPE = "MatMulNBits"


def uses_matmul_nbits(node: Any, m: QuantLayer) -> bool:
    """Whether this layer exports as MatMulNBits: a weight-only Linear (Gemm/MatMul node) with
    group-wise weights at 2, 4 or 8 bits. Other layers keep the QDQ / fake-quant path."""
    p = m.precision
    return (
        isinstance(m, QuantLinear)
        and node.op_type in ("Gemm", "MatMul")
        and p.a_bits is None
        and p.w_bits in MATMULNBITS_BITS
        and m.granularity == "group"
        and m.w_int is not None
        and m.w_scale is not None
        and _plain_gemm(node)
    )


def _plain_gemm(node: Any) -> bool:
    """A Gemm that is exactly ``A @ B' + C`` (no transA, alpha = beta = 1); MatMul always is."""
    if node.op_type != "Gemm":
        return True
    attrs = {a.name: a for a in node.attribute}
    trans_a = attrs["transA"].i if "transA" in attrs else 0
    alpha = attrs["alpha"].f if "alpha" in attrs else 1.0
    beta = attrs["beta"].f if "beta" in attrs else 1.0
    return trans_a == 0 and alpha == 1.0 and beta == 1.0


def check_block_size(block_size: int, where: str) -> None:
    """MatMulNBits needs a power of two >= 16; raise a one-line `HaqError` otherwise."""
    if block_size < 16 or block_size & (block_size - 1):
        raise HaqError(
            f"{where}: MatMulNBits needs a group size that is a power of two >= 16, not "
            f"{block_size}; quantize with --group-size 16, 32, 64 or 128"
        )


def zero_points(q: np.ndarray, bits: int, block_size: int) -> np.ndarray | None:
    """Per-block zero points (N, k_blocks) that put centred integers ``q`` (N, K) on the
    unsigned ``bits`` grid, or None where the default ``2^(bits-1)`` does (symmetric)."""
    half = 2 ** (bits - 1)
    if not q.size or (q.min() >= -half and q.max() <= half - 1):
        return None
    n, k = q.shape
    k_blocks = -(-k // block_size)
    padded = np.zeros((n, k_blocks * block_size), dtype=np.int64)
    padded[:, :k] = q
    blocks = padded.reshape(n, k_blocks, block_size)
    zp = np.maximum(-blocks.min(axis=2), 0)
    if (blocks.max(axis=2) + zp).max() > 2**bits - 1:
        raise ValueError(f"a block's integers span more than {bits} bits")
    return zp


def _pack_along_last(u: np.ndarray, bits: int) -> np.ndarray:
    """Unsigned ``bits``-bit values (..., L), L a multiple of ``8 / bits`` -> bytes
    (..., L * bits / 8), the first value in the lowest bits."""
    per_byte = 8 // bits
    v = u.reshape(*u.shape[:-1], -1, per_byte)
    packed = np.zeros(v.shape[:-1], dtype=np.uint8)
    for j in range(per_byte):
        packed |= (v[..., j].astype(np.uint8) << (bits * j)).astype(np.uint8)
    return packed


def pack_zero_points(zp: np.ndarray, bits: int) -> np.ndarray:
    """Zero points (N, k_blocks) -> MatMulNBits' uint8 (N, ceil(k_blocks * bits / 8))."""
    n, k_blocks = zp.shape
    per_byte = 8 // bits
    u = np.zeros((n, -(-k_blocks // per_byte) * per_byte), dtype=np.int64)
    u[:, :k_blocks] = zp
    return _pack_along_last(u, bits)


def pack_weights(
    q: np.ndarray, bits: int, block_size: int, zp: np.ndarray | None = None
) -> np.ndarray:
    """Centred integers ``q`` (N, K) -> MatMulNBits' packed uint8 B (N, k_blocks, blob_size).

    Each value is stored as ``q + zero point`` (the block's ``zp``, default ``2^(bits-1)``),
    packed along K with the first value in the lowest bits of a byte; a partial last block is
    padded with the zero point.
    """
    if bits not in MATMULNBITS_BITS:
        raise ValueError(f"MatMulNBits packs 2, 4 or 8 bits, not {bits}")
    n, k = q.shape
    k_blocks = -(-k // block_size)
    if zp is None:
        zp = np.full((n, k_blocks), 2 ** (bits - 1), dtype=np.int64)
    u = np.repeat(zp, block_size, axis=1).astype(np.int64)
    u[:, :k] += np.asarray(q, dtype=np.int64)
    if u.size and (u.min() < 0 or u.max() > 2**bits - 1):
        raise ValueError(f"integers outside the {bits}-bit grid of their zero points")
    return _pack_along_last(u.reshape(n, k_blocks, block_size), bits)


def replace_with_matmul_nbits(
    g: GraphEditor,
    idx: int,
    node: Any,
    name: str,
    m: QuantLayer,
    accuracy_level: int,
) -> None:
    """Replace node ``idx`` (a Gemm with the weight as B, or a MatMul) by MatMulNBits named
    ``name``, computing ``m``'s simulated output: ``A @ (w_int * w_scale).T + bias``.

    A MatMul's bias ``Add`` (the only consumer, reading ``<name>.bias``) is absorbed into the
    node's bias input; without one, the graph's own bias path is left as it is.
    """
    from onnx import helper

    assert m.w_int is not None and m.w_scale is not None and m.precision.w_bits is not None
    if accuracy_level not in range(5):
        raise HaqError(f"MatMulNBits accuracy_level must be 0..4, not {accuracy_level}")
    bits = m.precision.w_bits
    block_size = m.group_size
    check_block_size(block_size, f"layer {name}")
    q = m.w_int.detach().reshape(m.w_int.shape[0], -1).numpy()
    n, k = q.shape
    q = np.rint(q).astype(np.int64)
    zp = zero_points(q, bits, block_size)
    packed = pack_weights(q, bits, block_size, zp)
    scales = m.w_scale.detach().reshape(n, -1).numpy().astype(np.float32)
    if scales.shape[1] != packed.shape[1]:
        raise HaqError(
            f"layer {name}: {scales.shape[1]} weight groups for {packed.shape[1]} blocks of "
            f"{block_size}; report the model to haq"
        )
    b = g.add_init(f"{name}.weight_nbits", packed)
    s = g.add_init(f"{name}.weight_scale", scales)
    zp_name = (
        "" if zp is None else g.add_init(f"{name}.weight_zero_point", pack_zero_points(zp, bits))
    )
    inputs = [node.input[0], b, s, zp_name]
    output, absorbed = g.absorb_bias_add(node, name)
    if m.bias is not None and absorbed:
        assert m.bias is not None
        bias = m.bias.detach().numpy().astype(np.float32).reshape(n)
        inputs += ["", g.add_init(f"{name}.bias_sim", bias)]  # no g_idx
    new = helper.make_node(
        OP_TYPE,
        inputs if inputs[-1] else inputs[:3],
        [output],
        name=name,
        domain=DOMAIN,
        K=k,
        N=n,
        bits=bits,
        block_size=block_size,
        accuracy_level=accuracy_level,
    )
    g.before.setdefault(idx, []).append(new)
    g.removed.add(idx)
    _ensure_domain(g.model)


def _ensure_domain(model: Any) -> None:
    """Import ``com.microsoft`` version 1 once."""
    if not any(o.domain == DOMAIN for o in model.opset_import):
        entry = model.opset_import.add()
        entry.domain, entry.version = DOMAIN, 1
