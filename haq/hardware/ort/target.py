"""The ``cpu-avx512`` target: kernel classes, the rules mapping precisions onto them,
boundaries between layers, and the profile YAML ``haq profile`` writes.

Every number comes from whole models as ORT runs them (fusions, layouts and all), never from
one-layer models: each *job* exports one config of one model, times it with the profiler off
(wall-clock median: the total) and once more with the profiler on (attribution only).

Kernel classes (what a (w, a) pair really runs as; `RULES` maps precisions onto them):

=================  ==================================================================
``fp32``           float Conv (NCHWc) / Gemm
``int8``           QLinearConv / QGemm, uint8 activations x int8 weights (w <= 8, a <= 8)
``int8-weights``   int8 weights dequantized on every run, then the float op
``qdq16``          16-bit activations: DequantizeLinear -> float op (+ weight dequantize)
``matmulnbitsN``   Linear weight-only, block-wise N = 2, 4, 8 bits (MatMulNBits, block 32;
                   text models: their settings' group size, 128)
``dynamic-int8``   Linear under dynamic activations (DynamicQuantizeMatMul; text models)
``dynamic-int8-token``  the same with a grid per token (MatMulInteger + per-row scales)
=================  ==================================================================

Text models (a tokenizer in their preprocess) are profiled per token count, as ``name@T``,
with the classes their Linears have on this CPU (`TEXT_CLASSES`).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from haq.config import Precision
from haq.errors import HaqError
from haq.export.graph import EXPORT_REVISION
from haq.hardware.ort.machines import machines
from haq.hardware.profile import KernelRule, rule_dicts, write_profile
from haq.hardware.tables import INPUT, OUTPUT, SIGNATURE_COLUMNS
from haq.models.spec import reduced_elements, reduced_in_front

if TYPE_CHECKING:
    import pandas as pd

    from haq.models.spec import LayerSpec


# --------------------------------------------------------------------------- the target

TARGET = "cpu-avx512"
#: ``haq profile`` targets measured by this harness.
TARGETS = (TARGET,)
METHOD = f"haq profile --target {TARGET} (haq/hardware/ort/)"  # the YAML's provenance method
#: Kernel classes whose uniform configs (and alternating pairs) are measured.
PAIR_CLASSES = ("fp32", "int8", "int8-weights", "qdq16")
MATMULNBITS_CLASSES = ("matmulnbits2", "matmulnbits4", "matmulnbits8")
DYNAMIC_CLASS = "dynamic-int8"
TOKEN_CLASS = "dynamic-int8-token"
DYNAMIC_CLASSES = (DYNAMIC_CLASS, TOKEN_CLASS)
#: The activation mode (`QuantSettings.activations`) each dynamic class is measured under.
DYNAMIC_MODES = {DYNAMIC_CLASS: "dynamic", TOKEN_CLASS: "dynamic-token"}
KERNEL_CLASSES = PAIR_CLASSES + MATMULNBITS_CLASSES + DYNAMIC_CLASSES
#: What a text model's Linears can run as (static int8 on token MatMuls does not export).
TEXT_CLASSES = ("fp32", *DYNAMIC_CLASSES, *MATMULNBITS_CLASSES)
#: The precision each class is measured with (``matmulnbits*`` under group-wise settings).
CLASS_PRECISION = {
    "fp32": "fp32",
    "int8": "w8a8",
    "int8-weights": "w8a32",
    "qdq16": "w8a16",
    "matmulnbits2": "w2a32",
    "matmulnbits4": "w4a32",
    "matmulnbits8": "w8a32",
    DYNAMIC_CLASS: "w8a8",  # under dynamic activations
    TOKEN_CLASS: "w8a8",  # under per-token dynamic activations
}
GROUP_SIZE = 32  # MatMulNBits block size measured (classifier heads)
TEXT_GROUP_SIZE = 128  # the same for text models: their default --group-size
#: What really executes each class (for the profile YAML).
KERNEL_DESCRIPTIONS = {
    "fp32": "float Conv (NCHWc layout, bias/ReLU/residual Add fused) or Gemm",
    "int8": "QLinearConv / QGemm: uint8 activations x int8 per-channel weights (VNNI)",
    "int8-weights": "int8 weights DequantizeLinear on every run + float Conv/Gemm (no NCHWc)",
    "qdq16": "uint16 activation Q/DQ + int8 weight dequantize + float op",
    "matmulnbits2": "com.microsoft.MatMulNBits, 2-bit blocks of 32 (text models: 128), accuracy_level 4",
    "matmulnbits4": "com.microsoft.MatMulNBits, 4-bit blocks of 32 (text models: 128), accuracy_level 4",
    "matmulnbits8": "com.microsoft.MatMulNBits, 8-bit blocks of 32 (text models: 128), accuracy_level 4",
    DYNAMIC_CLASS: "com.microsoft.DynamicQuantizeMatMul: each input's own uint8 range x int8 "
    "per-channel weights (dynamic activations, text models)",
    TOKEN_CLASS: "MatMulInteger: each token's own uint8 range (per-row scale and zero point from "
    "ReduceMin/ReduceMax, one blocked QuantizeLinear) x int8 per-channel weights (dynamic-token "
    "activations, text models)",
}
_ALL = ("conv", "dwconv", "gconv", "linear")
#: (op kind, w bits, a bits, weight granularity) -> kernel class; the first match wins.
RULES: tuple[KernelRule, ...] = (
    KernelRule(_ALL, None, None, "fp32"),
    KernelRule(("linear",), (2, 8), (8, 8), DYNAMIC_CLASS, None, "dynamic"),
    KernelRule(("linear",), (2, 8), (8, 8), TOKEN_CLASS, None, "dynamic-token"),
    KernelRule(("linear",), (2, 2), None, "matmulnbits2", "group"),
    KernelRule(("linear",), (4, 4), None, "matmulnbits4", "group"),
    KernelRule(("linear",), (8, 8), None, "matmulnbits8", "group"),
    # other group-wise cases export fake-quantized float weights: a float kernel
    KernelRule(_ALL, (2, 16), None, "fp32", "group"),
    KernelRule(_ALL, (2, 16), (2, 16), "qdq16", "group"),
    KernelRule(_ALL, (2, 8), (2, 8), "int8"),  # W6A8, W4A4, ...: the int8 kernel, no faster
    KernelRule(_ALL, (2, 8), (9, 16), "qdq16"),
    KernelRule(_ALL, (2, 8), None, "int8-weights"),  # W4 conv: dequantize fallback
    KernelRule(_ALL, (9, 16), None, "fp32"),
    KernelRule(_ALL, (9, 16), (2, 16), "qdq16"),
    KernelRule(_ALL, None, (2, 16), "qdq16"),
)
#: Where a transition key has no row, look it up with these classes substituted (both consume
#: and produce float tensors at a boundary).
TRANSITION_FALLBACK = dict.fromkeys((*MATMULNBITS_CLASSES, *DYNAMIC_CLASSES), "fp32")

#: ``reduced_elements``: per sample, pooled away in front of the second layer (a squeeze-excite
#: pool: the class change happens before it, on a tensor the 1x1 shape cannot show)
TRANSITION_KEY = ["from_kernel", "to_kernel", "channels", "h", "w", "batch", "threads",
                  "reduced_elements"]  # fmt: skip
LAYER_KEY = SIGNATURE_COLUMNS + ["precision", "threads"]
GLUE_KEY = ["model", "threads", "batch", "index", "from_kernel", "to_kernel"]
OBSERVATIONS = "observations.jsonl.gz"
#: Sub-folder of a target's tables with the probe networks' tables (learned-model training rows).
PROBES_DIR = "probes"


def kernel_class(
    kind: str, w_bits: int | None, a_bits: int | None, granularity: str = "channel",
    activations: str = "static",
) -> str:  # fmt: skip
    """The class `RULES` gives a layer of ``kind`` at (w_bits, a_bits)."""
    precision = Precision(w_bits, a_bits)
    for rule in RULES:
        if rule.matches(kind, precision, granularity, activations):
            return rule.kernel
    raise HaqError(f"no {TARGET} kernel for {kind} at w{w_bits}a{a_bits} ({granularity})")


def applicable(kind: str, cls: str) -> bool:
    """Whether a layer of ``kind`` can run kernel class ``cls`` (MatMulNBits, dynamic int8:
    Linear only)."""
    return kind == "linear" or cls not in (*MATMULNBITS_CLASSES, *DYNAMIC_CLASSES)


# --------------------------------------------------------------------------- boundaries


@dataclass(frozen=True)
class Boundary:
    """Gap ``index`` (0 = model input, n = model output) and the tensor crossing it."""

    index: int
    channels: int
    h: int
    w: int
    pooled: int = 0  # elements pooled away in front of the layer after it (`reduced_in_front`)


def boundaries(specs: Sequence[LayerSpec]) -> list[Boundary]:
    """The n + 1 boundaries of a layer table in execution order (see the module docstring)."""
    pooled = reduced_elements(specs)
    out = [
        Boundary(j, s.in_channels, *s.in_hw, p)
        for j, (s, p) in enumerate(zip(specs, pooled, strict=True))
    ]
    last = specs[-1]
    out.append(Boundary(len(specs), last.out_channels, last.out_hw[0], last.out_hw[1]))
    return out


def boundary_keys(
    specs: Sequence[LayerSpec], kernels: Sequence[str], batch: int = 1, threads: int = 1
) -> list[tuple[Any, ...]]:
    """Transition-table keys (`TRANSITION_KEY` order) of a config's n + 1 boundaries."""
    chain = [INPUT, *kernels, OUTPUT]
    return [
        (chain[b.index], chain[b.index + 1], b.channels, b.h, b.w, batch, threads, b.pooled)
        for b in boundaries(specs)
    ]


