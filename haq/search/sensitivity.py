"""Per-layer sensitivity: what changing one search variable alone does to the network's output.

For every search variable (a layer or tie group) and candidate precision, the config is the
reference (w8a8 where the layer allows it) with only that variable changed. Cheap proxies are
measured on the calibration images, with no validation evaluation: the mean KL divergence of
the softmax outputs from the float model's (relative to the reference's own KL), the SQNR
of the logits and, where the calibration images have labels, the change of the mean
cross-entropy loss from the reference's (``loss``; unlike KL it is negative for a change that
makes the network fit the labels better) and ``label``, the part of that change KL does not
explain (loss minus KL, per image), shrunk towards 0 by its standard error over the images:
a few hundred calibration images leave many single-layer loss changes within their noise,
and summed over the many layers of a deep network that noise outweighs the signal (on
resnet56 135 of 442 loss changes are negative, 68 of them within one standard error beyond
KL; `experiments/label_noise.py`). Optionally the HAWQ proxy: the Hessian trace of the loss
per weight (Hutchinson estimator) times the squared weight perturbation.

Accuracy does not depend on the target, so rows are cached on disk per (model weights,
calibration images, quantization settings, reference config) and reused by every later search
and target; only the (variable, precision) pairs a search needs and the cache lacks are
computed. `haq sensitivity` fills and prints the same cache.
"""

from __future__ import annotations

import hashlib
import io
import math
import os
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd

from haq.config import BitConfig, Precision
from haq.io import atomic_write_bytes
from haq.paths import cache_dir
from haq.progress import task

if TYPE_CHECKING:
    import torch

    from haq.evaluate.evaluator import LocalEvaluator
    from haq.search.space import SearchSpace

COLUMNS = ["variable", "layers", "precision", "kl", "sqnr_db", "agreement", "hessian", "loss",
           "label"]  # fmt: skip
Pair = tuple[str, str]  # (variable, precision as text)


def reference_config(space: SearchSpace) -> BitConfig:
    """w8a8 where a variable allows it, else its widest quantized choice, else float."""
    params = {}
    for var, opts in space.variables():
        if "w8a8" in opts:
            params[var] = "w8a8"
        else:
            quantized = [o for o in opts if not Precision.parse(o).is_float]
            params[var] = max(quantized or opts, key=lambda o: Precision.parse(o).bops_factor())
    return space.config(params)


def with_choice(space: SearchSpace, config: BitConfig, var: str, choice: str) -> BitConfig:
    """``config`` with every layer of variable ``var`` set to ``choice``."""
    layers = dict(config.items())
    group = next(g for g in space.groups if g[0] == var)
    for name in group:
        layers[name] = Precision.parse(choice)
    return BitConfig(layers)


@dataclass
class SensitivityTable:
    """One row per (variable, precision); ``kl`` is relative to the reference config."""

    rows: pd.DataFrame
    reference: BitConfig
    images: int
    seconds: float  # time spent computing rows in this process (0 when all came from the cache)

    def __post_init__(self) -> None:
        self._index = {(r["variable"], r["precision"]): r for r in self.rows.to_dict("records")}

    def has(self, column: str) -> bool:
        """Whether any row measured ``column`` (``loss`` needs labelled calibration images)."""
        return column in self.rows and bool(self.rows[column].notna().any())

    def score(self, var: str, choice: str, column: str = "kl") -> float:
        """The proxy's penalty of one choice (0 for the reference choice)."""
        if str(self.reference[var]) == choice:
            return 0.0
        v = self._index.get((var, choice), {}).get(column)
        return float(v) if v is not None and math.isfinite(v) else 0.0


