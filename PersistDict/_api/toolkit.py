"""Read-modify-write helpers above the engine: counters (``incr``/``decr``) and versions
(``version``/``compare_and_set``). Each one runs its read and its write in one engine transaction,
so it is atomic across threads and processes on every engine."""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, Generic

from ..engines.base import Commit, Item, StoredEntry
from ..exceptions import CorruptedRecordError, StorageFullError
from .options import ttl_seconds
from .state import K, V, StoreState, corrupted, typechecked

if TYPE_CHECKING:
    from ..engines.base import Bounds

Number = int | float
GROWTH_RETRIES = 8  # a write that outgrows the LMDB map is rolled back, the map grown: run it again


_VERSION_HEADER = struct.Struct("<QddB")  # seq, mtime, expires, kind


def version_of(record: StoredEntry) -> int:
    """The version of a stored entry: a 63-bit digest of its id, last write time, expiry and value.
    Every write moves the entry's mtime forward (engines/base.py ``written_after``), so every
    write changes it; reads and access-time flushes do not touch the record, so they do not."""
    header = _VERSION_HEADER.pack(record.seq, record.mtime, record.expires, record.kind)
    digest = hashlib.blake2b(header, digest_size=8)
    digest.update(record.payload)
    return int.from_bytes(digest.digest(), "big") >> 1


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


class Toolkit(StoreState, Generic[K, V]):
    """Counters and versions: atomic read-modify-write on one entry."""

    if TYPE_CHECKING:
        _keys: Any

        @property
        def _bounds(self) -> Bounds: ...

        def _note_evictions(self, evicted: list[bytes]) -> None: ...

    @contextmanager
    def _rewriting(self, key: Any) -> Iterator[tuple[bytes, bytes | None, Any]]:
        """One engine transaction around a read and a write of ``key``: yields (lookup, exact,
        engine); the block reads with ``engine.get`` and writes with ``engine.put``. Other writers
        (threads, processes) wait until it ends; it rolls back if the block raises."""
        lookup, exact = self._keys.encode(key)
        engine = self._check_open()
        bounds = self._bounds
        if bounds.max_items is not None or bounds.max_bytes is not None:
            self._hand_over_hits()  # eviction picks by access time
        with engine.transaction():
            yield lookup, exact, engine

    def _read_modify_write(self, key: Any, change: Callable[[bool, Any, float], tuple[Any, Any]]) -> Any:
        """Run ``change(found, value, expires)`` on the live entry of ``key`` (found False: absent)
        inside one write transaction; it returns (value to store or MISSING_WRITE, result)."""
        for attempt in range(GROWTH_RETRIES):
            try:
                with self._rewriting(key) as (lookup, exact, engine):
                    now = self._clock()
                    try:
                        seq, expires, kind, payload, _ = engine.get(lookup)
                    except CorruptedRecordError as exc:
                        raise corrupted(key, exc) from exc
                    found = seq >= 0 and not (expires and expires <= now)
                    current = self._decode_value(kind, payload, key) if found else None
                    new, result = change(found, current, expires if found else 0.0)
                    if new is _NO_WRITE:
                        return result
                    item = Item(lookup, exact, *self._encode_value(new))
                    commit: Commit = engine.put([item], now, expires if found else 0.0, self._bounds)
            except StorageFullError:
                if attempt == GROWTH_RETRIES - 1 or self._feed.in_transaction():
                    raise
                continue
            self.counters["sets"] += 1
            self._note_evictions(commit.evicted)
            self._after_commit([lookup] + commit.evicted, commit)
            return result
        raise AssertionError("unreachable")

    def incr(self, key: K, delta: Number = 1, *, default: Number = 0) -> Number:
        """Add ``delta`` to the number stored at ``key`` (``default`` if missing) and return the new
        value, atomically across threads and processes. The entry keeps its TTL. ``TypeError``, and
        nothing written, if the stored value, ``delta`` or ``default`` is not an int or a float."""
        if not _is_number(delta):
            raise TypeError(f"incr() delta must be an int or a float, not {type(delta).__name__}")
        if not _is_number(default):
            raise TypeError(f"incr() default must be an int or a float, not {type(default).__name__}")

        def add(found: bool, current: Any, expires: float) -> tuple[Any, Any]:
            value = current if found else default
            if not _is_number(value):
                raise TypeError(f"incr() needs an int or a float stored at the key, found {type(value).__name__}")
            new = value + delta
            return new, new

        return self._read_modify_write(key, add)  # type: ignore[no-any-return]

    def decr(self, key: K, delta: Number = 1, *, default: Number = 0) -> Number:
        """``incr(key, -delta, default=default)``."""
        if not _is_number(delta):
            raise TypeError(f"decr() delta must be an int or a float, not {type(delta).__name__}")
        return self.incr(key, -delta, default=default)

    def _find(self, engine: Any, lookup: bytes, key: Any) -> StoredEntry | None:
        try:
            return engine.find(lookup, self._clock())  # type: ignore[no-any-return]
        except CorruptedRecordError as exc:
            raise corrupted(key, exc) from exc

    def version(self, key: K) -> int:
        """The version of ``key``'s entry: an int that changes whenever the entry is written (set,
        incr, touch...), in any process, and not when it is read. ``KeyError`` if missing."""
        lookup = self._keys.encode(key)[0]
        record = self._find(self._check_open(), lookup, key)
        if record is None:
            raise KeyError(key)
        return version_of(record)

    @typechecked
    def compare_and_set(self, key: K, value: V, version: int | None, *, ttl: int | float | None = None) -> bool:
        """Store ``value`` at ``key`` only if the entry is still at ``version`` (from
        :meth:`version`; None: only if ``key`` is absent), atomically across threads and processes.
        True if it wrote. ``ttl`` as in :meth:`set`."""
        ttl = ttl_seconds(ttl)
        lookup, exact = self._keys.encode(key)
        kind, payload = self._encode_value(value)  # outside the write transaction
        for attempt in range(GROWTH_RETRIES):
            try:
                with self._rewriting(key) as (_, _, engine):
                    now = self._clock()
                    record = self._find(engine, lookup, key)
                    current = None if record is None else version_of(record)
                    if current != version:
                        return False
                    item = Item(lookup, exact, kind, payload)
                    commit: Commit = engine.put([item], now, 0.0 if ttl is None else now + ttl, self._bounds)
            except StorageFullError:
                if attempt == GROWTH_RETRIES - 1 or self._feed.in_transaction():
                    raise
                continue
            self.counters["sets"] += 1
            self._note_evictions(commit.evicted)
            self._after_commit([lookup] + commit.evicted, commit)
            return True
        raise AssertionError("unreachable")


_NO_WRITE: Any = object()  # what a change returns to write nothing
