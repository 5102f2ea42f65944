import math

import pytest
import torch

from haq.evaluate import classification_metrics


def test_top1_top5_per_class_and_worst() -> None:
    logits = torch.tensor([[5.0, 1, 0], [0, 5, 1], [5, 0, 1], [0, 1, 5]])
    labels = torch.tensor([0, 1, 1, 2])  # third image (class 1) is wrong
    m = classification_metrics(logits, labels, ["a", "b", "c"])
    assert m.top1 == 75.0 and m.top5 == 100.0
    assert m.per_class == {"a": 100.0, "b": 50.0, "c": 100.0}
    assert (m.worst_class, m.worst_class_top1) == ("b", 50.0)
    assert m.agreement is None and m.mean_kl is None


def test_fidelity_without_labels() -> None:
    ref = torch.tensor([[2.0, 0.0], [0.0, 2.0]])
    same = classification_metrics(ref.clone(), None, ["x", "y"], reference=ref)
    assert same.agreement == 100.0 and same.mean_kl == 0.0 and same.top1 is None
    flipped = classification_metrics(ref.flip(1), None, ["x", "y"], reference=ref)
    assert flipped.agreement == 0.0 and flipped.mean_kl > 0
    p = torch.softmax(ref[0], 0)
    expected = float((p * (p.log() - p.flip(0).log())).sum())
    assert math.isclose(flipped.mean_kl, expected, rel_tol=1e-4)


def test_classes_without_images_are_not_counted() -> None:
    m = classification_metrics(torch.tensor([[1.0, 0.0, 0.0]]), torch.tensor([0]), ["a", "b", "c"])
    assert m.per_class == {"a": 100.0}


def test_embedding_fidelity() -> None:
    import torch

    from haq.evaluate.metrics import embedding_metrics

    ref = torch.nn.functional.normalize(
        torch.randn(50, 16, generator=torch.Generator().manual_seed(0)), dim=1
    )
    same = embedding_metrics(ref.clone(), ref)
    assert same.cosine == pytest.approx(1.0) and same.retrieval == 100.0 and same.top1 is None
    noisy = embedding_metrics(
        ref + 0.3 * torch.randn(50, 16, generator=torch.Generator().manual_seed(1)), ref
    )
    assert noisy.cosine_min < noisy.cosine < 1.0 and noisy.retrieval < 100.0
