"""Wiring user-level choices (model, weights, data sources) into a ready `LocalEvaluator`.

Calibration and evaluation images never overlap: with ``calib_data`` unset, calibration images
are a seeded subset held out of ``data`` and evaluation uses the rest; with ``calib_data`` equal
to ``data``, the calibration indices are excluded from evaluation.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from haq.data import TensorData, load_data
from haq.errors import HaqError
from haq.evaluate.evaluator import LocalEvaluator
from haq.models import LoadedModel, load_model
from haq.models.fingerprint import state_hash
from haq.paths import cache_dir
from haq.quant import Quantizer, QuantSettings

DEFAULT_CALIB_LIMIT = 256


@dataclass
class EvalSetup:
    loaded: LoadedModel
    quantizer: Quantizer
    data: TensorData
    calib: TensorData | None
    evaluator: LocalEvaluator
    model_hash: str


def _same_source(a: str, b: str) -> bool:
    if a == b:
        return True
    pa, pb = Path(a), Path(b)
    return pa.exists() and pb.exists() and os.path.samefile(pa, pb)


def resolve_data(loaded: LoadedModel, data: str | None) -> str:
    if data:
        return data
    if loaded.entry.default_data:
        return loaded.entry.default_data
    raise HaqError(
        f"model {loaded.name} has no built-in data; pass --data DIR (an ImageFolder root)"
    )


def build_setup(
    model: str | LoadedModel,
    weights: str = "default",
    data: str | None = None,
    calib_data: str | None = None,
    *,
    limit: int | None = None,
    calib_limit: int | None = DEFAULT_CALIB_LIMIT,
    seed: int = 0,
    settings: QuantSettings | None = None,
    needs_calibration: bool = True,
    batch_size: int = 256,
) -> EvalSetup:
    """Load the model and data once and return an evaluator for any number of configs."""
    loaded = model if isinstance(model, LoadedModel) else load_model(model, weights)
    pre = loaded.preprocess
    n_classes = loaded.entry.num_classes
    data_src = resolve_data(loaded, data)
    calib: TensorData | None = None
    exclude = None
    if needs_calibration:
        calib_src = calib_data or data_src
        calib = load_data(
            calib_src, pre, limit=calib_limit, seed=seed, model=loaded.model, num_classes=n_classes
        )
        if _same_source(calib_src, data_src):
            exclude = calib.indices
    evaluation = load_data(data_src, pre, limit=limit, seed=seed + 1, exclude=exclude, model=loaded.model,
                           num_classes=n_classes)  # fmt: skip
    if len(evaluation) == 0:
        raise HaqError(
            f"no evaluation images left in {data_src} after holding out calibration images; pass --calib-data"
        )
    if evaluation.y is not None and len(evaluation.classes) > n_classes:
        raise HaqError(
            f"data {data_src} has {len(evaluation.classes)} classes but {loaded.name} predicts {n_classes}; "
            "pass data labelled for this model"
        )
    quantizer = Quantizer(loaded.model, loaded.example_input(), settings,
                          calibration_images=calib.x if calib is not None else None)  # fmt: skip
    mhash = state_hash(loaded.model)
    ref_path = cache_dir() / "reference" / f"{loaded.name}-{mhash}-{_safe(evaluation.key)}.pt"
    evaluator = LocalEvaluator(
        quantizer, evaluation, batch_size=batch_size, reference_cache=ref_path
    )
    return EvalSetup(loaded, quantizer, evaluation, calib, evaluator, mhash)


def _safe(key: str) -> str:
    import hashlib

    return hashlib.sha256(key.encode()).hexdigest()[:16]
