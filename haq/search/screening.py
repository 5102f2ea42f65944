"""Whole-config screening on the calibration images: a free proxy for configs, not for layers.

The per-layer sensitivity (`haq.search.sensitivity`) sums single-layer changes, which misses
how the changes of many layers interact. Running a whole config on the calibration images
costs a fraction of a validation evaluation (256 images against 1,000) and no evaluation of
the budget, and measured on the archived cifar_resnet20 searches it ranks configs of equal
latency better than the summed proxy (`experiments/screening_check.py`). The hybrid driver's
``screen=N`` uses it to choose among its ILP solutions and to re-score its most promising
candidates before it spends evaluations on them.

The score is the mean cross-entropy loss where the calibration images have labels, else the
mean KL divergence of the softmax outputs from the float model's (distilled or text images).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from haq.progress import task

if TYPE_CHECKING:
    from haq.config import BitConfig
    from haq.search.sensitivity import SensitivitySource


class ConfigScreen:
    """Whole-config proxy scores on a sensitivity source's calibration images (lower is
    better), kept per config for the life of the search."""

    def __init__(self, source: SensitivitySource) -> None:
        self.source = source
        self._scores: dict[str, float] = {}
        self.passes = 0  # forward passes over the calibration images run so far

    def scores(self, configs: Sequence[BitConfig], step: str = "screening configs") -> list[float]:
        from haq.search.sensitivity import kl_each, loss_each

        todo = list({c.hash: c for c in configs if c.hash not in self._scores}.values())
        if todo:
            ev = self.source.evaluator
            labels = ev.data.y
            label = f"{step} on {len(ev.data)} calibration images"
            enabled = self.source.progress and len(todo) > 8
            with task(label, len(todo), "configs", enabled=enabled) as t:
                for config in todo:
                    logits = ev.logits(config)
                    per_image = (
                        loss_each(logits, labels)
                        if labels is not None
                        else kl_each(ev.reference, logits)
                    )
                    self._scores[config.hash] = float(per_image.mean())
                    self.passes += 1
                    t.advance()
        return [self._scores[c.hash] for c in configs]
