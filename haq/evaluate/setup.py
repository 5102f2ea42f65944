"""Wiring user-level choices (model, weights, data sources) into a ready `LocalEvaluator`.

Calibration and evaluation images never overlap: with ``calib_data`` unset, calibration images
are a seeded subset held out of ``data`` and evaluation uses the rest; with ``calib_data`` equal
to ``data``, the calibration indices are excluded from evaluation.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from haq.data import DataSplit, TensorData, load_data
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
    split: DataSplit | None = None,
    tokens: int | None = None,
) -> EvalSetup:
    """Load the model and data once and return an evaluator for any number of configs
    (``tokens``: a text model's sequence length, when ``model`` is a name).

    ``split`` keeps only that part of ``data`` (and of the calibration images when they come
    from the same source), so validation and test drawn from one set never overlap.
    """
    loaded = model if isinstance(model, LoadedModel) else load_model(model, weights, tokens)
    pre = loaded.preprocess
    data_src = resolve_data(loaded, data)
    calib: TensorData | None = None
    calib_src = calib_data or data_src
    if needs_calibration:
        same = _same_source(calib_src, data_src)
        calib = load_data(calib_src, pre, limit=calib_limit, seed=seed, model=loaded.model,
                          num_classes=loaded.entry.num_classes,
                          split=split.of("val") if same and split else None)  # fmt: skip
    evaluation = _evaluation_data(loaded, data_src, calib, calib_src, limit, seed, split)
    quantizer = Quantizer(loaded.model, loaded.example_input(), settings,
                          calibration_images=calib.x if calib is not None else None)  # fmt: skip
    evaluator = _evaluator(loaded, quantizer, evaluation, batch_size)
    return EvalSetup(loaded, quantizer, evaluation, calib, evaluator, state_hash(loaded.model))


def evaluator_on(
    setup: EvalSetup, data: str, calib_data: str | None = None, *, limit: int | None = None,
    seed: int = 0, split: DataSplit | None = None, batch_size: int = 256,
) -> LocalEvaluator:  # fmt: skip
    """Another evaluator on other images sharing ``setup``'s model and calibrated quantizer
    (e.g. the final test images of a search whose validation ``setup`` already holds)."""
    calib_src = calib_data or data
    evaluation = _evaluation_data(setup.loaded, data, setup.calib, calib_src, limit, seed, split)
    return _evaluator(setup.loaded, setup.quantizer, evaluation, batch_size)


def _evaluation_data(loaded: LoadedModel, data_src: str, calib: TensorData | None, calib_src: str,
                     limit: int | None, seed: int, split: DataSplit | None) -> TensorData:  # fmt: skip
    """Evaluation images, never the calibration images of the same source."""
    n_classes = loaded.entry.num_classes
    exclude = calib.indices if calib is not None and _same_source(calib_src, data_src) else None
    evaluation = load_data(data_src, loaded.preprocess, limit=limit, seed=seed + 1, exclude=exclude,
                           model=loaded.model, num_classes=n_classes, split=split)  # fmt: skip
    if len(evaluation) == 0:
        raise HaqError(
            f"no evaluation images left in {data_src} after holding out calibration images; pass --calib-data"
        )
    if evaluation.y is not None and len(evaluation.classes) > n_classes:
        raise HaqError(
            f"data {data_src} has {len(evaluation.classes)} classes but {loaded.name} predicts {n_classes}; "
            "pass data labelled for this model"
        )
    return evaluation


def _evaluator(loaded: LoadedModel, quantizer: Quantizer, evaluation: TensorData,
               batch_size: int) -> LocalEvaluator:  # fmt: skip
    mhash = state_hash(loaded.model)
    ref_path = cache_dir() / "reference" / f"{loaded.name}-{mhash}-{_safe(evaluation.key)}.pt"
    return LocalEvaluator(quantizer, evaluation, batch_size=batch_size, reference_cache=ref_path)


def _safe(key: str) -> str:
    import hashlib

    return hashlib.sha256(key.encode()).hexdigest()[:16]
