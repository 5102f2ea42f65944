"""Cross-layer equalization (Nagel et al. 2019, "Data-Free Quantization").

For two layers A -> (ReLU) -> B where B is the only reader of A's (activated) output, scaling
A's output channel i by 1/s_i and B's input channel i by s_i leaves the network's function
unchanged (ReLU is positively homogeneous). Choosing ``s_i = sqrt(r1_i / r2_i)`` from the
channel ranges of A's rows and B's columns gives both the same range ``sqrt(r1_i r2_i)``, so
per-tensor (and per-channel) weight grids waste fewer levels on a few wide channels; this is
what makes depthwise networks quantizable per tensor. Chains (A -> B -> C) are swept until the
scales settle.

Pairs are found on the tensor dataflow of one probe pass (module calls only). A reader the
hooks cannot see (functional code reusing the tensor) would make the rescaling change the
function, so the result is checked on a probe input and any pair that changes it is undone.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from haq.models.layers import probe

SWEEPS = 20
TOLERANCE = 1e-3  # relative output change on the probe input that counts as "function kept"
_PASS_THROUGH = (nn.Identity, nn.Dropout)  # return their input: not readers of their own


@dataclass(frozen=True)
class _Call:
    name: str
    module: nn.Module
    inp: int  # id of the input tensor
    out: int  # id of the output tensor


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


def equalization_pairs(model: nn.Module, example_input: torch.Tensor) -> list[tuple[str, str]]:
    """(A, B) conv/linear pairs joined by nothing or one ReLU, B the only module reading it."""
    calls = _calls(model, example_input)
    readers: dict[int, list[_Call]] = {}
    in_place: dict[int, nn.Module] = {}  # tensor -> the module that modified it in place
    for c in calls:
        if isinstance(c.module, _PASS_THROUGH):
            continue
        if c.out == c.inp:
            in_place[c.inp] = c.module
        else:
            readers.setdefault(c.inp, []).append(c)
    times = {c.name: sum(d.name == c.name for d in calls) for c in calls}
    weighted = (nn.Conv2d, nn.Linear)

    def only_reader(tensor: int) -> _Call | None:
        if not isinstance(in_place.get(tensor, nn.ReLU()), nn.ReLU):
            return None  # an in-place activation other than ReLU
        r = readers.get(tensor, [])
        return r[0] if len(r) == 1 and times[r[0].name] == 1 else None

    pairs = []
    for a in calls:
        if not isinstance(a.module, weighted) or times[a.name] != 1:
            continue
        nxt = only_reader(a.out)
        if nxt is not None and isinstance(nxt.module, nn.ReLU) and a.out not in in_place:
            nxt = only_reader(nxt.out)
        if nxt is not None and isinstance(nxt.module, weighted) and _fits(a.module, nxt.module):
            pairs.append((a.name, nxt.name))
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
def _scale_pair(a: nn.Conv2d | nn.Linear, b: nn.Conv2d | nn.Linear) -> float:
    """Equalize one pair in place; returns the largest |log s| applied."""
    r1, r2 = _out_ranges(a), _in_ranges(b)
    ok = (r1 > 0) & (r2 > 0)
    s = torch.where(ok, torch.sqrt(r1 / torch.where(ok, r2, 1.0)), torch.ones_like(r1))
    shape_a = (-1,) + (1,) * (a.weight.dim() - 1)
    a.weight.div_(s.reshape(shape_a).to(a.weight.dtype))
    if a.bias is not None:
        a.bias.div_(s.to(a.bias.dtype))
    _scale_inputs(b, s)
    return float(s.log().abs().max())


def _scale_inputs(b: nn.Conv2d | nn.Linear, s: torch.Tensor) -> None:
    w = b.weight.detach()
    if isinstance(b, nn.Linear):
        w.mul_(s.reshape(1, -1).to(w.dtype))
        return
    groups, out, cpg = b.groups, w.shape[0], w.shape[1]
    per = s.reshape(groups, 1, cpg, 1).to(w.dtype)
    w.view(groups, out // groups, cpg, -1).mul_(per)


def _output(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model(x).detach().clone()


def _unchanged(model: nn.Module, x: torch.Tensor, before: torch.Tensor) -> bool:
    after = _output(model, x)
    return bool((after - before).abs().max() <= TOLERANCE * (before.abs().max() + 1e-12))


@torch.no_grad()
def equalize(model: nn.Module, example_input: torch.Tensor) -> list[tuple[str, str]]:
    """Equalize every pair of ``model`` in place; returns the pairs kept."""
    pairs = equalization_pairs(model, example_input)
    if not pairs:
        return []
    x = torch.randn((4, *example_input.shape[1:]), generator=torch.Generator().manual_seed(0))
    before = _output(model, x)
    saved = _snapshot(model, {n for pair in pairs for n in pair})
    _sweep(model, pairs)
    if _unchanged(model, x, before):
        return pairs
    _restore(model, saved)  # some reader was invisible to the probe: keep pairs one by one
    kept: list[tuple[str, str]] = []
    for pair in pairs:
        trial = _snapshot(model, set(pair))
        _sweep(model, [pair])
        if _unchanged(model, x, before):
            kept.append(pair)
        else:
            _restore(model, trial)
    return kept


def _sweep(model: nn.Module, pairs: list[tuple[str, str]]) -> None:
    for _ in range(SWEEPS):
        change = 0.0
        for a, b in pairs:
            ma, mb = model.get_submodule(a), model.get_submodule(b)
            assert isinstance(ma, nn.Conv2d | nn.Linear) and isinstance(mb, nn.Conv2d | nn.Linear)
            change = max(change, _scale_pair(ma, mb))
        if change < 1e-4:
            return


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
