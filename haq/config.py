"""Per-layer precision assignments: `Precision` and the immutable `BitConfig` mapping.

A config names, for each quantizable layer (module path), the weight and activation bits, or
float. Strings: ``w8a8`` (8-bit weights, 8-bit activations), ``w4a32`` (4-bit weights, float
activations: weight-only), ``fp32`` (float). Bits 32 always means float. A config may also name
the post-training refinement its weights get (``ptq``, e.g. ``adaround``): a driver's choice
per candidate, which overrides the command's ``--ptq``; unset, the command's applies.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from haq.errors import HaqError
from haq.ptq import canonical_ptq

MIN_BITS = 2
MAX_BITS = 16
FLOAT_BITS = 32
#: How a layer's weight scales are laid out, and how its quantized input gets its grid
#: (`haq.quant.settings.QuantSettings`; kernel rules match on both: `haq.hardware.profile`).
GRANULARITIES = ("channel", "tensor", "group")
ACTIVATION_MODES = ("static", "dynamic", "dynamic-token")

_PRECISION_RE = re.compile(r"^w(\d+)(?:a(\d+|f|fp|fp32|float))?$")


@dataclass(frozen=True, order=True)
class Precision:
    """Weight and activation bits of one layer; ``None`` means that side stays float."""

    w_bits: int | None = None
    a_bits: int | None = None

    def __post_init__(self) -> None:
        for side, bits in (("weight", self.w_bits), ("activation", self.a_bits)):
            if bits is not None and not (MIN_BITS <= bits <= MAX_BITS):
                raise HaqError(
                    f"{side} bits {bits} outside {MIN_BITS}..{MAX_BITS}; "
                    f"use {MIN_BITS}..{MAX_BITS} bits or 32 (float)"
                )

    @property
    def is_float(self) -> bool:
        return self.w_bits is None and self.a_bits is None

    @property
    def weight_only(self) -> bool:
        return self.w_bits is not None and self.a_bits is None

    def __str__(self) -> str:
        if self.is_float:
            return "fp32"
        return f"w{self.w_bits or FLOAT_BITS}a{self.a_bits or FLOAT_BITS}"

    @classmethod
    def parse(cls, text: str | Precision) -> Precision:
        """Parse ``w8a8``, ``w4a32``/``w4``, ``fp32``/``float``."""
        if isinstance(text, Precision):
            return text
        s = str(text).strip().lower()
        if s in {"fp32", "float", "fp", "float32", "w32a32"}:
            return FLOAT
        m = _PRECISION_RE.match(s)
        if not m:
            raise HaqError(
                f"cannot read precision {text!r}; write e.g. 'w8a8', 'w4a8', 'w4a32' (weight-only) or 'fp32'"
            )
        w = int(m.group(1))
        a_text = m.group(2)
        a = FLOAT_BITS if a_text is None or not a_text.isdigit() else int(a_text)
        return cls(None if w == FLOAT_BITS else w, None if a == FLOAT_BITS else a)

    def bops_factor(self) -> int:
        """Bits multiplied per MAC (32 for a float side), the usual BOPs weighting."""
        return (self.w_bits or FLOAT_BITS) * (self.a_bits or FLOAT_BITS)


FLOAT = Precision()


class BitConfig(Mapping[str, Precision]):
    """Immutable mapping layer name -> `Precision`, with an optional default for unnamed layers.

    ``resolve(layer_names)`` turns it into an explicit config for one model (what searches,
    cost models and exports work with). ``hash`` is stable across processes and key order.
    ``ptq`` (canonical spelling, or None: the command's ``--ptq``) is part of the identity.
    """

    __slots__ = ("_layers", "_default", "_ptq", "_hash")

    def __init__(
        self,
        layers: Mapping[str, Precision | str] | None = None,
        default: Precision | str | None = None,
        ptq: str | None = None,
    ) -> None:
        items = {str(k): Precision.parse(v) for k, v in (layers or {}).items()}
        self._layers: dict[str, Precision] = items
        self._default: Precision | None = None if default is None else Precision.parse(default)
        self._ptq: str | None = None if ptq is None else canonical_ptq(str(ptq))
        self._hash: str | None = None

    # Mapping protocol -------------------------------------------------------------------
    def __getitem__(self, name: str) -> Precision:
        if name in self._layers:
            return self._layers[name]
        if self._default is not None:
            return self._default
        raise KeyError(name)

    def __iter__(self) -> Iterator[str]:
        return iter(self._layers)

    def __len__(self) -> int:
        return len(self._layers)

    def __contains__(self, name: object) -> bool:
        return name in self._layers

    @property
    def default(self) -> Precision | None:
        return self._default

    @property
    def ptq(self) -> str | None:
        """The refinement this config's weights get; None: whatever the command's ``--ptq``."""
        return self._ptq

    def with_ptq(self, ptq: str | None) -> BitConfig:
        """The same precisions under another refinement (None: the command's)."""
        return BitConfig(self._layers, self._default, ptq)

    # Construction -----------------------------------------------------------------------
    @classmethod
    def uniform(
        cls, precision: Precision | str, layer_names: Iterable[str] | None = None
    ) -> BitConfig:
        """Every layer at one precision; explicit when ``layer_names`` is given."""
        p = Precision.parse(precision)
        if layer_names is None:
            return cls(default=p)
        return cls({n: p for n in layer_names})

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> BitConfig:
        """Read ``{"default": "w8a8", "layers": {...}, "ptq": ...}`` or a flat ``{layer: precision}``."""
        if not isinstance(data, Mapping):
            raise HaqError("config must be a mapping: {default: w8a8, layers: {name: w4a8}}")
        if "layers" in data or "default" in data:
            unknown = set(data) - {"layers", "default", "ptq", "meta"}
            if unknown:
                raise HaqError(
                    f"unknown config keys {sorted(unknown)}; a config holds 'default', 'layers' and 'ptq'"
                )
            layers = data.get("layers") or {}
            if not isinstance(layers, Mapping):
                raise HaqError("config 'layers' must map layer names to precisions like 'w8a8'")
            return cls(layers, data.get("default"), data.get("ptq"))
        return cls(data)

    @classmethod
    def from_spec(cls, spec: str | Path | BitConfig) -> BitConfig:
        """A shorthand (``w8a8``, ``fp32``) or the path of a JSON/YAML config file."""
        if isinstance(spec, BitConfig):
            return spec
        text = str(spec)
        path = Path(text)
        if path.suffix.lower() in {".json", ".yaml", ".yml"} or path.exists():
            return cls.load(path)
        try:
            return cls.uniform(text)
        except HaqError as e:
            raise HaqError(
                f"--bits {text!r} is neither a precision shorthand (fp32, w8a8, w4a8, w6a6, w4a32) "
                "nor an existing .yaml/.json config file"
            ) from e

    @classmethod
    def load(cls, path: str | Path) -> BitConfig:
        path = Path(path)
        if not path.is_file():
            raise HaqError(f"config file {path} not found; pass an existing .yaml or .json file")
        try:
            data = yaml.safe_load(path.read_text())  # YAML is a superset of JSON
        except yaml.YAMLError as e:
            mark = getattr(e, "problem_mark", None)
            where = f" (line {mark.line + 1})" if mark else ""
            raise HaqError(
                f"config file {path} is not valid YAML/JSON{where}; fix its syntax"
            ) from e
        if data is None:
            raise HaqError(f"config file {path} is empty; write e.g. 'default: w8a8'")
        try:
            return cls.from_dict(data)
        except HaqError as e:
            raise HaqError(f"config file {path}: {e}") from e

    # Views ------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if self._default is not None:
            out["default"] = str(self._default)
        out["layers"] = {k: str(v) for k, v in self._layers.items()}
        if self._ptq is not None:
            out["ptq"] = self._ptq
        return out

    def to_json(self, **kwargs: Any) -> str:
        return json.dumps(self.to_dict(), **kwargs)

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False)

    def save(self, path: str | Path) -> None:
        from haq.io import atomic_write_text

        path = Path(path)
        text = self.to_json(indent=2) if path.suffix.lower() == ".json" else self.to_yaml()
        atomic_write_text(path, text)

    @property
    def quantizes_activations(self) -> bool:
        """Whether any layer (or the default) quantizes activations: calibration is needed."""
        precisions = [*self._layers.values(), *([self._default] if self._default else [])]
        return any(p.a_bits is not None for p in precisions)

    @property
    def hash(self) -> str:
        """Stable 16-hex digest of the canonical (sorted) content (configs without a ``ptq``
        keep the digest they had before configs could carry one)."""
        if self._hash is None:
            content: dict[str, Any] = {
                "d": str(self._default) if self._default else None,
                "l": sorted((k, str(v)) for k, v in self._layers.items()),
            }
            if self._ptq is not None:
                content["p"] = self._ptq
            canon = json.dumps(content, separators=(",", ":"))
            self._hash = hashlib.sha256(canon.encode()).hexdigest()[:16]
        return self._hash

    def __hash__(self) -> int:
        return hash(self.hash)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, BitConfig):
            return NotImplemented
        return (
            self._default == other._default
            and self._layers == other._layers
            and self._ptq == other._ptq
        )

    def __reduce__(
        self,
    ) -> tuple[type[BitConfig], tuple[dict[str, Precision], Precision | None, str | None]]:
        """Pickle as the constructor call (any protocol; sent to evaluation workers)."""
        return (BitConfig, (dict(self._layers), self._default, self._ptq))

    def __repr__(self) -> str:
        return f"BitConfig({self.summary()})"

    def summary(self) -> str:
        """Short human text: ``w8a8 x17, fp32 x2`` (counts per precision)."""
        counts: dict[str, int] = {}
        for p in self._layers.values():
            counts[str(p)] = counts.get(str(p), 0) + 1
        parts = [f"{k} x{v}" for k, v in sorted(counts.items(), key=lambda kv: -kv[1])]
        if self._default is not None:
            parts.append(f"default {self._default}")
        text = ", ".join(parts) or "empty"
        return text if self._ptq is None else f"{text} ({self._ptq})"

    # Against a model --------------------------------------------------------------------
    def validate(self, layer_names: Iterable[str]) -> None:
        """Raise a one-line `HaqError` for names the model lacks or layers left unassigned."""
        names = list(layer_names)
        known = set(names)
        unknown = [n for n in self._layers if n not in known]
        if unknown:
            hint = ", ".join(names[:3]) + (", ..." if len(names) > 3 else "")
            raise HaqError(
                f"config names {len(unknown)} layer(s) the model does not have ({', '.join(unknown[:3])}"
                f"{', ...' if len(unknown) > 3 else ''}); use names from `haq layers` (e.g. {hint})"
            )
        if self._default is None:
            missing = [n for n in names if n not in self._layers]
            if missing:
                raise HaqError(
                    f"config gives no precision for {len(missing)} layer(s) ({', '.join(missing[:3])}"
                    f"{', ...' if len(missing) > 3 else ''}); add them or set 'default:'"
                )

    def resolve(self, layer_names: Iterable[str]) -> BitConfig:
        """An explicit config over exactly ``layer_names`` (in that order), validated."""
        names = list(layer_names)
        self.validate(names)
        return BitConfig({n: self[n] for n in names}, ptq=self._ptq)
