"""Cross-layer equalization (Nagel et al. 2019, "Data-Free Quantization").

For two layers A -> (ReLU) -> B where B is the only reader of A's (activated) output, scaling
A's output channel i by 1/s_i and B's input channel i by s_i leaves the network's function
unchanged (ReLU is positively homogeneous). Choosing ``s_i = sqrt(r1_i / r2_i)`` from the
channel ranges of A's rows and B's columns gives both the same range ``sqrt(r1_i r2_i)``, so
per-tensor (and per-channel) weight grids waste fewer levels on a few wide channels; this is
what makes depthwise networks quantizable per tensor. Chains (A -> B -> C) are swept until the
scales settle.

A ReLU6 (or ``Hardtanh(0, 6)``) between A and B clips at a fixed 6 that the scaling would
move, so, as in the paper (section 5) and AIMET, it is replaced by a ReLU in the model first
(only where it runs once, between that pair): a deliberate change of the function, without
which no MobileNetV2 block could be equalized. The scaling keeps the replaced model's function;
the ReLU6 of a pair that is undone (below) is put back.

High-bias absorption (section 4.1.1) then follows, for A -> ReLU -> B where a BatchNorm was
folded into A: channel i of A's pre-activation is about N(beta_i, gamma_i) (the BatchNorm's
shift and |scale|, divided by the CLE scale), so ``c_i = max(0, beta_i - 3 gamma_i)`` is moved
from A's bias into B's (B's weights times c). ReLU(x - c) = ReLU(x) - c for x >= c, so the
function is kept except on the 3-sigma tail and where B reads its zero padding (the paper
ignores both), and A's activation range shrinks by c.

Pairs are found on the tensor dataflow of one probe pass (module calls only). A reader the
hooks cannot see (functional code reusing the tensor) would make the rescaling change the
function, so the result is checked on a probe input and any pair that changes it is undone.
The check covers the scaling alone, which is exact: absorption runs after it, on the pairs
kept, since its by-design tail error on a random probe input (whose pre-activations follow no
BatchNorm's statistics) would say nothing about hidden readers.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

from haq.models.layers import probe
from haq.quant.fold import FoldedBN

SWEEPS = 20
TOLERANCE = 1e-3  # relative output change on the probe input that counts as "function kept"
SIGMAS = 3.0  # absorption keeps the function for pre-activations above beta - SIGMAS * gamma
_PASS_THROUGH = (nn.Identity, nn.Dropout)  # return their input: not readers of their own
_WEIGHTED = (nn.Conv2d, nn.Linear)


@dataclass(frozen=True)
class _Call:
    name: str
    module: nn.Module
    inp: int  # id of the input tensor
    out: int  # id of the output tensor


@dataclass(frozen=True)
class Pair:
    """Layers ``a`` -> ``b``; ``relu``: an activation joins them (absorption applies), of
    which the ``relu6`` modules must become ReLUs before scaling."""

    a: str
    b: str
    relu: bool = False
    relu6: tuple[str, ...] = ()


def _calls(model: nn.Module, example_input: torch.Tensor) -> list[_Call]:
    names = {m: n for n, m in model.named_modules()}
    calls: list[_Call] = []
    keep: list[torch.Tensor] = []  # keep tensors alive so ids are not reused

    def hook(mod: nn.Module, inp: tuple[torch.Tensor, ...], out: torch.Tensor) -> None:
        if inp and isinstance(inp[0], torch.Tensor) and isinstance(out, torch.Tensor):
            keep.extend((inp[0], out))
            calls.append(_Call(names[mod], mod, id(inp[0]), id(out)))

    leaves = [m for m in model.modules() if not list(m.children())]
    probe(model, example_input, [m.register_forward_hook(hook) for m in leaves])
    return calls


def _clips_at_6(m: nn.Module) -> bool:
    return isinstance(m, nn.Hardtanh) and m.min_val == 0 and m.max_val == 6  # ReLU6 included


def _activation(m: nn.Module) -> bool:
    return isinstance(m, nn.ReLU) or _clips_at_6(m)


def equalization_pairs(model: nn.Module, example_input: torch.Tensor) -> list[Pair]:
    """Conv/linear pairs joined by nothing or ReLU/ReLU6, B the only module reading it."""
    calls = _calls(model, example_input)
    readers: dict[int, list[_Call]] = {}
    in_place: dict[int, list[_Call]] = {}  # tensor -> the modules that modified it in place
    for c in calls:
        if isinstance(c.module, _PASS_THROUGH):
            continue
        if c.out == c.inp:
            in_place.setdefault(c.inp, []).append(c)
        else:
            readers.setdefault(c.inp, []).append(c)
    times = Counter(c.name for c in calls)

    def only_reader(tensor: int) -> _Call | None:
        r = readers.get(tensor, [])
        return r[0] if len(r) == 1 and times[r[0].name] == 1 else None

    pairs = []
    for a in calls:
        if not isinstance(a.module, _WEIGHTED) or times[a.name] != 1:
            continue
        acts = in_place.get(a.out, [])
        nxt = only_reader(a.out)
        if nxt is not None and _activation(nxt.module) and not acts:
            acts = [nxt, *in_place.get(nxt.out, [])]
            nxt = only_reader(nxt.out)
        relu6 = tuple(c.name for c in acts if _clips_at_6(c.module))
        if (
            nxt is not None
            and isinstance(nxt.module, _WEIGHTED)
            and _fits(a.module, nxt.module)
            and all(_activation(c.module) for c in acts)
            and all(times[n] == 1 for n in relu6)  # a shared ReLU6 also clips elsewhere
        ):
            pairs.append(Pair(a.name, nxt.name, bool(acts), relu6))
    return pairs


def _fits(a: nn.Module, b: nn.Module) -> bool:
    out_a = a.out_channels if isinstance(a, nn.Conv2d) else a.out_features
    in_b = b.in_channels if isinstance(b, nn.Conv2d) else b.in_features
    return out_a == in_b


def _out_ranges(a: nn.Conv2d | nn.Linear) -> torch.Tensor:
    return a.weight.detach().reshape(a.weight.shape[0], -1).abs().amax(dim=1)


def _in_ranges(b: nn.Conv2d | nn.Linear) -> torch.Tensor:
    """Range of B's weights per input channel (grouped convs: within the channel's group)."""
    w = b.weight.detach().abs()
    if isinstance(b, nn.Linear):
        return w.amax(dim=0)
    return w.reshape(b.groups, w.shape[0] // b.groups, w.shape[1], -1).amax(dim=(1, 3)).reshape(-1)


@torch.no_grad()
def _scale_pair(a: nn.Conv2d | nn.Linear, b: nn.Conv2d | nn.Linear) -> torch.Tensor:
    """Equalize one pair in place; returns the scales A's output channels were divided by."""
    r1, r2 = _out_ranges(a), _in_ranges(b)
    ok = (r1 > 0) & (r2 > 0)
    s = torch.where(ok, torch.sqrt(r1 / torch.where(ok, r2, 1.0)), torch.ones_like(r1))
    shape_a = (-1,) + (1,) * (a.weight.dim() - 1)
    a.weight.div_(s.reshape(shape_a).to(a.weight.dtype))
    if a.bias is not None:
        a.bias.div_(s.to(a.bias.dtype))
    _scale_inputs(b, s)
    return s


