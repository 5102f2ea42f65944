"""ImageFolder roots (``<root>/<class>/<image>``) decoded once into one normalised tensor.

Listing follows torchvision's ``ImageFolder`` exactly (sorted class folders, sorted files,
``IMG_EXTENSIONS``) so labels match models trained with it and source indices are stable.
Only the selected images are decoded, in two worker processes: the per-image work is small
Python-heavy PIL/torchvision calls that threads serialise on the GIL. Measured on the 10,000
CIFAR-10 test JPEGs, 2 cores: workers 1.3 s, one thread 1.7 s, a 2-thread pool 3.0 s
(torchvision's per-image ToTensor + Normalize instead of per-batch: 2.6 s in one thread).
"""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from haq.errors import HaqError
from haq.models.registry import Preprocess
from haq.progress import task

LAYOUT_HINT = "pass an ImageFolder root (<root>/<class>/<image>)"
_BATCH = 250  # images per worker task: large enough that IPC is negligible

# One decoded item: (position in the request, tensor or None, error message or None).
_Item = tuple[int, torch.Tensor | None, str | None]


def list_images(source: str | Path) -> tuple[list[tuple[str, int]], list[str]]:
    """All ``(path, label)`` pairs under ``source`` in ImageFolder order, and the class names.

    Messages quote ``source`` as given (not normalised), so users recognise what they typed.
    """
    from torchvision.datasets.folder import IMG_EXTENSIONS, make_dataset

    root = Path(source)
    if not root.exists():
        raise HaqError(f"data directory {source} not found; {LAYOUT_HINT}")
    if not root.is_dir():
        raise HaqError(f"data path {source} is a file, not a directory; {LAYOUT_HINT}")
    try:
        classes = sorted(e.name for e in os.scandir(root) if e.is_dir())
        samples: list[tuple[str, int]] = []
        if classes:
            class_to_idx = {c: i for i, c in enumerate(classes)}
            samples = make_dataset(str(root), class_to_idx, IMG_EXTENSIONS, allow_empty=True)
    except OSError as e:
        raise HaqError(
            f"cannot read data directory {source} ({e.strerror or e}); check its permissions"
        ) from None
    if not samples:
        exts = " ".join(IMG_EXTENSIONS)
        raise HaqError(
            f"data directory {source} holds no images in class subfolders; {LAYOUT_HINT} "
            f"with files ending in {exts}"
        )
    return samples, classes


def _image_mode(mode: str, channels: int, grayscale: bool) -> str:
    """The PIL mode to decode to before the model's transform.

    Colour models get RGB like torchvision's loader (so grayscale/CMYK/palette images in
    e.g. ImageNet still work); a 1-channel model without a Grayscale step keeps grayscale
    images and lets colour ones fail the shape check rather than silently dropping colour.
    """
    if channels == 3 or grayscale:
        return "RGB"
    if mode in ("1", "L", "LA", "I", "I;16", "F"):
        return "L"
    return "RGB"


class _Decoder(torch.utils.data.Dataset):
    """Decodes the selected files; errors are returned, not raised, so they stay one line.

    When the transform ends in ToTensor + Normalize (as `Preprocess.transform` does), items
    stay uint8 and those two steps run once per batch: identical values, half the time.
    """

    def __init__(self, paths: Sequence[str], preprocess: Preprocess) -> None:
        from torchvision import transforms as T

        self.paths = list(paths)
        self.preprocess = preprocess
        tf = preprocess.transform()
        steps = list(getattr(tf, "transforms", []))
        self.batched = (
            len(steps) >= 2
            and isinstance(steps[-2], T.ToTensor)
            and isinstance(steps[-1], T.Normalize)
        )
        self.per_image: Callable[[Any], Any] = T.Compose(steps[:-2]) if self.batched else tf
        self.normalize: Callable[[torch.Tensor], torch.Tensor] | None = (
            steps[-1] if self.batched else None
        )

    def __len__(self) -> int:
        return len(self.paths)

    def _load(self, path: str) -> torch.Tensor:
        from PIL import Image

        with Image.open(path) as img:
            img = img.convert(
                _image_mode(img.mode, self.preprocess.input_size[0], self.preprocess.grayscale)
            )
            out = self.per_image(img)
        if not self.batched:
            return out
        arr = np.array(out, dtype=np.uint8)  # PIL image after resize/crop: HWC or HW
        return torch.from_numpy(arr.reshape(arr.shape[0], arr.shape[1], -1)).permute(2, 0, 1)

    def __getitem__(self, i: int) -> _Item:
        path = self.paths[i]
        try:
            t = self._load(path)
        except Exception as e:  # PIL raises many types for truncated/corrupt files
            reason = str(e).splitlines()[0] if str(e) else type(e).__name__
            return i, None, f"cannot read image {path} ({reason}); remove or replace the file"
        expected = tuple(self.preprocess.input_size)
        if tuple(t.shape) != expected:
            hint = " (colour images for a 1-channel model?)" if t.shape[0] > expected[0] else ""
            return (
                i,
                None,
                (
                    f"image {path} becomes a tensor of shape {tuple(t.shape)} after preprocessing "
                    f"but the model expects input size {expected}{hint}; use images that fit "
                    "this model"
                ),
            )
        return i, t, None

    def finish(self, batch: torch.Tensor) -> torch.Tensor:
        """ToTensor's scaling and Normalize on a whole uint8 batch (no-op otherwise)."""
        if self.normalize is None:
            return batch
        return self.normalize(batch.to(torch.float32).div(255))


def _collate(items: list[_Item]) -> tuple[list[int], torch.Tensor | None, str | None]:
    """One stacked tensor per batch: sharing thousands of tiny tensors between processes
    costs more than decoding them."""
    errors = [err for _, _, err in items if err is not None]
    if errors:
        return [], None, errors[0]
    return [i for i, _, _ in items], torch.stack([t for _, t, _ in items if t is not None]), None


def decode_images(paths: Sequence[str], preprocess: Preprocess) -> torch.Tensor:
    """Decode and preprocess ``paths`` into one float32 ``(N, C, H, W)`` tensor, in order.

    Up to two worker processes for large requests; small ones decode in-process, where
    starting workers would cost more than they save.
    """
    out = torch.empty((len(paths), *preprocess.input_size), dtype=torch.float32)
    ds = _Decoder(paths, preprocess)
    workers = min(2, os.cpu_count() or 1) if len(paths) > 2 * _BATCH else 0
    if multiprocessing.current_process().daemon:  # e.g. inside a pool worker: no children
        workers = 0
    loader = torch.utils.data.DataLoader(
        ds, batch_size=_BATCH, shuffle=False, num_workers=workers, collate_fn=_collate
    )
    step = f"decoding {len(paths)} images"
    with task(step, -(-len(paths) // _BATCH), "batches", lazy=True) as progress:
        for pos, batch, err in loader:
            if err is not None:
                raise HaqError(err)
            assert batch is not None
            out[pos] = ds.finish(batch)
            progress.advance()
    return out