class SensitivitySource:
    """Computes and caches proxy sensitivities for one model, calibration set and settings."""

    def __init__(
        self, evaluator: Callable[[], LocalEvaluator], model_hash: str, progress: bool = True,
        cache_root: Path | None = None, validation_key: str | None = None,
    ) -> None:  # fmt: skip
        self._make_evaluator = evaluator  # builds a LocalEvaluator on the calibration images
        self.validation_key = validation_key  # which validation images measured drops refer to
        self._evaluator: LocalEvaluator | None = None
        self.model_hash = model_hash
        self.progress = progress
        self.cache_root = cache_root or cache_dir() / "sensitivity"
        self.last: SensitivityTable | None = None  # the latest table handed out

    @property
    def evaluator(self) -> LocalEvaluator:
        if self._evaluator is None:
            self._evaluator = self._make_evaluator()
        return self._evaluator

    def cache_path(self, reference: BitConfig) -> Path:
        settings = repr(sorted(self.evaluator.quantizer.settings.to_dict().items()))
        key = f"{self.model_hash}|{self.evaluator.data.key}|{settings}|{reference.hash}"
        return self.cache_root / f"{hashlib.sha256(key.encode()).hexdigest()[:20]}.parquet"

    def orthogonality(self) -> dict[str, float]:
        """`layer_orthogonality` on the calibration images (seconds; kept in memory)."""
        if not hasattr(self, "_orthogonality"):
            ev = self.evaluator
            self._orthogonality = layer_orthogonality(ev.quantizer, ev.data.x)
        return self._orthogonality

    # Measured accuracy drops (validation images, not calibration ones) ------------------
    def drops_path(self, reference: BitConfig) -> Path | None:
        if self.validation_key is None:
            return None
        key = hashlib.sha256(self.validation_key.encode()).hexdigest()[:12]
        return self.cache_path(reference).with_name(
            f"{self.cache_path(reference).stem}-top1-{key}.parquet"
        )

    def measured_drops(self, reference: BitConfig) -> dict[Pair, float]:
        """Cached top-1 drops (points) of single-variable changes on these validation images."""
        path = self.drops_path(reference)
        if path is None:
            return {}
        rows = self._load(path)
        if "top1_drop" not in rows:
            return {}
        return {
            (v, p): float(d)
            for v, p, d in zip(rows["variable"], rows["precision"], rows["top1_drop"], strict=True)
        }

    def store_drops(self, reference: BitConfig, drops: dict[Pair, float]) -> None:
        path = self.drops_path(reference)
        if path is None or not drops:
            return
        merged = {**self.measured_drops(reference), **drops}
        rows = pd.DataFrame(
            [{"variable": v, "precision": p, "top1_drop": d} for (v, p), d in merged.items()]
        )
        buf = io.BytesIO()
        rows.to_parquet(buf, index=False)
        atomic_write_bytes(path, buf.getvalue())

    def measure_drops(self, space: SearchSpace, validation: LocalEvaluator,
                      pairs: Iterable[Pair] | None = None) -> dict[Pair, float]:  # fmt: skip
        """Evaluate every single-variable change on ``validation`` (those not cached yet)."""
        reference = reference_config(space)
        wanted = list(pairs) if pairs is not None else [
            (v, o) for v, opts in space.variables() for o in opts if str(reference[v]) != o]  # fmt: skip
        have = self.measured_drops(reference)
        missing = [p for p in wanted if p not in have]
        if missing:
            ref_acc = validation.evaluate(reference).metrics.accuracy_points()
            new = {}
            step = f"accuracy drops on {len(validation.data)} validation images"
            with task(step, len(missing), "layer choices", enabled=self.progress) as t:
                for var, choice in missing:
                    m = validation.evaluate(with_choice(space, reference, var, choice)).metrics
                    new[(var, choice)] = ref_acc - m.accuracy_points()
                    t.advance()
            self.store_drops(reference, new)
            have.update(new)
        return {p: have[p] for p in wanted}

    def _load(self, path: Path) -> pd.DataFrame:
        if path.is_file():
            try:
                return pd.read_parquet(path)
            except Exception:  # noqa: BLE001 - a corrupt cache is rebuilt, never trusted
                path.unlink(missing_ok=True)
        return pd.DataFrame(columns=COLUMNS)

    def table(
        self, space: SearchSpace, pairs: Iterable[Pair] | None = None, hessian: bool = False,
        reference: BitConfig | None = None,
    ) -> SensitivityTable:  # fmt: skip
        """Rows for ``pairs`` (default: every variable x choice of ``space``), each change made
        alone against ``reference`` (default: w8a8 where allowed; ZeroQ measures against the
        float model, a simulation the target need not run)."""
        reference = reference or reference_config(space)
        wanted = list(pairs) if pairs is not None else [
            (v, o) for v, opts in space.variables() for o in opts]  # fmt: skip
        wanted = [(v, o) for v, o in wanted if str(reference[v]) != o]
        path = self.cache_path(reference)
        rows = self._load(path)
        if "label" not in rows:  # a cache written before the loss columns: rebuilt
            rows = rows.iloc[0:0].reindex(columns=COLUMNS)
        have = set(zip(rows["variable"], rows["precision"], strict=True))
        missing = [p for p in wanted if p not in have]
        if hessian and len(rows) and rows["hessian"].isna().any():
            missing += [p for p in wanted if p in have]
        t0 = time.perf_counter()
        if missing:
            new = self._compute(space, reference, missing, hessian)
            rows = rows[~rows.set_index(["variable", "precision"]).index.isin(
                list(zip(new["variable"], new["precision"], strict=True)))]  # fmt: skip
            rows = pd.concat([rows, new], ignore_index=True) if len(rows) else new
            buf = io.BytesIO()
            rows.to_parquet(buf, index=False)
            atomic_write_bytes(path, buf.getvalue())
        seconds = time.perf_counter() - t0
        index = set(wanted)
        keep = rows[
            [(v, p) in index for v, p in zip(rows["variable"], rows["precision"], strict=True)]
        ]
        self.last = SensitivityTable(
            keep.reset_index(drop=True), reference, len(self.evaluator.data), seconds
        )
        return self.last

    def _compute(self, space: SearchSpace, reference: BitConfig, pairs: Sequence[Pair],
                 hessian: bool) -> pd.DataFrame:  # fmt: skip
        ev = self.evaluator
        ref_logits = ev.reference
        ref_config_logits = ev.logits(reference)
        base_kl = _kl_each(ref_logits, ref_config_logits)
        labels = ev.data.y
        base_loss = _loss_each(ref_config_logits, labels) if labels is not None else None
        traces = hessian_traces(ev.quantizer, ev.data.x) if hessian else None
        order = {v: i for i, (v, _) in enumerate(space.variables())}
        out = []
        step = f"sensitivity on {len(ev.data)} calibration images"
        ordered = sorted(pairs, key=lambda p: (order.get(p[0], 0), p[1]))
        with task(step, len(pairs), "layer choices", enabled=self.progress) as t:
            for var, choice in ordered:
                config = with_choice(space, reference, var, choice)
                logits = ev.logits(config)
                err = (logits - ref_logits).double().pow(2).sum()
                sqnr = 10 * math.log10(
                    float(ref_logits.double().pow(2).sum()) / max(float(err), 1e-30)
                )
                agree = float((logits.argmax(1) == ref_logits.argmax(1)).float().mean()) * 100
                group = next(g for g in space.groups if g[0] == var)
                kl = _kl_each(ref_logits, logits) - base_kl
                row = {"variable": var, "layers": ",".join(group), "precision": choice,
                       "kl": float(kl.mean()), "sqnr_db": sqnr, "agreement": agree,
                       "hessian": float("nan"), "loss": float("nan"), "label": float("nan")}  # fmt: skip
                if labels is not None and base_loss is not None:
                    loss = _loss_each(logits, labels) - base_loss
                    row["loss"] = float(loss.mean())
                    row["label"] = _beyond_noise(loss - kl)
                if traces is not None:
                    row["hessian"] = _hawq_score(
                        ev.quantizer, group, Precision.parse(choice), traces
                    )
                out.append(row)
                t.advance()
        return pd.DataFrame(out, columns=COLUMNS)


