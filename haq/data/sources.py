"""Turning a data source name into normalised tensors, with seeded, disjoint subsets.

Dispatch lives here; each kind of source has its own module (`imagefolder`, `digits`,
`synthetic`, `distilled`). Every source is a fixed, indexed list of images, so ``limit`` /
``seed`` / ``exclude`` pick a reproducible subset the same way everywhere.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
import torch

from haq.errors import HaqError
from haq.models.registry import Preprocess


@dataclass(frozen=True)
class DataSplit:
    """A seeded ``fraction`` of a source's images (``part="val"``) or all the others
    (``part="test"``): search-time validation and final test drawn from one held-out set,
    never overlapping."""

    fraction: float
    seed: int = 0
    part: str = "val"

    def __post_init__(self) -> None:
        if not 0.0 < self.fraction < 1.0:
            raise HaqError(
                f"--val-split {self.fraction} must lie strictly between 0 and 1, e.g. 0.2"
            )
        if self.part not in ("val", "test"):
            raise ValueError(f"part must be 'val' or 'test', not {self.part!r}")

    def of(self, part: str) -> DataSplit:
        return DataSplit(self.fraction, self.seed, part)

    def exclusion(self, n_total: int) -> np.ndarray:
        """The source indices this part must not use."""
        k = min(n_total - 1, max(1, round(self.fraction * n_total)))
        val = select_indices(n_total, k, self.seed)
        if self.part == "test":
            return val
        return np.setdiff1d(np.arange(n_total, dtype=np.int64), val)


@dataclass
class TensorData:
    """Decoded, preprocessed images kept in memory (decoded once, reused for every trial)."""

    x: torch.Tensor  # (N, C, H, W) float32, normalised as the model expects
    y: torch.Tensor | None  # (N,) int64 labels; None where labels are unknown (distilled)
    classes: list[str]  # class names in label order
    source: str  # the source name as given (for messages and cache keys)
    indices: np.ndarray  # indices into the full source that were selected (for disjointness)
    task: str = "classification"  # or "embedding": outputs compared by cosine to the float's

    def __len__(self) -> int:
        return int(self.x.shape[0])

    @property
    def key(self) -> str:
        """Stable identity of exactly these images (source + selected indices)."""
        import hashlib

        h = hashlib.sha256(np.ascontiguousarray(self.indices, dtype=np.int64).tobytes())
        return f"{self.source}#{len(self)}#{h.hexdigest()[:12]}"


def select_indices(
    n_total: int, limit: int | None, seed: int, exclude: np.ndarray | None = None
) -> np.ndarray:
    """A deterministic subset of ``range(n_total)`` minus ``exclude``: ``limit`` indices drawn
    with ``seed`` (all remaining, in order, when ``limit`` is None or larger), sorted."""
    if n_total < 0:
        raise ValueError(f"n_total must be >= 0, not {n_total}")
    if limit is not None and limit < 0:
        raise ValueError(f"limit must be >= 0, not {limit}")
    keep = np.ones(n_total, dtype=bool)
    if exclude is not None:
        ex = np.asarray(exclude, dtype=np.int64).ravel()
        keep[ex[(ex >= 0) & (ex < n_total)]] = False
    remaining = np.flatnonzero(keep).astype(np.int64)
    if limit is None or limit >= len(remaining):
        return remaining
    chosen = np.random.default_rng(seed).choice(remaining, size=limit, replace=False)
    return np.sort(chosen).astype(np.int64)


FORMS = (
    "DIR (an ImageFolder root <root>/<class>/<image>), digits, digits:train, digits:calib, "
    "synthetic[:N], distilled[:N[:STEPS]], text[:N] (text models)"
)


def _count(source: str, arg: str, default: int) -> int:
    """The ``N`` of ``synthetic:N`` / ``distilled:N``."""
    if not arg:
        return default
    if not arg.isdigit() or int(arg) < 1:
        name = source.partition(":")[0]
        raise HaqError(f"{source!r}: {name}:N needs a whole number N >= 1, e.g. {name}:{default}")
    return int(arg)


def _looks_like_path(source: str) -> bool:
    """Whether a missing ``source`` was meant as a directory (so say "not found")."""
    seps = {"/", os.sep} | ({os.altsep} if os.altsep else set())
    return any(c in source for c in seps) or source.startswith((".", "~"))


def _check_classes(source: str, n_classes: int, num_classes: int | None) -> None:
    """Labels beyond the model's outputs would make every accuracy silently wrong."""
    if num_classes is not None and n_classes > num_classes:
        raise HaqError(
            f"data {source} has {n_classes} classes but the model predicts {num_classes}; "
            "use data labelled with the model's classes"
        )