def class_config(names: Sequence[str], kernels: Sequence[str]) -> Any:
    """The BitConfig that exports each layer as its kernel class."""
    from haq.config import BitConfig

    return BitConfig({n: CLASS_PRECISION[k] for n, k in zip(names, kernels, strict=True)})


def iter_classes(values: Iterable[str]) -> list[str]:
    """Expand ``matmulnbits`` to its three bit widths; keep order, drop repeats."""
    out: list[str] = []
    for v in values:
        for c in MATMULNBITS_CLASSES if v == "matmulnbits" else (v,):
            if c not in out:
                out.append(c)
    return out


def write_profile_yaml(
    path: str | Path, tables_dir: Path, observations: Sequence[dict[str, Any]],
    info: dict[str, Any],
) -> None:  # fmt: skip
    """The target's HardwareProfile YAML (field names of `haq.hardware.profile`)."""
    path = Path(path)
    try:
        rel = tables_dir.resolve().relative_to(path.parent.resolve())
    except ValueError:
        rel = tables_dir.resolve()
    threads = sorted({o["threads"] for o in observations})
    measured_on = machines(observations)
    main = measured_on[0]
    doc = {
        "id": path.stem,  # TARGET, or a CPU profiled as a target of its own (`--out DIR/NAME`)
        "kind": "cpu",
        "description": (
            "x86 CPU with AVX-512 VNNI running ONNX Runtime's CPU execution provider (QDQ "
            "models, batch 1). Only uint8 x int8 (<= 8 bits both) runs integer kernels; "
            "narrower bits ride in int8 containers at int8 cost; weight-only and 16-bit "
            "activations run dequantize + float kernels, slower than fp32 for convs."
        ),
        "provenance": "measured",
        "provenance_details": {
            # the machine of most models; `machines` (when rows come from more than one)
            # names each machine with the models it measured
            "machine": main["machine"]
            if len(measured_on) == 1
            else "; ".join(str(m["machine"]) for m in measured_on) + " (see machines)",
            "cpu_family": main["cpu_family"],
            "cpu_model": main["cpu_model"],
            "cpu_flags": list(main["cpu_flags"]),  # a copy: no YAML alias to `machines`
            "cpus": main["cpus"],
            **({"machines": measured_on} if len(measured_on) > 1 else {}),
            "runtime": "onnxruntime",
            "version": (info.get("runtime") or {}).get("version"),
            "provider": "CPUExecutionProvider",
            "date": max(o["date"] for o in observations),
            "models_profiled": sorted({o["model"] for o in observations}),
            "method": METHOD,
            "export_revision": EXPORT_REVISION,
            "latency_model": (
                "sum(layers[signature, kernel]) + sum(transitions[k_prev -> k_next, input "
                "tensor of the next layer] where the classes differ, execution order) + "
                "sum(glue[model, boundary index, k_prev, k_next]) for profiled models"
            ),
            "observations": str(rel / OBSERVATIONS),
        },
        "kernels": dict(KERNEL_DESCRIPTIONS),
        "rules": rule_dicts(RULES),
        "batch": 1,
        "threads": threads,
        "tables": {
            "layers": str(rel / "layers.csv"),
            "transitions": str(rel / "transitions.csv"),
            "glue": str(rel / "glue.csv"),
            "layer_map": str(rel / "layer_map.csv"),
            **(
                {
                    "probes": str(rel / PROBES_DIR / "layers.csv"),
                    "probe_map": str(rel / PROBES_DIR / "layer_map.csv"),
                }
                if (tables_dir / PROBES_DIR / "layers.csv").is_file()
                else {}
            ),  # fmt: skip
        },
        "energy": False,
        "peaks": {},
        # the glue is derived with these stand-ins (`_Lookup.transition`): cost models use them too
        "transition_aliases": dict(TRANSITION_FALLBACK),
        "notes": (
            "Tables: layers (kernel + same-class boundary time), transitions (extra time where "
            "classes differ), glue per model, boundary position and class pair (the lookup "
            "cost model adds it for a profiled model). MatMulNBits measured at block "
            "32 with fp32 convs; its missing transition pairs use fp32's (transition_aliases). "
            "int8 with "
            "activations under 8 bits adds a Clip node the tables do not charge."
        ),
    }
    header = (
        "# Generated by `haq profile --target cpu-avx512`; re-run it to refresh.\n"
        "# Rules: first match wins; w/a = inclusive bit range, null = float on that side.\n"
    )
    write_profile(path, doc, header)


