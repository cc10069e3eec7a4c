"""The in-memory LRU front cache of decoded values.

Coherence with the engine: see coherence.py.

Speed: hits are served without a lock from ``hot`` (a dict mirroring the
cachetools LRU). Every mutation happens under the owner's lock and bumps
``stamp`` before and after (a seqlock), so a lock-free reader that sees the
same even stamp around its lookup saw a consistent state. Hits are noted in
``recent`` and applied to the LRU order in batches, under the lock.
Admission: an entry is cached on its second miss, so a one-pass scan does not
flush the hot set (and a cold read does not pay for a cache insert).

Aliasing: callers may mutate what they get. Immutable values are shared;
flat lists/dicts/sets of scalars and numpy arrays are copied (cheaper than
decoding); anything else is decoded again from the payload on each hit.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from cachetools import LRUCache

SCALARS = frozenset({str, bytes, int, float, bool, type(None), complex})
_ENTRY_OVERHEAD = 120  # rough bytes per cached entry beyond its payload
RECENT_LIMIT = 4096  # hits buffered before they are applied to the LRU order
_SEEN_GENERATION = 16_384  # keys remembered for admission on the second miss: two generations of this

# (valid_at, snapshot id, keys changed in between): what validate needs to keep the cache
Changes = tuple[int, int, list[Any]]

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
    if kind is bytearray:
        return kind
    if kind is list or kind is set:
        return kind if set(map(type, value)) <= SCALARS else None
    if kind is dict:
        return dict.copy if set(map(type, value.values())) <= SCALARS else None
    if kind.__name__ == "ndarray" and kind.__module__ == "numpy" and not value.dtype.hasobject:
        return kind.copy  # type: ignore[no-any-return]
    return None


class CachedEntry:
    """One cached value; ``state`` = (mode, object, copier) is replaced atomically."""

    __slots__ = ("key", "state", "seq", "expires", "size")

    def __init__(self, key: Any, payload: bytes, seq: int, expires: float) -> None:
        self.key = key
        self.state: tuple[int, Any, Any] = (UNCLASSIFIED, payload, None)
        self.seq = seq
        self.expires = expires
        self.size = len(payload) + _ENTRY_OVERHEAD

    def value(self, decode: Callable[[bytes], Any]) -> Any:
        mode, obj, copier = self.state
        if mode == SHARED:
            return obj
        if mode == COPIED:
            return copier(obj)
        if mode == DECODED:
            return decode(obj)
        # first hit: decode once, decide how to serve later hits
        value = decode(obj)
        if _immutable(value):
            self.state = (SHARED, value, None)
        else:
            copier = _copier(value)
            if copier is not None:
                self.state = (COPIED, copier(value), copier)
            else:
                self.state = (DECODED, obj, None)
        return value


class _Misses:
    """Keys that missed once, in two generations of at most ``_SEEN_GENERATION`` keys.

    Small dicts on purpose: growing or clearing one of 100k keys stalls the read
    that does it for milliseconds. Used without the lock by ``note_miss``: every
    operation is a single dict operation or attribute swap (atomic under the
    GIL), and a lost race only forgets a hint.
    """

    __slots__ = ("young", "old")

    def __init__(self) -> None:
        self.young: dict[Any, None] = {}
        self.old: dict[Any, None] = {}

    def __bool__(self) -> bool:
        return bool(self.young) or bool(self.old)

    def note(self, key: Any) -> bool:
        """Remember ``key``; True if it was already remembered (one call: the cold read path)."""
        young = self.young
        if key in young or key in self.old:
            return True
        young[key] = None
        if len(young) >= _SEEN_GENERATION:
            self.old, self.young = young, {}
        return False

    def discard(self, key: Any) -> None:
        self.young.pop(key, None)
        self.old.pop(key, None)

    def clear(self) -> None:
        self.young, self.old = {}, {}


class _MirroredLRU(LRUCache):  # type: ignore[type-arg]
    """cachetools' LRU, keeping a plain dict of its contents for lock-free reads."""

    def __init__(self, maxsize: int, mirror: dict[Any, CachedEntry]) -> None:
        super().__init__(maxsize=maxsize, getsizeof=_entry_size)
        self.mirror = mirror

    def __setitem__(self, key: Any, value: CachedEntry) -> None:
        super().__setitem__(key, value)
        self.mirror[key] = value

    def __delitem__(self, key: Any) -> None:
        super().__delitem__(key)
        self.mirror.pop(key, None)

    def clear(self) -> None:
        super().clear()
        self.mirror.clear()


def _entry_size(entry: CachedEntry) -> int:
    return entry.size


