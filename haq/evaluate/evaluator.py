"""The `Evaluator` protocol and the in-process evaluator every executor builds on.

An evaluator turns a BitConfig into accuracy numbers. `LocalEvaluator` holds the model's
`Quantizer` (folded weights, calibration), the evaluation tensors and the float reference
logits, all loaded once, so each call is one inference pass, or less: with prefix reuse
(`haq.evaluate.prefix`) a config resumes from the activations of an earlier config that
shares its first layers, with bit-identical logits. A config naming its own refinement
(``config.ptq``) is scored by a sibling evaluator on that refinement's quantizer, sharing the
images and the float reference.
"""

from __future__ import annotations

import io
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import torch

from haq.config import BitConfig
from haq.data import TensorData
from haq.evaluate.activation_cache import cache_budget_bytes
from haq.evaluate.metrics import Metrics, classification_metrics, embedding_metrics
from haq.evaluate.predict import predict
from haq.evaluate.prefix import PrefixRunner
from haq.io import atomic_write_bytes
from haq.quant import Quantizer


@dataclass
class EvalResult:
    config: BitConfig
    metrics: Metrics
    seconds: float  # wall time of applying the config and the inference pass

    def to_dict(self) -> dict[str, Any]:
        return {
            "config_hash": self.config.hash,
            **self.metrics.to_dict(),
            "seconds": round(self.seconds, 4),
        }


@runtime_checkable
class Evaluator(Protocol):
    """Anything that scores a config: in-process, a Ray actor pool, a remote service."""

    def evaluate(self, config: BitConfig) -> EvalResult: ...


class LocalEvaluator:
    """Evaluates configs in this process on in-memory data.

    ``reuse_prefixes`` caches activations shared by configs that agree on their first layers
    (bounded by ``$HAQ_PREFIX_CACHE_MB``, default 1 GiB; 0 turns it off). Models the replay
    cannot reproduce exactly are evaluated the plain way.
    """

    def __init__(
        self,
        quantizer: Quantizer,
        data: TensorData,
        batch_size: int = 256,
        reference_cache: Path | None = None,
        reuse_prefixes: bool = True,
    ) -> None:
        self.quantizer = quantizer
        self.data = data
        self.batch_size = batch_size
        self.reuse_prefixes = reuse_prefixes
        self._reference_cache = reference_cache
        self._reference: torch.Tensor | None = None
        self._runner: PrefixRunner | None = None
        self._runner_built = False
        self._siblings: dict[str, LocalEvaluator] = {}  # by refinement

    @property
    def prefix_runner(self) -> PrefixRunner | None:
        """The prefix cache (built on first use; None when off or the model cannot use it)."""
        if not self._runner_built:
            self._runner_built = True
            budget = cache_budget_bytes()
            if self.reuse_prefixes and budget > 0:
                self._runner = PrefixRunner.build(
                    self.quantizer, self.data.x, self.batch_size, budget
                )
        return self._runner

    @property
    def reference(self) -> torch.Tensor:
        """Float-model logits on the evaluation data (computed once, cached on disk if asked)."""
        if self._reference is None:
            path = self._reference_cache
            if path is not None and path.is_file():
                self._reference = torch.load(path, weights_only=True)
            else:
                self._reference = predict(self.quantizer.float_model, self.data.x, self.batch_size)
                if path is not None:
                    buf = io.BytesIO()
                    torch.save(self._reference, buf)
                    atomic_write_bytes(path, buf.getvalue())
        return self._reference

    def for_config(self, config: BitConfig) -> LocalEvaluator:
        """The evaluator of ``config``'s own refinement (this one when it names none)."""
        quantizer = self.quantizer.for_config(config)
        if quantizer is self.quantizer:
            return self
        assert config.ptq is not None
        sibling = self._siblings.get(config.ptq)
        if sibling is None:
            sibling = LocalEvaluator(quantizer, self.data, self.batch_size,
                                     reuse_prefixes=self.reuse_prefixes)  # fmt: skip
            sibling._reference = self.reference  # the float model is the same model
            self._siblings[config.ptq] = sibling
        return sibling

    def logits(self, config: BitConfig | str) -> torch.Tensor:
        """The model's outputs under ``config`` on the evaluation images."""
        resolved = self.quantizer.resolve(config)
        if all(p.is_float for p in resolved.values()):
            return self.reference
        own = self.for_config(resolved)
        if own is not self:
            return own.logits(resolved)
        runner = self.prefix_runner
        out = runner.logits(resolved) if runner is not None else None
        if out is None:
            out = predict(self.quantizer.apply(resolved), self.data.x, self.batch_size)
        return out

    def evaluate(self, config: BitConfig | str) -> EvalResult:
        start = time.perf_counter()
        resolved = self.quantizer.resolve(config)
        logits = self.logits(resolved)
        seconds = time.perf_counter() - start
        if self.data.task == "embedding":
            metrics = embedding_metrics(logits, self.reference)
        else:
            metrics = classification_metrics(logits, self.data.y, self.data.classes, self.reference)
        return EvalResult(resolved, metrics, seconds)
