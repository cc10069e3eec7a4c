"""The in-memory LRU front cache and the rule that keeps it coherent.

Coherence: the cache is valid as of one LMDB transaction id (``valid_at``).
Any commit, by any instance or process, moves LMDB's last txnid; the next
lookup sees the change and empties the cache, so a read never returns a value
older than the last commit. A value read in a snapshot is only cached if that
snapshot is ``valid_at``; our own writes keep the cache when nobody else
committed in between (their txn id is ``valid_at + 1``).

Aliasing: callers may mutate what they get or what they stored. Immutable
values are shared; flat lists/dicts/sets of scalars and numpy arrays are
copied (cheaper than decoding); anything else is decoded again from the
serialized payload on each hit.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from cachetools import LRUCache

SCALARS = frozenset({str, bytes, int, float, bool, type(None), complex})
_ENTRY_OVERHEAD = 120  # rough bytes per cached entry beyond its payload

# how a cached entry gives out its value
UNCLASSIFIED = 0  # holds the payload; decoded and classified on first hit
SHARED = 1  # immutable: give the object itself
COPIED = 2  # flat container of scalars: give a shallow copy
DECODED = 3  # holds the payload; decode on every hit


def _immutable(value: Any, depth: int = 0) -> bool:
    kind = type(value)
    if kind in SCALARS:
        return True
    if kind is tuple or kind is frozenset:
        return depth < 4 and all(_immutable(item, depth + 1) for item in value)
    return False


def _copier(value: Any) -> Callable[[Any], Any] | None:
    """A cheap, alias-free way to hand out ``value`` again, or None."""
    kind = type(value)
    if kind is list or kind is set or kind is bytearray:
        if kind is bytearray or set(map(type, value)) <= SCALARS:
            return kind
        return None
    if kind is dict:
        if set(map(type, value.values())) <= SCALARS:
            return dict.copy
        return None
    if kind.__name__ == "ndarray" and kind.__module__ == "numpy" and not value.dtype.hasobject:
        return kind.copy
    return None


class CachedEntry:
    __slots__ = ("mode", "obj", "copier", "seq", "expires", "size")

    def __init__(self, payload: bytes, seq: int, expires: float) -> None:
        self.mode = UNCLASSIFIED
        self.obj: Any = payload
        self.copier: Callable[[Any], Any] | None = None
        self.seq = seq
        self.expires = expires
        self.size = len(payload) + _ENTRY_OVERHEAD

    def value(self, decode: Callable[[bytes], Any]) -> Any:
        mode = self.mode
        if mode == SHARED:
            return self.obj
        if mode == COPIED:
            return self.copier(self.obj)  # type: ignore[misc]
        if mode == DECODED:
            return decode(self.obj)
        # first hit: decode once, decide how to serve later hits
        value = decode(self.obj)
        if _immutable(value):
            self.mode, self.obj = SHARED, value
            return value
        copier = _copier(value)
        if copier is not None:
            self.mode, self.obj, self.copier = COPIED, copier(value), copier
        else:
            self.mode = DECODED
        return value


def _entry_size(entry: CachedEntry) -> int:
    return entry.size


class FrontCache:
    """LRU of recently used entries, bounded by count and by payload bytes."""

    def __init__(self, max_entries: int, max_bytes: int) -> None:
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self.lru: LRUCache[Any, CachedEntry] = LRUCache(maxsize=max_bytes, getsizeof=_entry_size)
        self.valid_at = -1
        self.hits = 0

    def get(self, key: Any, last_txnid: int) -> CachedEntry | None:
        if last_txnid != self.valid_at:
            self.lru.clear()
            self.valid_at = last_txnid
            return None
        return self.lru.get(key)

    def fill(self, key: Any, payload: bytes, seq: int, expires: float, snapshot_id: int) -> None:
        """Cache an entry read in transaction ``snapshot_id``, if the cache is valid there."""
        if snapshot_id == self.valid_at:
            self._store(key, CachedEntry(payload, seq, expires))

    def after_write(self, changes: list[tuple[Any, CachedEntry | None]], txn_id: int) -> None:
        """Record our own committed transaction ``txn_id``: (key, entry or None if deleted)."""
        if txn_id == self.valid_at + 1:
            self.valid_at = txn_id
            for key, entry in changes:
                if entry is None:
                    self.lru.pop(key, None)
                else:
                    self._store(key, entry)
        else:
            for key, _ in changes:
                self.lru.pop(key, None)

    def discard(self, key: Any) -> None:
        self.lru.pop(key, None)

    def clear(self) -> None:
        self.lru.clear()
        self.valid_at = -1

    def _store(self, key: Any, entry: CachedEntry) -> None:
        if entry.size > self.max_bytes:
            self.lru.pop(key, None)
            return
        lru = self.lru
        lru[key] = entry
        while len(lru) > self.max_entries:
            lru.popitem()

    def __len__(self) -> int:
        return len(self.lru)

    @property
    def bytes_used(self) -> int:
        return int(self.lru.currsize)
