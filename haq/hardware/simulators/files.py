"""The simulated NPU targets' files: per target a latency/energy table over the layer
signatures of a set of models and its hardware-profile YAML, from the analytic simulators
(`haq.hardware.simulators`). `haq.hardware.builders` builds them; `experiments/simulate_npu.py`
is the thin caller that also summarises the whole-model sums.

``<out>/<id>/layers.csv`` (+ ``layers.meta.json``): one row per (signature, kernel class),
kernel classes ``w{w}a{a}``; columns: the table schema + ``energy_uj``, ``compute_us``,
``memory_us``, ``dram_bytes``. ``<out>/<id>.yaml``: the profile (provenance: simulated, every
parameter with its source, rules mapping each (w, a) in 2..8 to the class that executes it,
no float rule).
"""

from __future__ import annotations

import functools
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from haq.hardware.simulators import TABLE_BITS, Gemm, SimTarget
from haq.hardware.tables import SIGNATURE_COLUMNS, signature, write_table
from haq.models.spec import LayerSpec

MODELS = [
    "resnet18", "resnet50", "mobilenet_v2", "mobilenet_v3_large", "efficientnet_b0",
    "cifar_resnet20", "cifar_resnet56",
]  # fmt: skip
OPS = ["conv", "dwconv", "gconv", "linear"]
SOURCES = {
    "bitfusion": [
        "H. Sharma et al., 'Bit Fusion: Bit-Level Dynamically Composable Architecture for "
        "Accelerating Deep Neural Networks', ISCA 2018",
        "Bit Fusion simulator, github.com/hsharma35/bitfusion (bf_e_conf.ini, bf_s_conf.ini, "
        "results/systolic_array_synth.csv, bitfusion/sram/cacti_sweep.csv, "
        "src/simulator/stats.py, src/simulator/accelerator.py, src/optimizer/optimizer.py)",
        "K. Wang et al., 'HAQ: Hardware-Aware Automated Quantization with Mixed Precision', "
        "CVPR 2019 (Bit Fusion as a target)",
    ],
    "bismo": [
        "Y. Umuroglu, L. Rasnayake, M. Sjalander, 'BISMO: A Scalable Bit-Serial Matrix "
        "Multiplication Overlay for Reconfigurable Computing', FPL 2018",
        "Y. Umuroglu et al., 'Optimizing Bit-Serial Matrix Multiplication for Reconfigurable "
        "Computing', ACM TRETS 2019",
        "BISMO repository, github.com/EECS-NTNU/bismo (README, doc/platforms.md)",
        "K. Wang et al., 'HAQ: Hardware-Aware Automated Quantization with Mixed Precision', "
        "CVPR 2019 (edge = Zynq-7020, cloud = VU9P hardware table; recalled, not re-read)",
        "Xilinx DS190 (Zynq-7000: XC7Z020 has 140 36 Kb BRAM), DS923 (UltraScale+: VU9P has "
        "2160 36 Kb BRAM)",
    ],
}
MODEL_TEXT = {
    "bitfusion": (
        "Layer = im2col GEMM per group (M = out_h*out_w*batch, K = in/groups*kh*kw, N = "
        "out/groups); grouped/depthwise packed block-diagonally, zero tiles skipped. Compute "
        "cycles = M * passes + (rows + cols) fill, passes = sum over 32-output column tiles of "
        "ceil(K range / (rows * products per FU)), products per FU = (8/w)*(8/a) with w, a "
        "padded to 2/4/8. DRAM bytes: weights at w bits, inputs and outputs at a bits, 32-bit "
        "bias, raw input map (on-chip im2col), cheaper of weights-resident / inputs-resident "
        "order with half of each buffer usable. Latency = max(compute, DRAM bytes / "
        "bandwidth). Energy = cycles * FU energy + SRAM bits (cheapest stationarity) * CACTI "
        "pJ/bit + DRAM bits * 15 pJ/bit; leakage ignored. Only quantizable layers (conv, "
        "linear) are simulated: pooling, element-wise adds and activations cost nothing here."
    ),
    "bismo": (
        "Layer = im2col GEMM per group (as for Bit Fusion), grouped/depthwise packed "
        "block-diagonally. Compute cycles = ceil(M/dm) * sum over dn-column tiles of "
        "ceil(K range / dk) * w * a (bit-serial: one binary matrix pass per bit-plane pair). "
        "DRAM bytes as for Bit Fusion at exactly w and a bits, buffers = buffer_fraction of "
        "device BRAM split between activations and weights. Latency = max(compute, DRAM / "
        "bandwidth). Energy = cycles * 2*dm*dn*dk binary ops * board-level pJ/op (an upper "
        "bound: board power) + DRAM bits * 15 pJ/bit. Only conv/linear layers are simulated."
    ),
}