def drop_stale_rows(profile: Any, tables: dict[str, pd.DataFrame]) -> dict[str, pd.DataFrame]:
    """``profile``'s shipped tables without the rows that time graphs haq no longer exports.

    Before export revision 2 (`haq.export.graph.EXPORT_REVISION`), a float layer's output read
    by an int8 layer behind a max pool ran the pool on uint8 in NCHW (ResNet's stem: 3.2 ms at
    1 thread in cpu-avx512's fp32 -> int8 transition row, 1.9 ms more in each profiled ResNet's
    glue); the pool now stays float. Such boundaries (into int8 from any other class, across a
    pool with a spatial output) lose their transition and glue rows and are interpolated from
    the class pair's other rows until the target is profiled again."""
    import pandas as pd

    revision = int((profile.provenance_details or {}).get("export_revision", 1))
    if profiler_of(profile) is None or revision >= 2:
        return tables
    out = dict(tables)

    def changed(frame: pd.DataFrame, pooled: Any, spatial: Any) -> Any:
        return (frame["to_kernel"] == "int8") & (frame["from_kernel"] != "int8") & pooled & spatial

    trans = tables.get("transitions")
    if trans is not None and "reduced_elements" in trans:
        out["transitions"] = trans[~changed(trans, trans["reduced_elements"] > 0,
                                            trans["h"] * trans["w"] > 1)]  # fmt: skip
    glue, layer_map = tables.get("glue"), tables.get("layer_map")
    if glue is not None and layer_map is not None:
        behind_pool = set()  # (model, index of the layer a pool with a spatial output feeds)
        for model, rows in layer_map.groupby("model"):
            rows = rows.sort_values("index")
            ins = (rows["in_channels"] * rows["in_h"] * rows["in_w"]).tolist()
            outs = (rows["out_channels"] * rows["out_h"] * rows["out_w"]).tolist()
            spatial = (rows["in_h"] * rows["in_w"] > 1).tolist()
            for j, (cut, sp) in enumerate(zip(reduced_in_front(ins, outs), spatial, strict=True)):
                if cut > 0 and sp:
                    behind_pool.add((model, j))
        pooled = pd.Series([k in behind_pool for k in zip(glue["model"], glue["index"], strict=True)],
                           index=glue.index)  # fmt: skip
        out["glue"] = glue[~changed(glue, pooled, True)]
    return out


def profiler_of(profile: Any) -> str | None:
    """The `haq profile` target whose harness measured ``profile`` (cpu-avx512 itself, or a
    CPU profiled as a target of its own with `--out DIR/NAME`), so more rows can be measured
    the same way; None for a target haq's profiler did not build."""
    if profile.id in TARGETS:
        return str(profile.id)
    method = str((profile.provenance_details or {}).get("method", ""))
    return TARGET if method == METHOD else None