def validation_key(source: str, calib: str, limit: int | None, calib_limit: int | None,
                   seed: int, split: object = None) -> str:  # fmt: skip
    """Identity of a search's validation images, as `haq search` and `haq sensitivity` draw
    them, so measured drops are reused only on the very same images."""

    def norm(path: str) -> str:
        return os.path.realpath(path) if os.path.exists(path) else path

    return f"{norm(source)}|{norm(calib)}|{limit}|{calib_limit}|{seed}|{split!r}"


def _kl_each(ref: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
    """Per image KL(float || quantized) of the softmax outputs."""
    import torch.nn.functional as F

    p = F.log_softmax(ref.double(), dim=1)
    q = F.log_softmax(logits.double(), dim=1)
    return (p.exp() * (p - q)).sum(dim=1)


def _loss_each(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Per image cross-entropy of ``logits`` against the labels."""
    import torch.nn.functional as F

    return F.cross_entropy(logits.double(), labels, reduction="none")


def _beyond_noise(per_image: torch.Tensor) -> float:
    """The mean of ``per_image`` shrunk towards 0 by its standard error (soft threshold): what
    the calibration images say beyond their own sampling noise."""
    n = per_image.numel()
    mean = float(per_image.mean())
    se = float(per_image.std()) / math.sqrt(n) if n > 1 else abs(mean)
    return math.copysign(max(abs(mean) - se, 0.0), mean)


def hessian_traces(quantizer: object, x: torch.Tensor, iters: int = 16, batch: int = 128,
                   seed: int = 0) -> dict[str, float]:  # fmt: skip
    """Mean Hessian trace per weight of each layer (Hutchinson, Rademacher probes).

    The loss is the cross-entropy against the float model's own predictions, so no labels are
    needed; the BN-folded float copy is differentiated, as it is what gets quantized.
    """
    import torch
    import torch.nn.functional as F

    model = quantizer.base  # type: ignore[attr-defined]
    names = quantizer.layer_names  # type: ignore[attr-defined]
    params = [model.get_submodule(n).weight for n in names]
    for p in params:
        p.requires_grad_(True)
    gen = torch.Generator().manual_seed(seed)
    sums = [0.0] * len(params)
    try:
        xb = x[:batch]
        with torch.enable_grad():
            logits = model(xb)
            target = logits.detach().argmax(1)
            loss = F.cross_entropy(logits, target)
            grads = torch.autograd.grad(loss, params, create_graph=True)
            for _ in range(iters):
                vs = [
                    torch.randint(0, 2, p.shape, generator=gen).to(p.dtype) * 2 - 1 for p in params
                ]
                hv = torch.autograd.grad(grads, params, grad_outputs=vs, retain_graph=True)
                for i, (h, v) in enumerate(zip(hv, vs, strict=True)):
                    sums[i] += float((h * v).sum())
    finally:
        for p in params:
            p.requires_grad_(False)
    return {n: s / iters / p.numel() for n, s, p in zip(names, sums, params, strict=True)}


def _hawq_score(quantizer: object, group: list[str], p: Precision,
                traces: dict[str, float]) -> float:  # fmt: skip
    """HAWQ-V2: mean Hessian trace x ||W - Q(W)||^2, summed over the group (0 for float)."""
    if p.w_bits is None:
        return 0.0
    total = 0.0
    for name in group:
        w = quantizer.base.get_submodule(name).weight  # type: ignore[attr-defined]
        w_fq = quantizer._weight(name, p.w_bits)[0]  # type: ignore[attr-defined]
        total += traces[name] * float((w_fq - w).double().pow(2).sum())
    return total


def layer_orthogonality(quantizer: object, x: torch.Tensor, images: int = 64) -> dict[str, float]:
    """Per layer, how unlike every other layer's its output features are (OMPQ's network
    orthogonality, training- and label-free): 1 - the mean over other layers of
    ``<K_i, K_j> / (|K_i| |K_j|)`` with ``K = X X^T`` the Gram matrix of a layer's flattened
    outputs on ``images`` calibration images (the N x N form of OMPQ's ``|X_j^T X_i|_F^2``)."""
    import torch

    model = quantizer.base  # type: ignore[attr-defined]
    names = quantizer.layer_names  # type: ignore[attr-defined]
    grams: dict[str, torch.Tensor] = {}
    handles = []
    for name in names:

        def hook(_m: object, _i: object, out: torch.Tensor, name: str = name) -> None:
            f = out.detach().flatten(1).double()
            k = f @ f.T
            grams[name] = k / k.norm().clamp_min(1e-30)

        handles.append(model.get_submodule(name).register_forward_hook(hook))
    try:
        with torch.no_grad():
            model(x[:images])
    finally:
        for h in handles:
            h.remove()
    k = torch.stack([grams[n].flatten() for n in names])
    sim = (k @ k.T).numpy()
    n = len(names)
    return {
        name: float(1.0 - (sim[i].sum() - sim[i, i]) / max(n - 1, 1))
        for i, name in enumerate(names)
    }
