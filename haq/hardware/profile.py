"""Hardware profiles: what a target is, where its numbers come from, and which kernel really
runs each (weight bits, activation bits) pair on each op kind.

One YAML per target in ``hardware_profiles/<id>.yaml`` (format: ``hardware_profiles/README.md``).
Latency tables are keyed by *kernel class* (e.g. ``fp32``, ``int8``), not by bit pair: W6A8 on
an int8-only CPU runs the int8 kernel and costs exactly that, and a 4-bit conv weight on ORT's
CPU provider costs its dequantize-then-float fallback. That is how no speed is ever credited
for bits the hardware does not exploit.

API: `load_profile(path)`, `list_targets()`, `get_target(id)`; `HardwareProfile.kernel_for`,
`can_run`, `supported`. Every problem in a profile file is one `HaqError` line naming the file,
the field and the fix.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from haq.config import ACTIVATION_MODES, FLOAT_BITS, GRANULARITIES, MAX_BITS, MIN_BITS, Precision
from haq.errors import HaqError
from haq.io import atomic_write_text

Provenance = Literal["measured", "simulated", "published"]
OP_KINDS = ("conv", "dwconv", "gconv", "linear")
KINDS = ("cpu", "gpu", "npu")
PROVENANCES = ("measured", "simulated", "published")
# provenance -> keys its `provenance_details` must hold
PROVENANCE_KEYS: dict[str, tuple[str, ...]] = {
    "measured": ("machine", "runtime", "version", "date"),
    "simulated": ("simulator", "parameters"),
    "published": ("source",),
}
TABLE_KEYS = (
    "layers",
    "transitions",
    "glue",
    "layer_map",
    "e2e",
    "probes",
    "probe_map",
)  # "layers" required when tables given
REQUIRED_KEYS = ("id", "kind", "description", "provenance", "provenance_details", "kernels",
                 "rules", "batch", "threads")  # fmt: skip
OPTIONAL_KEYS = ("tables", "energy", "peaks", "kernel_bits", "transition_aliases", "notes")
PEAK_SUFFIXES = ("_gops", "_overhead_us")  # per kernel class; plus bandwidth_gbs, overhead_us
PEAK_GLOBALS = ("bandwidth_gbs", "overhead_us")


@dataclass(frozen=True)
class KernelRule:
    """First matching rule decides the kernel class of (op kind, w_bits, a_bits, granularity).

    ``w`` / ``a``: inclusive [lo, hi] bit range, or None meaning float on that side.
    ``granularity``: None matches any. ``activations``: how quantized activations get their
    grid, ``static`` (calibrated, the default), ``dynamic`` (each input's own range, at run
    time: another kernel, e.g. ORT's DynamicQuantizeMatMul) or ``dynamic-token`` (each
    token's); float activations match any.
    """

    ops: tuple[str, ...]
    w: tuple[int, int] | None
    a: tuple[int, int] | None
    kernel: str
    granularity: str | None = None
    activations: str = "static"

    def matches(
        self, op_kind: str, precision: Precision, granularity: str | None,
        activations: str = "static",
    ) -> bool:  # fmt: skip
        if op_kind not in self.ops:
            return False
        if self.granularity is not None and granularity != self.granularity:
            return False
        if precision.a_bits is not None and activations != self.activations:
            return False
        return _side_matches(self.w, precision.w_bits) and _side_matches(self.a, precision.a_bits)

    def describe(self) -> str:
        """``w2-8a2-8 -> int8`` style text (``fp32`` for float on both sides)."""
        if self.w is None and self.a is None:
            text = "fp32"
        else:
            text = f"w{_range_text(self.w)}a{_range_text(self.a)}"
        if self.granularity:
            text += f" per-{self.granularity}"
        if self.activations != "static":
            text += f" {self.activations}"
        return f"{text} -> {self.kernel}"


def _side_matches(rng: tuple[int, int] | None, bits: int | None) -> bool:
    if rng is None:
        return bits is None
    return bits is not None and rng[0] <= bits <= rng[1]


def _range_text(rng: tuple[int, int] | None) -> str:
    if rng is None:
        return str(FLOAT_BITS)
    return str(rng[0]) if rng[0] == rng[1] else f"{rng[0]}-{rng[1]}"


@dataclass(frozen=True)
class HardwareProfile:
    id: str
    kind: Literal["cpu", "gpu", "npu"]
    description: str
    provenance: Provenance
    provenance_details: dict[str, Any]  # measured: machine, cpu_flags, runtime, version, date;
    # simulated: simulator + parameters with sources; published: source citation
    kernels: dict[str, str]  # kernel class -> what really executes it (for humans)
    rules: tuple[KernelRule, ...]
    batch: int
    threads: tuple[int, ...]
    tables: dict[str, Path]  # "layers" (required), "transitions" (optional) -> resolved paths
    energy: bool = False  # whether tables carry energy_uj
    peaks: dict[str, float] = field(
        default_factory=dict
    )  # e.g. {"int8_gops": ..., "fp32_gops": ..., "bandwidth_gbs": ..., "overhead_us": ...}
    path: Path | None = None
    kernel_bits: dict[str, tuple[int, int]] = field(default_factory=dict)  # storage (w, a) bits
    # kernel class -> class whose transition rows stand in where it has none of its own
    transition_aliases: dict[str, str] = field(default_factory=dict)
    notes: str = ""

    # Capabilities -----------------------------------------------------------------------
    def kernel_for(
        self, op_kind: str, precision: Precision | str, granularity: str | None = "channel",
        activations: str = "static",
    ) -> str | None:  # fmt: skip
        """The kernel class that executes ``precision`` on ``op_kind``; None: cannot run it."""
        if op_kind not in OP_KINDS:
            raise HaqError(f"unknown op kind {op_kind!r}; one of {', '.join(OP_KINDS)}")
        p = Precision.parse(precision)
        for rule in self.rules:
            if rule.matches(op_kind, p, granularity, activations):
                return rule.kernel
        return None

    def can_run(
        self, op_kind: str, precision: Precision | str, granularity: str | None = "channel",
        activations: str = "static",
    ) -> bool:  # fmt: skip
        return self.kernel_for(op_kind, precision, granularity, activations) is not None

    def supported(self, op_kind: str) -> str:
        """Human text of what ``op_kind`` can run: ``fp32 -> fp32, w2-8a2-8 -> int8``."""
        parts = [r.describe() for r in self.rules if op_kind in r.ops]
        return ", ".join(dict.fromkeys(parts)) or "nothing"

    def reachable_kernels(self, op_kind: str) -> list[str]:
        """Kernel classes some rule can pick for ``op_kind`` (in `kernels` order)."""
        used = {r.kernel for r in self.rules if op_kind in r.ops}
        return [k for k in self.kernels if k in used]

    def unsupported_error(
        self, op_kind: str, precision: Precision, layer: str | None = None,
        granularity: str | None = "channel", activations: str = "static",
    ) -> HaqError:  # fmt: skip
        where = f" (layer {layer})" if layer else ""
        gran = f" per-{granularity}" if granularity and granularity != "channel" else ""
        if activations != "static" and precision.a_bits is not None:
            gran += f" with {activations} activations"
        return HaqError(
            f"target {self.id} cannot run {precision}{gran} on {op_kind} layers{where}: supported "
            f"{self.supported(op_kind)}; choose one of those or another target (`haq targets`)"
        )

    def storage_bits(self, kernel: str) -> tuple[int, int]:
        """(weight, activation) bits a kernel class moves through memory (32 = float).

        From ``kernel_bits`` when the profile gives it, else the widest bits of the rules that
        pick the kernel (a float side counts 32).
        """
        if kernel in self.kernel_bits:
            return self.kernel_bits[kernel]
        w_bits, a_bits = 0, 0
        for r in self.rules:
            if r.kernel == kernel:
                w_bits = max(w_bits, FLOAT_BITS if r.w is None else r.w[1])
                a_bits = max(a_bits, FLOAT_BITS if r.a is None else r.a[1])
        return (w_bits or FLOAT_BITS, a_bits or FLOAT_BITS)

    def remap(self, mapping: Mapping[str, str]) -> HardwareProfile:
        """A copy whose rules pick ``mapping[k]`` wherever they picked ``k``.

        E.g. ``{"fp32": "bf16"}`` deploys float layers of gpu-h100 in bf16.
        """
        for src, dst in mapping.items():
            for name, what in ((src, "from"), (dst, "to")):
                if name not in self.kernels:
                    raise HaqError(
                        f"kernel map {src}={dst}: {what} {name!r} is not a kernel class of "
                        f"{self.id} ({', '.join(self.kernels)})"
                    )
        rules = tuple(
            dataclasses.replace(r, kernel=mapping.get(r.kernel, r.kernel)) for r in self.rules
        )
        return dataclasses.replace(self, rules=rules)

    # Views ------------------------------------------------------------------------------
    @property
    def source(self) -> str:
        """One-line provenance text: source, simulator, or machine + runtime + date."""
        d = self.provenance_details
        if self.provenance == "published":
            return str(d.get("source", ""))
        if self.provenance == "simulated":
            return str(d.get("simulator", ""))
        return f"{d.get('machine', '')}; {d.get('runtime', '')} {d.get('version', '')}; {d.get('date', '')}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "kind": self.kind,
            "provenance": self.provenance,
            "source": self.source,
            "description": self.description,
            "kernels": list(self.kernels),
            "rules": [r.describe() + (f" on {','.join(r.ops)}") for r in self.rules],
            "batch": self.batch,
            "threads": list(self.threads),
            "tables": sorted(self.tables),
            "energy": self.energy,
            "path": str(self.path) if self.path else None,
        }


# Loading -------------------------------------------------------------------------------


class _Checker:
    """Builds one-line errors that name the file, the field and the fix."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def fail(self, where: str, problem: str, fix: str) -> HaqError:
        return HaqError(f"hardware profile {self.path}: {where}: {problem}; {fix}")


def _bits_range(value: Any, where: str, c: _Checker) -> list[tuple[int, int] | None]:
    """A YAML bits spec -> alternatives: null/float -> [None]; 8 -> [(8,8)]; [2, 8]; any."""
    if value is None or (isinstance(value, str) and value.lower() in {"float", "fp32", "null"}):
        return [None]
    if isinstance(value, str) and value.lower() == "any":
        return [None, (MIN_BITS, MAX_BITS)]
    if isinstance(value, int) and not isinstance(value, bool):
        value = [value, value]
    if (
        not isinstance(value, list)
        or len(value) != 2
        or not all(isinstance(v, int) and not isinstance(v, bool) for v in value)
    ):
        raise c.fail(where, f"{value!r} is not a bit range",
                     "write [lo, hi] (inclusive), a single bit width, null (float) or 'any'")  # fmt: skip
    lo, hi = value
    if lo == hi == FLOAT_BITS:
        return [None]
    if not (MIN_BITS <= lo <= hi <= MAX_BITS):
        raise c.fail(where, f"bad bit range [{lo}, {hi}]",
                     f"use {MIN_BITS} <= lo <= hi <= {MAX_BITS}, or null for float")  # fmt: skip
    return [(lo, hi)]


def _positive_int(value: Any, where: str, c: _Checker) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise c.fail(where, f"{value!r} is not a positive integer", "write e.g. 1")
    return value


def _rules(raw: Any, kernels: Mapping[str, str], c: _Checker) -> tuple[KernelRule, ...]:
    if not isinstance(raw, list) or not raw:
        raise c.fail("rules", "must be a non-empty list",
                     "write e.g. '- {ops: [conv, linear], w: [2, 8], a: [2, 8], kernel: int8}'")  # fmt: skip
    out: list[KernelRule] = []
    for i, r in enumerate(raw):
        where = f"rules[{i}]"
        if not isinstance(r, Mapping):
            raise c.fail(
                where, "is not a mapping", "write {ops: [...], w: ..., a: ..., kernel: ...}"
            )
        unknown = set(r) - {"ops", "w", "a", "kernel", "granularity", "activations"}
        if unknown:
            raise c.fail(where, f"unknown keys {sorted(unknown)}",
                         "a rule holds ops, w, a, kernel and optionally granularity and activations")  # fmt: skip
        for key in ("ops", "w", "a", "kernel"):
            if key not in r:
                raise c.fail(where, f"missing '{key}'",
                             "a rule needs ops, w, a (null = float) and kernel")  # fmt: skip
        ops = r["ops"]
        if isinstance(ops, str):
            ops = [ops]
        if not isinstance(ops, list) or not ops or any(o not in OP_KINDS for o in ops):
            raise c.fail(f"{where}.ops", f"{r['ops']!r} names unknown op kinds",
                         f"use a list of {', '.join(OP_KINDS)}")  # fmt: skip
        kernel = r["kernel"]
        if kernel not in kernels:
            raise c.fail(f"{where}.kernel", f"{kernel!r} is not a kernel class in 'kernels' "
                         f"({', '.join(kernels)})", "declare it under 'kernels' or fix the rule")  # fmt: skip
        gran = r.get("granularity")
        if gran is not None and gran not in GRANULARITIES:
            raise c.fail(f"{where}.granularity", f"{gran!r} is unknown",
                         f"use one of {', '.join(GRANULARITIES)} or leave it out (any)")  # fmt: skip
        acts = r.get("activations", "static")
        if acts not in ACTIVATION_MODES:
            raise c.fail(f"{where}.activations", f"{acts!r} is unknown",
                         "use static (calibrated, the default), dynamic or dynamic-token")  # fmt: skip
        ws = _bits_range(r["w"], f"{where}.w", c)
        as_ = _bits_range(r["a"], f"{where}.a", c)
        for w in ws:
            for a in as_:
                out.append(KernelRule(tuple(ops), w, a, str(kernel), gran, acts))
    return tuple(out)


def load_profile(path: str | Path) -> HardwareProfile:
    """Read and validate one profile YAML; table paths resolve relative to the file."""
    path = Path(path)
    c = _Checker(path)
    if not path.is_file():
        raise HaqError(f"hardware profile {path} not found; see `haq targets` for the known ones")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"line {mark.line + 1}" if mark else "file"
        raise c.fail(where, "not valid YAML", "fix its syntax") from e
    if not isinstance(data, Mapping):
        raise c.fail("file", "is not a mapping", "see hardware_profiles/README.md for the format")
    missing = [k for k in REQUIRED_KEYS if k not in data]
    if missing:
        raise c.fail(
            ", ".join(missing), "missing", "add the field(s); see hardware_profiles/README.md"
        )
    unknown = sorted(set(data) - set(REQUIRED_KEYS) - set(OPTIONAL_KEYS))
    if unknown:
        raise c.fail(", ".join(unknown), "unknown field(s)",
                     f"remove or rename them (known: {', '.join(REQUIRED_KEYS + OPTIONAL_KEYS)})")  # fmt: skip

    pid = data["id"]
    if not isinstance(pid, str) or pid != path.stem:
        raise c.fail("id", f"{pid!r} differs from the file name {path.name!r}",
                     f"set 'id: {path.stem}' or rename the file")  # fmt: skip
    kind = data["kind"]
    if kind not in KINDS:
        raise c.fail("kind", f"{kind!r} is unknown", f"use one of {', '.join(KINDS)}")
    if not isinstance(data["description"], str) or not data["description"].strip():
        raise c.fail("description", "empty", "write one sentence saying what the target is")
    prov = data["provenance"]
    if prov not in PROVENANCES:
        raise c.fail("provenance", f"{prov!r} is not a provenance",
                     f"use one of {', '.join(PROVENANCES)}")  # fmt: skip
    details = data["provenance_details"]
    if not isinstance(details, Mapping):
        raise c.fail("provenance_details", "is not a mapping",
                     f"give {', '.join(PROVENANCE_KEYS[prov])}")  # fmt: skip
    lacking = [k for k in PROVENANCE_KEYS[prov] if not details.get(k)]
    if lacking:
        raise c.fail("provenance_details", f"lacks {', '.join(lacking)} (needed for {prov})",
                     "say where the numbers come from")  # fmt: skip

    kernels = data["kernels"]
    if (
        not isinstance(kernels, Mapping)
        or not kernels
        or not all(isinstance(k, str) and isinstance(v, str) for k, v in kernels.items())
    ):
        raise c.fail("kernels", "must map kernel class names to what executes them",
                     "write e.g. 'int8: QLinearConv (ORT CPU, VNNI)'")  # fmt: skip
    kernels = {str(k): str(v) for k, v in kernels.items()}
    rules = _rules(data["rules"], kernels, c)
    batch = _positive_int(data["batch"], "batch", c)
    threads_raw = data["threads"]
    threads_list = threads_raw if isinstance(threads_raw, list) else [threads_raw]
    if not threads_list:
        raise c.fail("threads", "empty", "write e.g. [1, 2]")
    threads = tuple(_positive_int(t, "threads", c) for t in threads_list)

    tables: dict[str, Path] = {}
    raw_tables = data.get("tables") or {}
    if not isinstance(raw_tables, Mapping):
        raise c.fail("tables", "is not a mapping", "write e.g. 'layers: gpu-h100/layers.csv'")
    for key, rel in raw_tables.items():
        if key not in TABLE_KEYS:
            raise c.fail(f"tables.{key}", "unknown table", f"use {', '.join(TABLE_KEYS)}")
        p = Path(str(rel))
        p = p if p.is_absolute() else path.parent / p
        if not p.is_file():
            raise c.fail(f"tables.{key}", f"file {p} not found",
                         "measure it, restore it, or fix the path (relative to the YAML)")  # fmt: skip
        tables[str(key)] = p
    if tables and "layers" not in tables:
        raise c.fail("tables", "has no 'layers' table", "add 'layers: <id>/layers.csv'")

    energy = data.get("energy", False)
    if not isinstance(energy, bool):
        raise c.fail(
            "energy", f"{energy!r} is not true/false", "say whether tables carry energy_uj"
        )
    peaks_raw = data.get("peaks") or {}
    if not isinstance(peaks_raw, Mapping):
        raise c.fail("peaks", "is not a mapping", "write e.g. 'int8_gops: 725'")
    peaks: dict[str, float] = {}
    for key, value in peaks_raw.items():
        key = str(key)
        owner = next((key[: -len(s)] for s in PEAK_SUFFIXES if key.endswith(s)), None)
        if key not in PEAK_GLOBALS and owner not in kernels:
            raise c.fail(f"peaks.{key}", "is neither a global peak nor <kernel class>_gops / "
                         "<kernel class>_overhead_us of a declared kernel",
                         f"use {', '.join(PEAK_GLOBALS)} or e.g. {next(iter(kernels))}_gops")  # fmt: skip
        if (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or not math.isfinite(value)
            or value < 0
            or (value == 0 and not key.endswith("overhead_us"))
        ):
            raise c.fail(f"peaks.{key}", f"{value!r} is not a positive number",
                         "give giga-ops/s, GB/s or microseconds")  # fmt: skip
        peaks[key] = float(value)
    if not tables and not any(k.endswith("_gops") for k in peaks):
        raise c.fail("tables, peaks", "neither latency tables nor compute peaks",
                     "give 'tables: {layers: ...}' or '<kernel>_gops' peaks to cost layers")  # fmt: skip

    kbits_raw = data.get("kernel_bits") or {}
    if not isinstance(kbits_raw, Mapping):
        raise c.fail("kernel_bits", "is not a mapping", "write e.g. 'bf16: [16, 16]'")
    kernel_bits: dict[str, tuple[int, int]] = {}
    for key, value in kbits_raw.items():
        if key not in kernels:
            raise c.fail(f"kernel_bits.{key}", "is not a declared kernel class",
                         f"use one of {', '.join(kernels)}")  # fmt: skip
        if (
            not isinstance(value, list)
            or len(value) != 2
            or not all(isinstance(v, int) and 1 <= v <= FLOAT_BITS for v in value)
        ):
            raise c.fail(f"kernel_bits.{key}", f"{value!r} is not [w_bits, a_bits]",
                         "write e.g. [16, 16]")  # fmt: skip
        kernel_bits[str(key)] = (int(value[0]), int(value[1]))
    aliases_raw = data.get("transition_aliases") or {}
    if not isinstance(aliases_raw, Mapping):
        raise c.fail("transition_aliases", "is not a mapping", "write e.g. 'matmulnbits4: fp32'")
    for key, value in aliases_raw.items():
        for name in (key, value):
            if name not in kernels:
                raise c.fail(f"transition_aliases.{key}", f"{name!r} is not a declared kernel "
                             "class", f"use one of {', '.join(kernels)}")  # fmt: skip
    notes = data.get("notes") or ""
    return HardwareProfile(
        id=pid, kind=kind, description=data["description"].strip(), provenance=prov,
        provenance_details=dict(details), kernels=kernels, rules=rules, batch=batch,
        threads=threads, tables=tables, energy=energy, peaks=peaks, path=path,
        kernel_bits=kernel_bits, notes=str(notes).strip(),
        transition_aliases={str(k): str(v) for k, v in aliases_raw.items()},
    )  # fmt: skip


# Writing ----------------------------------------------------------------------------------
def rule_dicts(rules: Sequence[KernelRule]) -> list[dict[str, Any]]:
    """Rules as the YAML `load_profile` reads them (inclusive bit ranges, null = float)."""
    return [
        {
            "ops": list(r.ops),
            "w": list(r.w) if r.w else None,
            "a": list(r.a) if r.a else None,
            "kernel": r.kernel,
            **({"granularity": r.granularity} if r.granularity else {}),
            **({"activations": r.activations} if r.activations != "static" else {}),
        }
        for r in rules
    ]


def write_profile(path: str | Path, doc: Mapping[str, Any], header: str = "") -> None:
    """Atomically write a profile YAML (the fields `load_profile` reads), ``header`` first."""
    text = yaml.safe_dump(dict(doc), sort_keys=False, width=100, default_flow_style=None)
    atomic_write_text(Path(path), header + text)


def _profiles_dir() -> Path:
    from haq.paths import data_dir

    return data_dir("hardware_profiles")


def target_ids() -> list[str]:
    """Ids of the profiles in the data folder (file stems; nothing is parsed)."""
    folder = _profiles_dir()
    return sorted(p.stem for p in folder.glob("*.yaml")) if folder.is_dir() else []


def list_targets() -> list[HardwareProfile]:
    """Every profile in ``hardware_profiles/``, loaded and validated, sorted by id."""
    folder = _profiles_dir()
    return [load_profile(folder / f"{i}.yaml") for i in target_ids()]


def get_target(target: str | Path | HardwareProfile) -> HardwareProfile:
    """A profile by id (``gpu-h100``), by the path of a YAML file, or passed through."""
    if isinstance(target, HardwareProfile):
        return target
    text = str(target)
    if text.endswith((".yaml", ".yml")) or "/" in text:
        return load_profile(text)
    path = _profiles_dir() / f"{text}.yaml"
    if not path.is_file():
        known = ", ".join(target_ids()) or "none installed"
        raise HaqError(f"unknown target {text!r}; use one of {known} (see `haq targets`) "
                       "or the path of a profile .yaml")  # fmt: skip
    return load_profile(path)