def collect_layers(
    models: Sequence[str], batch: int
) -> tuple[list[dict[str, Any]], dict[str, list]]:
    """Unique signatures over ``models`` and, per model, its layers in execution order
    (cached: every NPU target of one build reads the same layers)."""
    return _collect_layers(tuple(models), batch)


@functools.lru_cache(maxsize=4)
def _collect_layers(
    models: tuple[str, ...], batch: int
) -> tuple[list[dict[str, Any]], dict[str, list]]:
    from haq.models.layers import discover_layers
    from haq.models.registry import load_model

    sigs: dict[tuple, dict[str, Any]] = {}
    per_model: dict[str, list[tuple[LayerSpec, tuple]]] = {}
    for name in models:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            loaded = load_model(name, "none")
        layers = discover_layers(loaded.model, loaded.example_input())
        per_model[name] = []
        for spec in layers:
            sig = signature(spec, batch)
            key = tuple(sig[c] for c in SIGNATURE_COLUMNS)
            sigs.setdefault(key, sig)
            per_model[name].append((spec, key))
    return list(sigs.values()), per_model


def pairs(target: SimTarget) -> list[tuple[int, int]]:
    bits = target.kernel_bits()
    return [(w, a) for w in bits for a in bits]


def _sig5(x: float) -> float:
    return float(f"{x:.5g}")


def build_table(target: SimTarget, sigs: list[dict[str, Any]]) -> pd.DataFrame:
    rows = []
    for sig in sigs:
        g = Gemm.from_signature(sig)
        for w, a in pairs(target):
            c = target.simulate(g, w, a)
            rows.append({
                **sig,
                "precision": f"w{w}a{a}",
                "kernel": c.kernel,
                "latency_us": _sig5(c.latency_us),
                "threads": 1,
                "energy_uj": _sig5(c.energy_uj),
                "compute_us": _sig5(c.compute_us),
                "memory_us": _sig5(c.memory_us),
                "dram_bytes": round(c.dram_bytes),
            })  # fmt: skip
    return pd.DataFrame(rows)


class _Flow(dict):
    """A mapping written on one line in the YAML (a rule)."""


