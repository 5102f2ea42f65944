"""Real English text that ships with every Python: sentences of the standard library's
docstrings (PSF licence), tokenized for a text model.

``text`` (or ``text:N``) is a fixed, sorted list of a few thousand sentences (6-40 words,
mostly letters) read with `ast` from the stdlib's top-level ``.py`` files, so no module is
imported and the set is the same on every machine with the same Python. Each sentence becomes
``tokens`` ids (truncated or padded with the tokenizer's pad id), as float32 (see
`haq.models.hf`).
"""

from __future__ import annotations

import ast
import functools
import re
import sysconfig
from pathlib import Path

import torch

from haq.errors import HaqError

MIN_WORDS, MAX_WORDS = 6, 40
_SPLIT = re.compile(r"(?<=[.!?])\s+(?=[A-Z])")


@functools.lru_cache(maxsize=1)
def stdlib_sentences() -> tuple[str, ...]:
    """Sentences of the standard library's docstrings, deduplicated and sorted."""
    root = Path(sysconfig.get_paths()["stdlib"])
    out: set[str] = set()
    for path in sorted(root.glob("*.py")):
        if path.name.startswith("_"):
            continue
        try:
            tree = ast.parse(path.read_text(encoding="utf-8"))
        except (SyntaxError, UnicodeDecodeError, OSError):
            continue
        for node in ast.walk(tree):
            if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
                doc = ast.get_docstring(node)
                if doc:
                    out.update(s for s in _SPLIT.split(" ".join(doc.split())) if _is_sentence(s))
    return tuple(sorted(out))


def _is_sentence(s: str) -> bool:
    words = len(s.split())
    letters = sum(c.isalpha() or c == " " for c in s)
    return (
        MIN_WORDS <= words <= MAX_WORDS
        and s[0].isupper()
        and s.endswith(".")
        and letters > 0.92 * len(s)
    )


def tokenizer_folder(name: str) -> Path:
    if name == "minilm":
        from haq.models.hf import minilm_folder

        return minilm_folder()
    return Path(name).expanduser()


@functools.lru_cache(maxsize=4)
def _tokenizer(name: str):  # type: ignore[no-untyped-def]
    try:
        from transformers import AutoTokenizer
    except ImportError as e:
        raise HaqError('text data needs transformers; pip install -e ".[text]"') from e
    return AutoTokenizer.from_pretrained(tokenizer_folder(name), local_files_only=True)


def token_ids(sentences: list[str], tokenizer: str, tokens: int) -> torch.Tensor:
    """``(len(sentences), tokens)`` float32 ids, truncated or padded to ``tokens``."""
    tok = _tokenizer(tokenizer)
    enc = tok(sentences, padding="max_length", truncation=True, max_length=tokens,
              return_tensors="pt")  # fmt: skip
    return enc["input_ids"].to(torch.float32)
