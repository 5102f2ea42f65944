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
- optional ``bias`` (input 5, shape ``(N,)``), added after the product.
- ``accuracy_level`` 4 lets the kernel quantize A to int8 per block (the fast path the speed-up
  figures were measured with; about 0.3-1% relative output error the simulation does not
  model); 0 computes in float and matches ``A @ dequant(B).T`` to float rounding.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from haq.errors import HaqError
from haq.quant.modules import QuantLayer, QuantLinear
from haq.quant.quantizers import MATMULNBITS_BITS

if TYPE_CHECKING:
    from haq.export.onnx_export import _Graph

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


def check_block_size(block_size: int, name: str) -> None:
    """MatMulNBits needs a power of two >= 16; raise a one-line `HaqError` otherwise."""
    if block_size < 16 or block_size & (block_size - 1):
        raise HaqError(
            f"layer {name}: MatMulNBits needs a group size that is a power of two >= 16, not "
            f"{block_size}; quantize with --group-size 16, 32, 64 or 128"
        )


def pack_weights(q: np.ndarray, bits: int, block_size: int) -> np.ndarray:
    """Signed integers ``q`` (N, K) -> MatMulNBits' packed uint8 B (N, k_blocks, blob_size).

    Each value is stored as ``q + 2^(bits-1)`` (the default zero point), packed along K with
    the first value in the lowest bits of a byte; a partial last block is padded with zeros.
    """
    if bits not in MATMULNBITS_BITS:
        raise ValueError(f"MatMulNBits packs 2, 4 or 8 bits, not {bits}")
    n, k = q.shape
    k_blocks = -(-k // block_size)
    zp = 2 ** (bits - 1)
    qmax = zp - 1
    if q.size and (q.min() < -qmax - 1 or q.max() > qmax):
        raise ValueError(f"integers outside the signed {bits}-bit range")
    u = np.full((n, k_blocks * block_size), zp, dtype=np.uint8)
    u[:, :k] = (np.asarray(q, dtype=np.int64) + zp).astype(np.uint8)
    per_byte = 8 // bits
    v = u.reshape(n, k_blocks, block_size // per_byte, per_byte)
    packed = np.zeros(v.shape[:3], dtype=np.uint8)
    for j in range(per_byte):
        packed |= (v[..., j] << (bits * j)).astype(np.uint8)
    return packed


def replace_with_matmul_nbits(
    g: _Graph,
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
    check_block_size(block_size, name)
    q = m.w_int.detach().reshape(m.w_int.shape[0], -1).numpy()
    n, k = q.shape
    packed = pack_weights(np.rint(q).astype(np.int64), bits, block_size)
    scales = m.w_scale.detach().reshape(n, -1).numpy().astype(np.float32)
    if scales.shape[1] != packed.shape[1]:
        raise HaqError(
            f"layer {name}: {scales.shape[1]} weight groups for {packed.shape[1]} blocks of "
            f"{block_size}; report the model to haq"
        )
    b = g.add_init(f"{name}.weight_nbits", packed)
    s = g.add_init(f"{name}.weight_scale", scales)
    inputs = [node.input[0], b, s]
    output, absorbed = g.absorb_bias_add(node, name)
    if m.bias is not None and absorbed:
        assert m.bias is not None
        bias = m.bias.detach().numpy().astype(np.float32).reshape(n)
        inputs += ["", "", g.add_init(f"{name}.bias_sim", bias)]  # no zero_points, no g_idx
    new = helper.make_node(
        OP_TYPE,
        inputs,
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