class _Dumper(yaml.SafeDumper):
    """No anchors/aliases; rules and short scalar lists in flow style."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


def _repr_list(dumper: yaml.SafeDumper, data: list) -> yaml.Node:
    flow = all(isinstance(v, int | float | str) and len(str(v)) < 24 for v in data)
    return dumper.represent_sequence("tag:yaml.org,2002:seq", data, flow_style=flow)


_Dumper.add_representer(list, _repr_list)
_Dumper.add_representer(
    _Flow, lambda d, data: d.represent_mapping("tag:yaml.org,2002:map", data, flow_style=True)
)


def _range(lo_hi: tuple[int, int]) -> list[int]:
    return [lo_hi[0], lo_hi[1]]


def rule_ranges(target: SimTarget) -> dict[int, tuple[int, int]]:
    """Class width -> the inclusive range of requested widths it executes (within 2..8)."""
    out: dict[int, tuple[int, int]] = {}
    lo = TABLE_BITS[0]
    for b in target.kernel_bits():
        out[b] = (lo, b) if target.family == "bitfusion" else (b, b)
        lo = b + 1
    return out


def profile_yaml(
    target: SimTarget, n_sigs: int, batch: int, date: str, models: Sequence[str]
) -> str:
    p = target.params
    ranges = rule_ranges(target)
    kernels: dict[str, str] = {}
    rules: list[dict[str, Any]] = []
    for w, a in pairs(target):
        cls = f"w{w}a{a}"
        ran = f"requested w{ranges[w][0]}-{ranges[w][1]} a{ranges[a][0]}-{ranges[a][1]}"
        if target.family == "bitfusion":
            from haq.hardware.simulators.bitfusion import fusion

            perf, _ = fusion(w, a)
            kernels[cls] = (
                f"{p.label}: {16 // perf}-brick fused PEs, {perf} products/FU/cycle, operands "
                f"stored at {w}/{a} bits ({ran}; simulated)"
            )
        else:
            kernels[cls] = f"{p.label}: bit-serial, {w * a} binary matrix passes (simulated)"
        rules.append(_Flow(ops=OPS, w=_range(ranges[w]), a=_range(ranges[a]), kernel=cls))
    peaks: dict[str, float] = {"bandwidth_gbs": round(p.bandwidth_gbs, 3)}
    for w, a in pairs(target):
        peaks[f"w{w}a{a}_gops"] = round(p.peak_gops(w, a), 3)
    family = "Bit Fusion" if target.family == "bitfusion" else "BISMO"
    rounding = (
        "Bit Fusion fuses 2-bit BitBricks in powers of two: requested widths 3 -> 4 and 5..7 -> 8 "
        "bits run (and are stored) at the padded width and cost exactly that class. "
        if target.family == "bitfusion"
        else "BISMO runs any width natively; each (w, a) pair is its own class. "
    )
    data = {
        "id": target.id,
        "kind": "npu",
        "description": (
            f"{family} ({p.name} preset: {p.label}), SIMULATED by haq's analytic cycle-level "
            "model - no silicon or FPGA was measured"
        ),
        "provenance": "simulated",
        "provenance_details": {
            "simulator": f"{target.module} (analytic cycle-level model)",
            "preset": p.name,
            "generated_by": "experiments/simulate_npu.py",
            "date": date,
            "model": MODEL_TEXT[target.family],
            "parameters": target.describe(),
            "sources": SOURCES[target.family],
        },
        "kernels": kernels,
        "rules": rules,
        "batch": batch,
        "threads": [1],
        "tables": {"layers": f"{target.id}/layers.csv"},
        "energy": True,
        "peaks": peaks,
        "notes": (
            "No float unit: float (fp32/fp16) layers cannot run on this target, so no rule "
            "accepts them and a search must quantize every layer (weights and activations "
            "2..8 bits). "
            + rounding
            + f"Table: {n_sigs} layer signatures of {', '.join(models)} at batch {batch}. "
            "Latency and energy are simulator outputs, not measurements; BISMO energies are "
            "upper bounds built from board power."
        ),
    }
    header = (
        f"# {target.id}: generated by experiments/simulate_npu.py - do not edit by hand.\n"
        "# Numbers are SIMULATED (haq.hardware.simulators); every parameter names its source.\n"
    )
    return header + yaml.dump(data, Dumper=_Dumper, sort_keys=False, width=100)


def write_target(target: SimTarget, out: Path, models: Sequence[str], batch: int, date: str,
                 argv: Sequence[str] = ()) -> tuple[pd.DataFrame, list[Path]]:  # fmt: skip
    """``target``'s table and YAML under ``out``; the table and the files written."""
    sigs, _ = collect_layers(models, batch)
    frame = build_table(target, sigs)
    path = Path(out) / target.id / "layers.csv"
    meta = {
        "provenance": "simulated",
        "method": "analytic cycle-level simulation (no measurement)",
        "simulator": target.module,
        "preset": target.params.name,
        "parameters": target.describe(),
        "sources": SOURCES[target.family],
        "model": MODEL_TEXT[target.family],
        "models": list(models),
        "signatures": len(sigs),
        "kernel_classes": [f"w{w}a{a}" for w, a in pairs(target)],
        "batch": batch,
        "threads": 1,
        "date": date,
        "argv": list(argv),
    }
    write_table(frame, path, meta)
    yaml_path = Path(out) / f"{target.id}.yaml"
    yaml_path.write_text(profile_yaml(target, len(sigs), batch, date, models))
    return frame, [path, path.with_suffix(".meta.json"), yaml_path]