def load_data(
    source: str,
    preprocess: Preprocess,
    *,
    limit: int | None = None,
    seed: int = 0,
    exclude: np.ndarray | None = None,
    model: torch.nn.Module | None = None,
    num_classes: int | None = None,
    split: DataSplit | None = None,
) -> TensorData:
    """Materialise ``source`` (see package docstring) as tensors.

    ``exclude`` removes those source indices first (calibration/evaluation disjointness);
    ``model`` is required for ``distilled``; ``num_classes`` is the model's class count
    (labels of ``synthetic``, names of ``distilled``; default 10; directories and digits
    must not have more). ``split`` keeps only its part of the source's images. Raises `HaqError` (one line) for a missing or empty directory,
    unreadable images, an unknown source name, or images that do not match
    ``preprocess.input_size``.
    """
    if limit is not None and limit < 1:
        raise HaqError(f"the number of images must be at least 1, not {limit}")
    if num_classes is not None and num_classes < 1 and not preprocess.is_text:
        raise ValueError(f"num_classes must be >= 1, not {num_classes}")
    n_cls = 10 if num_classes is None else num_classes
    input_size = preprocess.input_size

    def pick(n_total: int) -> np.ndarray:
        ex = exclude
        if split is not None:
            part = split.exclusion(n_total)
            ex = part if ex is None else np.union1d(np.asarray(ex, dtype=np.int64), part)
        idx = select_indices(n_total, limit, seed, ex)
        if len(idx) == 0:
            raise HaqError(
                f"no images left in {source} ({n_total} in all) after excluding those already "
                "used (e.g. for calibration); use a larger data source or fewer images"
            )
        return idx

    # Source names win over a same-named directory in the working directory (use ./digits).
    name, _, arg = source.partition(":")
    if name == "digits" and arg in ("", "test", "train", "calib"):
        from haq.data.digits import CLASSES, digits_tensors

        if tuple(input_size) != (1, 8, 8):
            raise HaqError(
                f"digits data is 1x8x8 and fits digits_cnn only, not a model with input size "
                f"{input_size}; pass --data DIR (an ImageFolder root) instead"
            )
        _check_classes(source, len(CLASSES), num_classes)
        x_all, y_all = digits_tensors(arg or "test", preprocess.mean, preprocess.std)
        idx = pick(len(y_all))
        t = torch.from_numpy(idx)
        return TensorData(x_all[t], y_all[t], list(CLASSES), source, idx)

    if name == "text":
        from haq.data.text import stdlib_sentences, token_ids

        if not preprocess.is_text:
            raise HaqError(
                f"{source!r} is text; it fits text models (hf:PATH, minilm), not this one"
            )
        sentences = stdlib_sentences()
        idx = pick(min(_count(source, arg, len(sentences)), len(sentences)))
        tokens = preprocess.input_size[0]
        x = token_ids([sentences[i] for i in idx], preprocess.tokenizer, tokens)
        # the token count is part of the data's identity (reference caches, eval caches)
        return TensorData(x, None, [], f"{source}@{tokens}", idx, task="embedding")

    if preprocess.is_text:
        raise HaqError(f"data {source!r} is not text; text models take --data text[:N]")

    if name == "synthetic":
        from haq.data.synthetic import DEFAULT_N, synthetic_images

        idx = pick(_count(source, arg, DEFAULT_N))
        x, y = synthetic_images(idx, input_size, n_cls)
        return TensorData(x, y, [str(i) for i in range(n_cls)], source, idx)

    if name == "distilled":
        from haq.data.distilled import DEFAULT_N, distilled_images

        count, _, steps = arg.partition(":")
        n = _count(source, count, DEFAULT_N)
        if steps and not steps.isdigit():  # 0 steps: the Gaussian noise they start from
            raise HaqError(f"{source!r}: distilled:N:STEPS needs a whole number STEPS >= 0, "
                           f"e.g. distilled:{n}:100")  # fmt: skip
        if model is None:
            raise HaqError(
                f"{source!r} needs the model to distil images from; pass --calib-data DIR"
            )
        # One set of N images per model (seed 0, cached): every limit, split and seed picks
        # from it, so calibration, validation and test never distil sets of their own.
        x_all, key = distilled_images(model, n, input_size, steps=int(steps) if steps else None,
                                      name=type(model).__name__)  # fmt: skip
        idx = pick(n)
        t = torch.from_numpy(idx)
        # The images depend on the model and seed: make that part of `TensorData.key`.
        return TensorData(
            x_all[t], None, [str(i) for i in range(n_cls)], f"{source}@{key[:12]}", idx
        )

    path = os.path.expanduser(source)
    if os.path.exists(path) or _looks_like_path(source):
        from haq.data.imagefolder import decode_images, list_images

        samples, classes = list_images(path)
        _check_classes(source, len(classes), num_classes)
        idx = pick(len(samples))
        x = decode_images([samples[i][0] for i in idx], preprocess)
        y = torch.tensor([samples[i][1] for i in idx], dtype=torch.int64)
        return TensorData(x, y, classes, source, idx)

    raise HaqError(f"unknown data source {source!r} (no such directory here); use one of {FORMS}")
