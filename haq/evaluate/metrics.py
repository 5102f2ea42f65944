"""Accuracy and fidelity metrics from logits (percentages, 0-100).

Worst-class accuracy is reported beside top-1: quantization can hurt minority classes far more
than the average. Fidelity (top-1 agreement, mean KL to the float model) needs no labels, so
data-free runs still get a score.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import torch
import torch.nn.functional as F


@dataclass
class Metrics:
    n_images: int
    top1: float | None = None
    top5: float | None = None
    per_class: dict[str, float] | None = None
    worst_class: str | None = None
    worst_class_top1: float | None = None
    agreement: float | None = None  # % of images whose top-1 matches the float model's
    mean_kl: float | None = None  # mean KL(float || quantized) of the softmax outputs
    cosine: float | None = None  # embeddings: mean cosine similarity to the float model's
    cosine_min: float | None = None  # embeddings: the worst sentence's cosine similarity
    retrieval: float | None = None  # embeddings: % of each sentence's top-10 neighbours kept

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def accuracy_points(self) -> float:
        """The accuracy a drop is measured in: top-1 where there are labels, else fidelity
        (agreement with the float model; data-free images), else cosine x 100 (embeddings)."""
        for v in (self.top1, self.agreement):
            if v is not None:
                return v
        return (self.cosine or 0.0) * 100.0


def _pct(x: torch.Tensor) -> float:
    return round(float(x.float().mean()) * 100.0, 4)


def classification_metrics(
    logits: torch.Tensor,
    labels: torch.Tensor | None,
    classes: list[str],
    reference: torch.Tensor | None = None,
) -> Metrics:
    """Top-1/top-5/per-class/worst-class against ``labels``; fidelity against ``reference``."""
    m = Metrics(n_images=int(logits.shape[0]))
    if labels is not None:
        pred = logits.argmax(dim=1)
        correct = pred == labels
        m.top1 = _pct(correct)
        k = min(5, logits.shape[1])
        m.top5 = _pct((logits.topk(k, dim=1).indices == labels[:, None]).any(dim=1))
        per_class: dict[str, float] = {}
        for c, name in enumerate(classes):
            mask = labels == c
            if bool(mask.any()):
                per_class[name] = _pct(correct[mask])
        m.per_class = per_class
        if per_class:
            m.worst_class = min(per_class, key=lambda n: per_class[n])
            m.worst_class_top1 = per_class[m.worst_class]
    if reference is not None:
        m.agreement = _pct(logits.argmax(dim=1) == reference.argmax(dim=1))
        ref_logp = F.log_softmax(reference.float(), dim=1)
        logp = F.log_softmax(logits.float(), dim=1)
        m.mean_kl = round(
            float(F.kl_div(logp, ref_logp, log_target=True, reduction="batchmean")), 6
        )
    return m


RETRIEVAL_K = 10


def embedding_metrics(emb: torch.Tensor, reference: torch.Tensor) -> Metrics:
    """Fidelity of sentence embeddings to the float model's: cosine similarity per sentence
    (mean and worst) and top-k retrieval agreement (each sentence's ``RETRIEVAL_K`` nearest
    neighbours among the set, by cosine, that the float embeddings also rank in their top k)."""
    a, b = F.normalize(emb.float(), dim=1), F.normalize(reference.float(), dim=1)
    cos = (a * b).sum(dim=1)
    m = Metrics(n_images=int(emb.shape[0]), cosine=round(float(cos.mean()), 6),
                cosine_min=round(float(cos.min()), 6))  # fmt: skip
    k = min(RETRIEVAL_K, emb.shape[0] - 1)
    if k >= 1:
        eye = torch.eye(emb.shape[0], dtype=torch.bool)
        got = (a @ a.T).masked_fill(eye, -2.0).topk(k, dim=1).indices
        want = (b @ b.T).masked_fill(eye, -2.0).topk(k, dim=1).indices
        hits = (got[:, :, None] == want[:, None, :]).any(dim=2).float().mean()
        m.retrieval = round(float(hits) * 100.0, 4)
    return m
