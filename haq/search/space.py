"""The search space: per-layer precision choices for one model on one target.

Candidates come from a ``search_spaces/*.yaml`` set (by layer kind), are intersected with what
the target can run, and then shaped by pins (a layer fixed to one precision) and ties (layers
that must share a precision, e.g. a residual downsample and its branch). A tie group is one
search variable. ``ptq`` lists the post-training refinements a driver may pick per candidate
(``--ptq none,adaround``): the first is the search's default, which configs leave unnamed.
"""

from __future__ import annotations

import fnmatch
import functools
import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from haq.config import BitConfig, Precision
from haq.errors import HaqError
from haq.models.spec import LayerSpec
from haq.paths import data_dir

CanRun = Callable[[str, Precision], bool]
TEXT_SPACE = "text"  # the default space of text models (search_spaces/text.yaml)


def space_for(space: str, text: bool) -> str:
    """The space a search uses: a text model's ``default`` is its Linear kernels' space."""
    return TEXT_SPACE if text and space == "default" else space


PTQ_PARAM = "@ptq"  # the sampled parameter that picks a candidate's refinement (never a layer name)


def load_candidates(space: str | Path) -> dict[str, list[Precision]]:
    """Candidates per layer kind from a space name (``default``) or a YAML path."""
    path = Path(space)
    if not path.suffix:
        path = data_dir("search_spaces") / f"{space}.yaml"
    if not path.is_file():
        names = sorted(p.stem for p in data_dir("search_spaces").glob("*.yaml"))
        raise HaqError(
            f"unknown search space {space!r}; use one of {', '.join(names)} or a .yaml path"
        )
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as e:
        raise HaqError(f"search space {path} is not valid YAML; fix its syntax") from e
    if not isinstance(data, dict) or not isinstance(data.get("candidates"), dict):
        raise HaqError(
            f"search space {path} needs a 'candidates' mapping of layer kind -> precisions"
        )
    out: dict[str, list[Precision]] = {}
    for kind, items in data["candidates"].items():
        if not isinstance(items, list) or not items:
            raise HaqError(f"search space {path}: candidates for {kind!r} must be a non-empty list")
        out[str(kind)] = [Precision.parse(p) for p in items]
    return out


def _parse_pins(pins: Sequence[str] | dict[str, str] | None) -> list[tuple[str, Precision]]:
    """``["first=w8a8", "layer4.*=fp32"]`` -> ordered (pattern, precision) pairs."""
    if not pins:
        return []
    items = (
        pins.items()
        if isinstance(pins, dict)
        else (p.split("=", 1) if "=" in p else (p, "") for p in pins)
    )
    out = []
    for pattern, prec in items:
        if not prec:
            raise HaqError(
                f"pin {pattern!r} needs a precision: write LAYER=PRECISION, e.g. first=w8a8"
            )
        out.append((pattern.strip(), Precision.parse(prec.strip())))
    return out