class FrontCache:
    """LRU of recently used entries, bounded by count and by payload bytes.

    Every method except the owner's lock-free read of ``hot`` must be called
    with the owner's lock held.
    """

    def __init__(self, max_entries: int, max_bytes: int,
                 on_hits: Callable[[list[CachedEntry]], None]) -> None:
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self.on_hits = on_hits  # receives buffered hits when they are applied (the owner's atimes)
        self.hot: dict[Any, CachedEntry] = {}
        self.lru = _MirroredLRU(max_bytes, self.hot)
        self.valid_at = -1
        self.stamp = 0  # odd while a mutation is in progress
        self.recent: dict[Any, CachedEntry] = {}  # hits not yet applied to the LRU order
        self.seen = _Misses()  # keys that missed once
        self.hits = 0  # counted without the lock on the hot path: may undercount under contention

    def _begin(self) -> None:
        self.stamp += 1

    def _end(self) -> None:
        self.stamp += 1

    def validate(self, last_txnid: int, changes: Changes | None = None) -> None:
        """Bring the cache to LMDB's last commit: empty it if anything was committed since it
        was valid, unless ``changes`` = (valid_at, snapshot id, keys) names every key the commits
        in between changed (``coherence.changes_since``); then only those go, and the rest is
        valid at that snapshot.
        """
        if last_txnid == self.valid_at:
            return
        self._begin()
        if changes is not None and changes[0] == self.valid_at:
            self._evict(changes[2])
            self.valid_at = changes[1]
        else:
            self.lru.clear()
            self.seen.clear()
            self.valid_at = last_txnid
        self._end()

    def _evict(self, keys: list[Any]) -> None:
        hot, seen = self.hot, self.seen
        for key in keys:
            if key in hot:
                del self.lru[key]
            seen.discard(key)

    def note_hit(self, entry: CachedEntry) -> None:
        recent = self.recent
        recent[entry.key] = entry
        if len(recent) > RECENT_LIMIT:
            self.hand_over_hits()

    def hand_over_hits(self) -> None:
        """Move buffered hits to the LRU's most-recent end and hand them to ``on_hits``."""
        recent, self.recent = self.recent, {}
        lru = self.lru
        for key, entry in recent.items():
            if self.hot.get(key) is entry:
                lru[key]  # cachetools moves it to the most-recent end
        if recent:
            self.on_hits(list(recent.values()))

    def note_miss(self, key: Any, snapshot_id: int) -> bool:
        """The lock-free part of :meth:`fill`: remember a first miss. True if ``fill`` (under the
        lock) should run: a second miss, or a snapshot other than ``valid_at`` (the cache may be stale).

        ``seen`` is only an admission hint (it never holds a value) and dict
        operations are atomic, so it is safe to update without the lock.
        Inlined in ``PersistDict._read`` (a call less per uncached read).
        """
        return snapshot_id != self.valid_at or self.seen.note(key)

    def fill(self, key: Any, kind: int, payload: bytes | memoryview, seq: int, expires: float,
             snapshot_id: int) -> None:
        """Cache an entry read in transaction ``snapshot_id`` on its second miss.

        The cached bytes are the value kind followed by the payload, so a hit
        can decode them the same way as a record.
        """
        if snapshot_id != self.valid_at:
            return
        seen = self.seen
        if not seen.note(key):
            return
        seen.discard(key)
        entry = CachedEntry(key, bytes((kind,)) + payload, seq, expires)
        if entry.size > self.max_bytes:
            return
        self._begin()
        lru = self.lru
        lru[key] = entry
        while len(lru) > self.max_entries:
            lru.popitem()
        self._end()

    def after_write(self, keys: list[Any], txn_id: int, wrote: bool, last_txnid: int) -> None:
        """The owner's transaction ``txn_id`` committed; ``keys`` may have changed.

        The cache stays valid only if the transaction changed something (so it
        took ``txn_id``), ``txn_id`` is ``valid_at + 1`` and still LMDB's last
        txnid: nobody else committed in between.
        """
        self._begin()
        self._evict(keys)
        if wrote and txn_id == self.valid_at + 1 and last_txnid == txn_id:
            self.valid_at = txn_id
        self._end()

    def holds_keys(self) -> bool:
        """Whether any key is cached or remembered for admission."""
        return bool(self.hot) or bool(self.seen)

    def clear(self) -> None:
        self._begin()
        self.lru.clear()
        self.seen.clear()
        self.recent.clear()
        self.valid_at = -1
        self._end()

    def __len__(self) -> int:
        return len(self.lru)

    @property
    def bytes_used(self) -> int:
        return int(self.lru.currsize)
