"""Model registry keyed by the names users type after ``--model``.

Each entry knows how to build the network, load its weights and preprocess its inputs, so
the rest of haq never special-cases a model family. Adding a family is one module that calls
`register`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

from haq.errors import HaqError


@dataclass(frozen=True)
class Preprocess:
    """How raw images become input tensors (torchvision-style resize/crop/normalise); for text
    models, ``input_size`` is ``(tokens,)`` and ``tokenizer`` names the tokenizer's folder."""

    input_size: tuple[int, ...]  # C, H, W the network expects (text: tokens)
    mean: tuple[float, ...]
    std: tuple[float, ...]
    resize: int | None = None  # shorter side before the centre crop; None: no resize
    crop: int | None = None  # centre crop size; None: no crop
    grayscale: bool = False
    tokenizer: str | None = None  # text models: a tokenizer folder, or "minilm" (haq.data.text)

    @property
    def is_text(self) -> bool:
        """A text model's preprocess (token ids in): its Linears get text kernels and metrics."""
        return self.tokenizer is not None

    def transform(self) -> Callable[[Any], torch.Tensor]:
        """A torchvision transform from a PIL image to a normalised tensor."""
        from torchvision import transforms as T

        steps: list[Any] = []
        if self.grayscale:
            steps.append(T.Grayscale(num_output_channels=1))
        if self.resize is not None:
            steps.append(T.Resize(self.resize))
        if self.crop is not None:
            steps.append(T.CenterCrop(self.crop))
        elif self.resize is None:
            steps.append(T.Resize(self.input_size[1:]))
        steps += [T.ToTensor(), T.Normalize(self.mean, self.std)]
        return T.Compose(steps)


@dataclass(frozen=True)
class ModelEntry:
    """One registered model family member.

    ``build(weights)`` returns the network in eval mode with weights loaded; ``weights`` is
    ``"default"`` (the entry's own pretrained weights), ``"none"`` (random init) or a path.
    """

    name: str
    build: Callable[[str], torch.nn.Module]
    preprocess: Preprocess
    num_classes: int
    description: str
    family: str
    default_data: str | None = None  # data source name that suits the model (e.g. "digits")
    tags: tuple[str, ...] = field(default_factory=tuple)


_REGISTRY: dict[str, ModelEntry] = {}


def register(entry: ModelEntry) -> ModelEntry:
    _REGISTRY[entry.name] = entry
    return entry


def _ensure_builtins() -> None:
    # Importing the family modules registers them; deferred so `import haq` stays light.
    from haq.models import cifar_resnet, digits, hf, zoo  # noqa: F401


def list_models() -> list[ModelEntry]:
    _ensure_builtins()
    return sorted(_REGISTRY.values(), key=lambda e: (e.family, e.name))


def get_entry(name: str) -> ModelEntry:
    """The registry entry for ``name``; ``package.module:factory`` builds a user model."""
    _ensure_builtins()
    if name in _REGISTRY:
        return _REGISTRY[name]
    if name.startswith("hf:"):
        from haq.models.hf import hf_entry

        return hf_entry(name)
    if name.startswith("probe_"):
        from haq.models.probe import probe_entry

        return probe_entry(name)
    if ":" in name:
        from haq.models.custom import custom_entry

        return custom_entry(name)
    from haq.models.zoo import torchvision_entry

    entry = torchvision_entry(name)
    if entry is not None:
        return register(entry)
    known = ", ".join(sorted(_REGISTRY))
    raise HaqError(
        f"unknown model {name!r}; use one of {known} (see `haq models`), any torchvision classifier's name or 'package.module:factory'"
    )


@dataclass
class LoadedModel:
    """A built network plus what the rest of haq needs to know about it."""

    name: str
    model: torch.nn.Module
    entry: ModelEntry
    weights: str

    @property
    def preprocess(self) -> Preprocess:
        return self.entry.preprocess

    def example_input(self, batch: int = 1) -> torch.Tensor:
        return torch.zeros((batch, *self.entry.preprocess.input_size))


def load_model(name: str, weights: str = "default", tokens: int | None = None) -> LoadedModel:
    """Build ``name`` with ``weights`` (``default``, ``none`` or a local file), in eval mode;
    ``tokens``: a text model's sequence length (default: the entry's)."""
    entry = get_entry(name)
    if tokens is not None:
        from haq.models.hf import with_tokens

        entry = with_tokens(entry, tokens)
    if str(weights) == "none":
        # the same random network in every process (the driver and each Ray actor must score
        # one model), without touching the caller's random stream
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            model = entry.build("none")
    else:
        model = entry.build(str(weights))
    model.eval()
    return LoadedModel(name=name, model=model, entry=entry, weights=str(weights))