@dataclass
class SearchSpace:
    """Per-layer choices; ``variables`` are the independent choices a driver samples."""

    layers: list[LayerSpec]
    choices: dict[str, list[Precision]]  # layer -> allowed precisions (after target + pins)
    groups: list[list[str]]  # tie groups, each a list of layer names; singletons for the rest
    pinned: dict[str, Precision] = field(default_factory=dict)
    ptq: tuple[str, ...] = ("none",)  # refinements to choose from; the first is the default

    @classmethod
    def build(
        cls,
        layers: list[LayerSpec],
        space: str | Path = "default",
        can_run: CanRun | None = None,
        pins: Sequence[str] | dict[str, str] | None = None,
        ties: Iterable[Sequence[str]] = (),
        ptq: Sequence[str] = ("none",),
    ) -> SearchSpace:
        if not layers:
            raise HaqError("the model has no Conv2d or Linear layer, so there is no precision "
                           "to search; pass a model with quantizable layers")  # fmt: skip
        candidates = load_candidates(space)
        names = [s.name for s in layers]
        choices: dict[str, list[Precision]] = {}
        for spec in layers:
            kind_choices = candidates.get(spec.kind) or candidates.get(
                "conv" if spec.kind != "linear" else "linear"
            )
            if not kind_choices:
                raise HaqError(
                    f"search space {space!r} has no candidates for {spec.kind} layers; add a '{spec.kind}' entry"
                )
            allowed = [p for p in kind_choices if can_run is None or can_run(spec.kind, p)]
            if not allowed:
                raise HaqError(
                    f"no candidate of space {space!r} for {spec.kind} layer {spec.name} runs on this target; "
                    "pick another --space or --target"
                )
            choices[spec.name] = allowed
        pinned: dict[str, Precision] = {}
        for pattern, prec in _parse_pins(pins):
            matched = _match(pattern, names)
            if not matched:
                raise HaqError(
                    f"pin {pattern!r} matches no layer; use 'first', 'last' or names/globs from `haq layers`"
                )
            for name in matched:
                spec = layers[names.index(name)]
                if can_run is not None and not can_run(spec.kind, prec):
                    raise HaqError(
                        f"pin {name}={prec}: the target cannot run {prec} on {spec.kind} layers"
                    )
                pinned[name] = prec
                choices[name] = [prec]
        groups = cls._groups(names, ties, choices)
        return cls(layers, choices, groups, pinned, tuple(ptq))

    @staticmethod
    def _groups(
        names: list[str], ties: Iterable[Sequence[str]], choices: dict[str, list[Precision]]
    ) -> list[list[str]]:
        group_of: dict[str, int] = {}
        groups: list[list[str]] = []
        for tie in ties:
            members: list[str] = []
            for pattern in tie:
                matched = _match(pattern, names)
                if not matched:
                    raise HaqError(
                        f"tie member {pattern!r} matches no layer; use names from `haq layers`"
                    )
                members += [m for m in matched if m not in members]
            if len(members) < 2:
                continue
            common = [p for p in choices[members[0]] if all(p in choices[m] for m in members[1:])]
            if not common:
                raise HaqError(
                    f"tied layers {', '.join(members[:3])} share no allowed precision; untie or widen the space"
                )
            for m in members:
                if m in group_of:
                    raise HaqError(f"layer {m} is in two ties; merge them into one --tie")
                group_of[m] = len(groups)
                choices[m] = common
            groups.append(members)
        singles = [[n] for n in names if n not in group_of]
        ordered = sorted(groups + singles, key=lambda g: names.index(g[0]))
        return ordered

    # Views --------------------------------------------------------------------------------
    @property
    def names(self) -> list[str]:
        return [s.name for s in self.layers]

    def variables(self) -> list[tuple[str, list[str]]]:
        """(variable name, choices as strings) for each free group (pinned groups excluded)."""
        out = []
        for g in self.groups:
            opts = self.choices[g[0]]
            if len(opts) > 1:
                out.append((g[0], [str(p) for p in opts]))
        return out

    def sampled_variables(self) -> list[tuple[str, list[str]]]:
        """`variables` plus the refinement (`PTQ_PARAM`) when there is one to choose: what a
        sampler draws."""
        extra = [(PTQ_PARAM, list(self.ptq))] if len(self.ptq) > 1 else []
        return self.variables() + extra

    def size(self) -> int:
        return math.prod(len(opts) for _, opts in self.variables()) * len(self.ptq)

    def config(self, params: dict[str, str]) -> BitConfig:
        """The full config from a driver's choice per variable (fixed groups filled in); a
        ``PTQ_PARAM`` entry picks the refinement (the default one is left unnamed)."""
        layers: dict[str, Precision] = {}
        for g in self.groups:
            opts = self.choices[g[0]]
            p = _parse(params[g[0]]) if len(opts) > 1 else opts[0]
            for name in g:
                layers[name] = p
        return BitConfig(layers, ptq=self.ptq_of(params.get(PTQ_PARAM)))

    def ptq_of(self, choice: str | None) -> str | None:
        """A config's ``ptq`` for a refinement choice: None for the default one."""
        if choice is None or choice == self.ptq[0]:
            return None
        if choice not in self.ptq:
            raise HaqError(f"refinement {choice!r} is not among --ptq {','.join(self.ptq)}")
        return choice

    def params(self, config: BitConfig) -> dict[str, str]:
        """The variables' values that give ``config`` (for enqueuing baselines)."""
        out = {var: str(config[var]) for var, _ in self.variables()}
        if len(self.ptq) > 1:
            out[PTQ_PARAM] = config.ptq or self.ptq[0]
        return out

    def contains(self, config: BitConfig) -> bool:
        return (
            all(config[n] in self.choices[n] for n in self.names)
            and all(len({config[m] for m in g}) == 1 for g in self.groups)
            and (config.ptq is None or config.ptq in self.ptq[1:])
        )

    def uniform(self, precision: Precision | str) -> BitConfig | None:
        """Every free layer at ``precision`` (pins kept), or None if some layer cannot take it."""
        p = Precision.parse(precision)
        layers = {}
        for name in self.names:
            if name in self.pinned:
                layers[name] = self.pinned[name]
            elif p in self.choices[name]:
                layers[name] = p
            else:
                return None
        return BitConfig(layers)

    def baselines(self) -> dict[str, BitConfig]:
        """fp32, w8a8 and the lowest-bit uniform config that every layer allows."""
        out = {}
        for label in ("fp32", "w8a8"):
            cfg = self.uniform(label)
            if cfg is not None:
                out[label] = cfg
        quantized = [p for p in self._common() if not p.is_float]
        if quantized:
            lowest = min(quantized, key=lambda p: (p.bops_factor(), p.w_bits or 32))
            cfg = self.uniform(lowest)
            if cfg is not None and cfg not in out.values():
                out[f"lowest-uniform ({lowest})"] = cfg
        return out

    def _common(self) -> set[Precision]:
        """Precisions every unpinned layer allows."""
        common = set(self.choices[self.names[0]])
        for n in self.names[1:]:
            if n not in self.pinned:
                common &= set(self.choices[n])
        return common

    def seeds(self) -> dict[str, BitConfig]:
        """Baselines plus the usual deployment variants, enqueued before the driver's own
        proposals: uniform weight-only configs every layer allows (the transformer baseline,
        e.g. w8a32) and w8a8 with the first / last / both layers float."""
        out = dict(self.baselines())
        for p in sorted((p for p in self._common() if p.weight_only), reverse=True):
            cfg = self.uniform(p)
            if cfg is not None and cfg not in out.values():
                out[str(p)] = cfg
        w8 = out.get("w8a8")
        if w8 is None:
            return out
        first, last = self.names[0], self.names[-1]
        for label, float_layers in (("w8a8, first fp32", [first]), ("w8a8, last fp32", [last]),
                                    ("w8a8, ends fp32", [first, last])):  # fmt: skip
            layers = dict(w8.items())
            for name in float_layers:
                for member in next(g for g in self.groups if name in g):
                    layers[member] = Precision()
            cfg = BitConfig(layers)
            if self.contains(cfg) and cfg not in out.values():
                out[label] = cfg
        return out

    def describe(self) -> list[dict[str, object]]:
        rows = []
        for spec in self.layers:
            rows.append({"layer": spec.name, "kind": spec.kind, "choices": " ".join(str(p) for p in self.choices[spec.name]),
                         "pinned": spec.name in self.pinned,
                         "tied_to": next((g[0] for g in self.groups if spec.name in g and g[0] != spec.name), "")})  # fmt: skip
        return rows


@functools.lru_cache(maxsize=4096)
def _parse(text: str | Precision) -> Precision:
    """`Precision.parse`, memoised: drivers build thousands of configs per proposal."""
    return Precision.parse(text)


def _match(pattern: str, names: list[str]) -> list[str]:
    if pattern == "first":
        return names[:1]
    if pattern == "last":
        return names[-1:]
    if pattern in names:
        return [pattern]
    return [n for n in names if fnmatch.fnmatchcase(n, pattern)]
