"""The mapping's writes: each encodes outside the engine, calls one engine operation, then keeps
the counters and the front cache (``_after_commit``)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, Generic, overload

from .._codec.record import Record
from .._frontcache import coherence
from .._redact import key_text
from ..engines.base import Bounds, Commit, Item
from ..exceptions import CorruptedRecordError
from .options import ttl_seconds
from .state import MISSING, K, T, V, StoreState, corrupted, typechecked

if TYPE_CHECKING:
    from typing_extensions import Self


_new_tuple: Any = tuple.__new__

class Writes(StoreState, Generic[K, V]):
    """Every write of the mapping."""

    def _after_commit(self, lookups: list[bytes], commit: Commit) -> None:
        """Evict the written keys (``lookups``) from the front cache, which stays valid if ours was the only commit."""
        front = self._front
        if front is None or not commit.tracked:
            return  # inside transaction(): its final commit moves the txnid and empties the cache
        with self._lock:
            coherence.after_commit(front, self._feed, lookups, commit, self._plain_cache_keys)

    def _prepare(self, key: Any, value: Any) -> Item:
        lookup, exact = self._keys.encode(key)
        kind, payload = self._encode_value(value)
        item: Item = _new_tuple(Item, (lookup, exact, kind, payload))  # Item(...) without its Python __new__
        return item

    @property
    def _bounds(self) -> Bounds:
        return Bounds(self.max_items, self.max_bytes)

    def _write_bounds(self) -> Bounds:
        """The bounds to hand an engine write; when there are any, this process's front-cache hits
        are handed to the engine first, since eviction picks by access time."""
        bounds = self._bounds
        if bounds.max_items is not None or bounds.max_bytes is not None:
            self._hand_over_hits()
        return bounds

    def _check_fits(self, first_key: Any, items: list[Item]) -> None:
        """Refuse, before any transaction, a write that max_items/max_bytes cannot hold even in an
        otherwise empty store (eviction never removes what the write itself stores)."""
        count = len({item.lookup for item in items})  # a key given twice counts once
        if not count:
            return
        if self.max_items is not None and count > self.max_items:
            raise ValueError(f"this write stores {count} entries, more than max_items={self.max_items}")
        if self.max_bytes is not None:
            needed = self._engine.footprint(items)
            if needed > self.max_bytes:
                what = (f"the value for key {key_text(first_key)} needs" if count == 1
                        else f"these {count} entries need")
                raise ValueError(f"{what} at least {needed} bytes of database pages, more than "
                                 f"max_bytes={self.max_bytes}")

    def _note_evictions(self, evicted: list[bytes]) -> None:
        if evicted:
            self.counters["evicted"] += len(evicted)
            self._log("evicted {} entries to stay within bounds", len(evicted))

    def _write_many(self, first_key: Any, items: list[Item], expires: float, once: bytes | None = None) -> None:
        """Write ``items`` (``first_key``: the first one's key, for a message)."""
        engine = self._check_open()
        now = self._clock()
        bounds = self._bounds
        if bounds.max_items is not None or bounds.max_bytes is not None:
            self._check_fits(first_key, items)
            self._hand_over_hits()  # eviction picks by access time
        commit = engine.put(items, now, expires, bounds, once)
        self.counters["sets"] += len(items)
        self._note_evictions(commit.evicted)
        self._after_commit([item.lookup for item in items] + commit.evicted, commit)

    def __setitem__(self, key: K, value: V) -> None:
        self._check_open()
        self._write_many(key, [self._prepare(key, value)], 0.0)

    @typechecked
    def set(self, key: K, value: V, ttl: int | float | None = None) -> None:
        """``d[key] = value``, optionally expiring ``ttl`` seconds from now."""
        ttl = ttl_seconds(ttl)
        self._check_open()
        expires = 0.0 if ttl is None else self._clock() + ttl
        self._write_many(key, [self._prepare(key, value)], expires)

    @typechecked
    def set_many(self, mapping: Mapping[K, V] | Iterable[tuple[K, V]], ttl: int | float | None = None) -> None:
        """Write several entries in one transaction (all or nothing)."""
        ttl = ttl_seconds(ttl)
        pairs = list(mapping.items() if isinstance(mapping, Mapping) else mapping)
        items = [self._prepare(key, value) for key, value in pairs]
        if items:
            self._write_many(pairs[0][0], items, 0.0 if ttl is None else self._clock() + ttl)

    def update(self, other: Any = (), /, **kwargs: V) -> None:
        """Like ``dict.update``, in one transaction."""
        if isinstance(other, Mapping):
            pairs = list(other.items())
        elif hasattr(other, "keys"):
            pairs = [(key, other[key]) for key in other.keys()]
        else:
            pairs = []
            for item in other:
                pair = tuple(item)
                if len(pair) != 2:
                    raise ValueError(f"update sequence element has length {len(pair)}; 2 is required")
                pairs.append(pair)
        pairs.extend(kwargs.items())
        self.set_many(pairs)

    def __ior__(self, other: Mapping[K, V]) -> Self:
        self.update(other)
        return self

    def _delete(self, lookup: bytes, expected: Record | None = None) -> Record | None:
        """Remove the entry of ``lookup``: its record, or None if it was missing or expired, or,
        given ``expected`` (a copy read earlier), if it is no longer that version of the entry."""
        record, commit = self._check_open().remove(lookup, self._clock(), expected)
        return self._removed(lookup, record, commit)

    def _removed(self, name: bytes, record: Record | None, commit: Commit) -> Record | None:
        """Bookkeeping after ``commit`` removed ``record`` (None: nothing live), read as ``name``."""
        self._after_commit([name], commit)
        if record is not None:
            self.counters["deletes"] += 1
            if commit.tracked:  # inside transaction() it may roll back (a stale note is harmless: see next_seq_value)
                self._touched.discard(record.seq)
        return record

    def __delitem__(self, key: K) -> None:
        try:
            removed = self._delete(self._keys.encode(key)[0])
        except CorruptedRecordError as exc:  # its slot holds another key's record: not removed
            raise corrupted(key, exc) from exc
        if removed is None:
            raise KeyError(key)

    @overload
    def pop(self, key: K) -> V: ...
    @overload
    def pop(self, key: K, default: V | T) -> V | T: ...

    def pop(self, key: Any, default: Any = MISSING) -> Any:
        """Remove ``key`` and return its value, atomically. The value is decoded before the entry
        is removed, outside the write transaction: a value the codec cannot decode stays
        (``CodecError``), and a codec may use the store."""
        lookup = self._keys.encode(key)[0]
        while True:
            try:
                record = self._check_open().find(lookup, self._clock())
            except CorruptedRecordError as exc:
                raise corrupted(key, exc) from exc
            if record is None:
                if default is MISSING:
                    raise KeyError(key)
                return default
            value = self._decode_value(record.kind, record.payload, key)
            if self._delete(lookup, expected=record) is not None:
                return value
            # written or removed since it was read: read it again

    def popitem(self) -> tuple[K, V]:
        """Remove and return the most recently inserted entry (LIFO, like dict); decoded before
        it is removed, as in :meth:`pop`."""
        while True:
            newest = self._check_open().newest(self._clock())
            if newest is None:
                raise KeyError("popitem(): PersistDict is empty")
            record, where = newest
            key = self._record_key(record)
            value = self._decode_value(record.kind, record.payload, key)
            removed, name, commit = self._engine.remove_at(where, record)
            if self._removed(name, removed, commit) is not None:
                return key, value

    @overload
    def setdefault(self: Writes[K, T | None], key: K, default: None = None) -> T | None: ...
    @overload
    def setdefault(self, key: K, default: V) -> V: ...

    def setdefault(self, key: Any, default: Any = None) -> Any:
        """Return ``d[key]``, first storing ``default`` if missing, atomically."""
        lookup, exact = self._keys.encode(key)
        bounds = self._bounds
        bounded = bounds.max_items is not None or bounds.max_bytes is not None
        try:  # serialized before the transaction; an error matters only if the key is missing
            item = Item(lookup, exact, *self._encode_value(default))
            if bounded:
                self._check_fits(key, [item])
            encode_error: Exception | None = None
        except Exception as exc:
            item, encode_error = Item(lookup, exact, 0, b""), exc
        engine = self._check_open()
        now = self._clock()
        if bounded:
            self._hand_over_hits()  # eviction picks by access time
        try:
            found, commit = engine.put_if_absent(item, now, bounds, encode_error)
        except CorruptedRecordError as exc:
            raise corrupted(key, exc) from exc
        if found is None:
            self.counters["sets"] += 1
            self._note_evictions(commit.evicted)
        self._after_commit([lookup] + commit.evicted, commit)
        if found is None:
            return default
        return self._decode_value(found[0], found[1], key)

    @typechecked
    def touch(self, key: K, ttl: int | float | None = None) -> None:
        """Mark ``key`` as used now; with ``ttl``, expire it ``ttl`` seconds from now (None: never)."""
        ttl = ttl_seconds(ttl)
        lookup, _ = self._keys.encode(key)
        engine = self._check_open()
        now = self._clock()
        ok, commit = engine.retime(lookup, now, 0.0 if ttl is None else now + ttl)
        self._after_commit([lookup], commit)
        if not ok:
            raise KeyError(key)

    def clear(self) -> None:
        """Remove every entry; ``d(...)`` may be called again afterwards."""
        commit = self._check_open().clear()
        if commit.tracked:  # as in _delete
            self._touched.clear()
        if self._front is not None:
            with self._lock:
                self._front.clear()  # before _after_commit lets the cache pass this commit
        self._after_commit([], commit)

    def __call__(self, /, *args: Any, **kwargs: V) -> Self:
        """Initialise like ``dict(...)``; allowed once per database (until ``clear()``)."""
        source: dict[Any, Any] = dict(*args, **kwargs)
        items = [self._prepare(key, value) for key, value in source.items()]
        self._write_many(next(iter(source), None), items, 0.0, once=b"called")
        return self

    @contextmanager
    def transaction(self) -> Iterator[Self]:
        """Make a group of reads and writes atomic and isolated across threads and processes.

        Rolls back if the block raises. Nested blocks in the same thread are
        savepoints: an inner block that raises rolls back only its own writes.
        Other writers (threads and processes) wait until it ends: keep it short.
        A block that outgrows the LMDB map raises ``StorageFullError`` after the
        rollback has grown it: run the block again.
        """
        with self._check_open().transaction():
            yield self
