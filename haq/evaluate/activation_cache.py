"""A byte-bounded LRU of activations: what `PrefixRunner` keeps between configs.

Entries are whole segment outputs (one tensor per batch) keyed by (segment, the part of the
config they depend on); the bound counts tensor storage, so views of one storage count once.
"""

from __future__ import annotations

import os
from collections import OrderedDict
from collections.abc import Iterator, ValuesView
from dataclasses import dataclass
from typing import Any

import torch

from haq.config import Precision
from haq.errors import HaqError

DEFAULT_CACHE_MB = 1024.0
CACHE_ENV = "HAQ_PREFIX_CACHE_MB"

Key = tuple[int, tuple[Precision, ...]]


def cache_budget_bytes() -> int:
    """The cache bound: ``$HAQ_PREFIX_CACHE_MB`` (0 disables reuse) or 1 GiB."""
    text = os.environ.get(CACHE_ENV, "").strip()
    if not text:
        return int(DEFAULT_CACHE_MB * 2**20)
    try:
        mb = float(text)
    except ValueError:
        mb = -1.0
    if not mb >= 0:  # also rejects nan
        raise HaqError(f"{CACHE_ENV}={text!r} is not a size in MB; use e.g. 512, or 0 to disable")
    return int(mb * 2**20)


@dataclass
class Entry:
    tensors: list[torch.Tensor]  # one output per batch, in batch order
    versions: list[int]  # their version counters when stored: a change means corruption
    tags: list[Any]  # their grid tags when stored
    nbytes: int


def storage_bytes(tensors: list[torch.Tensor]) -> int:
    seen: dict[int, int] = {}
    for t in tensors:
        s = t.untyped_storage()
        seen[s.data_ptr()] = s.nbytes()
    return sum(seen.values())


class ActivationCache:
    """Least recently used entries go first once ``limit`` bytes would be exceeded."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.used = 0
        self._entries: OrderedDict[Key, Entry] = OrderedDict()

    def get(self, key: Key) -> Entry | None:
        """The entry (now the most recently used), or None."""
        entry = self._entries.get(key)
        if entry is not None:
            self._entries.move_to_end(key)
        return entry

    def insert(self, key: Key, entry: Entry) -> None:
        entry.nbytes = storage_bytes(entry.tensors)
        if entry.nbytes > self.limit:
            return
        self.drop(key)
        self.evict(self.limit - entry.nbytes)
        self._entries[key] = entry
        self.used += entry.nbytes

    def evict(self, keep: float) -> None:
        """Drop least recently used entries until at most ``keep`` bytes remain."""
        while self._entries and self.used > keep:
            _, evicted = self._entries.popitem(last=False)
            self.used -= evicted.nbytes

    def drop(self, key: Key) -> None:
        old = self._entries.pop(key, None)
        if old is not None:
            self.used -= old.nbytes

    def clear(self) -> None:
        self._entries.clear()
        self.used = 0

    def __contains__(self, key: object) -> bool:
        return key in self._entries

    def __getitem__(self, key: Key) -> Entry:
        return self._entries[key]

    def __iter__(self) -> Iterator[Key]:
        return iter(self._entries)

    def values(self) -> ValuesView[Entry]:
        return self._entries.values()