def _scale_inputs(b: nn.Conv2d | nn.Linear, s: torch.Tensor) -> None:
    w = b.weight.detach()
    if isinstance(b, nn.Linear):
        w.mul_(s.reshape(1, -1).to(w.dtype))
        return
    groups, out, cpg = b.groups, w.shape[0], w.shape[1]
    per = s.reshape(groups, 1, cpg, 1).to(w.dtype)
    w.view(groups, out // groups, cpg, -1).mul_(per)


def constant_response(w: torch.Tensor, groups: int, c: torch.Tensor) -> torch.Tensor:
    """A conv/linear weight ``w``'s output, bias left out, to input channel i held at ``c_i``
    (no zero padding read; grouped convs within their group): high-bias absorption's shift of
    B, and bias correction's mean output error of a weight error."""
    c = c.to(w.dtype)
    if w.dim() == 2:
        return w @ c
    out, cpg = w.shape[0], w.shape[1]
    per = c.reshape(groups, 1, cpg, 1)
    return (w.reshape(groups, out // groups, cpg, -1) * per).sum(dim=(2, 3)).reshape(out)


@torch.no_grad()
def absorb_high_bias(
    a: nn.Conv2d | nn.Linear, b: nn.Conv2d | nn.Linear, beta: torch.Tensor, gamma: torch.Tensor
) -> torch.Tensor:
    """Move ``c = max(0, beta - 3 gamma)`` of A's pre-activation (per channel about
    N(beta, gamma)) through the ReLU into B's bias; returns c."""
    assert a.bias is not None  # A's BatchNorm was folded into a bias
    c = (beta - SIGMAS * gamma).clamp(min=0).to(a.bias.dtype)
    a.bias.sub_(c)
    shift = constant_response(b.weight.detach(), b.groups if isinstance(b, nn.Conv2d) else 1, c)
    if b.bias is None:
        b.bias = nn.Parameter(shift, requires_grad=b.weight.requires_grad)
    else:
        b.bias.add_(shift.to(b.bias.dtype))
    return c


def _output(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model(x).detach().clone()


def _unchanged(model: nn.Module, x: torch.Tensor, before: torch.Tensor) -> bool:
    after = _output(model, x)
    return bool((after - before).abs().max() <= TOLERANCE * (before.abs().max() + 1e-12))


@torch.no_grad()
def equalize(
    model: nn.Module, example_input: torch.Tensor, folded: Sequence[FoldedBN] = ()
) -> list[tuple[str, str]]:
    """Equalize every pair of ``model`` in place, then absorb the high biases of those whose
    A has its BatchNorm's statistics in ``folded``; returns the (A, B) pairs kept."""
    pairs = equalization_pairs(model, example_input)
    if not pairs:
        return []
    clips = {n: model.get_submodule(n) for p in pairs for n in p.relu6}
    for name, clip in clips.items():
        model.set_submodule(name, nn.ReLU(inplace=clip.inplace))
    x = torch.randn((4, *example_input.shape[1:]), generator=torch.Generator().manual_seed(0))
    before = _output(model, x)  # with the ReLUs: the scaling must keep exactly this function
    saved = _snapshot(model, {n for p in pairs for n in (p.a, p.b)})
    scales = _sweep(model, pairs)
    kept = pairs
    if not _unchanged(model, x, before):
        _restore(model, saved)  # some reader was invisible to the probe: keep pairs one by one
        kept, scales = [], {}
        for pair in pairs:
            trial = _snapshot(model, {pair.a, pair.b})
            scale = _sweep(model, [pair])
            if _unchanged(model, x, before):
                kept.append(pair)
                scales.update(scale)
            else:
                _restore(model, trial)
        for name in {n for p in pairs if p not in kept for n in p.relu6}:
            model.set_submodule(name, clips[name])
    stats = {f.conv: f for f in folded}
    for p in kept:
        if p.relu and p.a in stats:
            a, b, s = model.get_submodule(p.a), model.get_submodule(p.b), scales[p.a]
            absorb_high_bias(a, b, stats[p.a].beta / s, stats[p.a].gamma / s)
    return [(p.a, p.b) for p in kept]


def _sweep(model: nn.Module, pairs: list[Pair]) -> dict[str, torch.Tensor]:
    """Rescale until the scales settle; returns each A's total scale (its outputs divided)."""
    total: dict[str, torch.Tensor] = {}
    for _ in range(SWEEPS):
        change = 0.0
        for p in pairs:
            ma, mb = model.get_submodule(p.a), model.get_submodule(p.b)
            assert isinstance(ma, _WEIGHTED) and isinstance(mb, _WEIGHTED)
            s = _scale_pair(ma, mb)
            total[p.a] = total[p.a] * s if p.a in total else s
            change = max(change, float(s.log().abs().max()))
        if change < 1e-4:
            break
    return total


def _snapshot(
    model: nn.Module, names: set[str]
) -> dict[str, tuple[torch.Tensor, torch.Tensor | None]]:
    out = {}
    for n in names:
        m = model.get_submodule(n)
        out[n] = (m.weight.detach().clone(), None if m.bias is None else m.bias.detach().clone())
    return out


def _restore(model: nn.Module, saved: dict[str, tuple[torch.Tensor, torch.Tensor | None]]) -> None:
    for name, (w, b) in saved.items():
        m = model.get_submodule(name)
        m.weight.data.copy_(w)
        if b is not None:
            m.bias.data.copy_(b)
