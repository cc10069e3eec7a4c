"""PersistDict: the public mapping. It composes the key codec, the value codec,
the front cache, the storage and the maintenance thread.

Data flows one way: public method -> key codec -> (front cache) -> storage
transaction -> record codec. Serializers run outside write transactions.
"""

from __future__ import annotations

import os
import pickle
import random
import threading
import warnings
import time
from collections.abc import (
    Callable,
    ItemsView,
    Iterable,
    Iterator,
    KeysView,
    Mapping,
    MutableMapping,
    ValuesView,
)
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any, TypeVar, overload

from beartype import BeartypeConf, beartype
from loguru import logger

from .engines.registry import open_engine, store_path  # first: the engines' fork hooks run before lifecycle's
from ._api import lifecycle
from ._api.options import (
    check_number,
    compare_formats,
    encode_format,
    format_record,
    settings_of,
    stored_format,
    ttl_seconds,
)
from ._codec.values import ValueCodec, undecodable
from ._accesses import SHARD_MASK
from .engines.base import Bounds, CheckReport, Commit, Engine, Item
from ._frontcache import coherence
from ._frontcache.cache import COPIED, RECENT_LIMIT, SHARED, CachedEntry, FrontCache
from ._codec.keys import KeyCodec, canonical_key_serializer, canonical_key_unserializer
from ._maintenance import Maintenance
from ._readable import ReadableItems, readable_items
from ._redact import key_text
from ._codec.record import KIND_SERIALIZED, Record
from ._settings import SettingsAttributes
from .engines.lmdb import DEFAULT_MAP_SIZE
from .exceptions import (
    ClosedError,
    CodecError,
    CodecMismatchWarning,
    CorruptedRecordError,
)

typechecked = beartype(conf=BeartypeConf(violation_type=TypeError))

_MISSING: Any = object()
# Keys whose Python equality is exactly the canonical codec's equality (no
# str equals a bytes or a number): the front cache is keyed by the object
# itself for them, so a hit needs no encoding. Other keys use (lookup,).
_PLAIN_KEY_TYPES = frozenset({str, bytes})
_FORMAT_VERSION = 1

if TYPE_CHECKING:  # defaults (PEP 696): a bare PersistDict(path) is a PersistDict[Any, Any]
    from typing_extensions import TypeVar as _DefaultedTypeVar
    K = _DefaultedTypeVar("K", default=Any)
    V = _DefaultedTypeVar("V", default=Any)
else:  # typing.TypeVar takes default= only from Python 3.13
    K, V = TypeVar("K"), TypeVar("V")
T = TypeVar("T")


@dataclass(frozen=True)
class Metadata:
    """When an entry was created and last read or written (timezone-aware UTC)."""

    ctime: datetime
    atime: datetime


def _utc(timestamp: float) -> datetime:
    return datetime.fromtimestamp(timestamp, tz=timezone.utc)


def _corrupted(key: Any, exc: CorruptedRecordError) -> CorruptedRecordError:
    return CorruptedRecordError(f"entry for key {key_text(key)} is corrupted: {exc}")


class PersistDict(SettingsAttributes, MutableMapping[K, V]):
    """A dict on disk, shared by every thread and process on the host.

    See the README for the guarantees. Every public method is thread-safe.
    """

    @typechecked
    def __init__(
        self,
        database_path: str | os.PathLike[str],
        expiration_days: int | float | None = 0,
        key_serializer: Callable[[Any], str | bytes] | None = canonical_key_serializer,
        key_unserializer: Callable[[Any], Any] | None = canonical_key_unserializer,
        key_size_limit: int = 511,
        value_serializer: Callable[[Any], Any] | None = pickle.dumps,
        value_unserializer: Callable[[Any], Any] | None = pickle.loads,
        caching: bool = True,
        verbose: bool = False,
        background_thread: bool | str = True,
        background_timeout: int | float = 30,
        name: str | None = None,
        *,
        durability: str = "safe",
        cache_max_entries: int = 10_000,
        cache_max_bytes: int = 64 * 1024 * 1024,
        maintenance_interval: int | float = 60,
        atime_flush_interval: int | float = 10,
        map_size: int = DEFAULT_MAP_SIZE,
        max_items: int | None = None,
        max_bytes: int | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        path = store_path(database_path)
        self._settings: dict[str, Any] = settings_of(
            path, expiration_days, key_serializer, key_unserializer, key_size_limit, value_serializer,
            value_unserializer, caching, verbose, background_thread, background_timeout, name,
            durability=durability, cache_max_entries=cache_max_entries, cache_max_bytes=cache_max_bytes,
            maintenance_interval=maintenance_interval, atime_flush_interval=atime_flush_interval,
            map_size=map_size, max_items=max_items, max_bytes=max_bytes, clock=clock)
        self.path = path
        self._clock = clock
        self.max_items = max_items
        self.max_bytes = max_bytes
        self._rng = random.Random()
        self._keys = KeyCodec(key_serializer, key_unserializer, key_size_limit)
        self._plain_cache_keys = self._keys.canonical
        self._values = values = ValueCodec(value_serializer, value_unserializer)
        # bound once: the read path calls them without an attribute lookup on the codec
        self._decode_value = values.decode
        self._decode_cached = values.decode_cached
        self._loads_takes_buffer = values.loads_takes_buffer
        self._lock = threading.RLock()
        self._front = FrontCache(cache_max_entries, cache_max_bytes, self._record_hits) if caching else None
        # hit/miss counters are plain attributes: the read path is the product
        self._hits = self._misses = 0
        self.counters = dict.fromkeys(("sets", "deletes", "expired", "evicted", "integrity_alerts"), 0)
        self._closed = True
        self._engine = engine = open_engine(path, durability, map_size, self._keys.key_size_limit)
        self._engine_get = engine.get  # bound once: the cold read path
        self._feed = engine.feed  # the commit clock and changed keys: the front cache's coherence
        self._touched = engine.accesses  # id -> atime not yet written: reads note here, no lock
        self._closed = False
        try:
            self._check_format()
        except BaseException:
            self._closed = True
            engine.close()
            raise
        lifecycle.register(self)
        if verbose:
            logger.enable("PersistDict")
        self._log("opened {} (durability={})", path, durability)
        self._maintenance = Maintenance(self.run_maintenance, self.flush_atimes, self.name,
                                        self._settings["background_thread"], max(5.0, float(background_timeout)),
                                        float(maintenance_interval), float(atime_flush_interval))
        self._maintenance.start()

    # -- small helpers ----------------------------------------------------------

    def _log(self, message: str, *args: Any) -> None:
        if self.verbose:
            logger.opt(depth=1).info(f"[{self.name}] " + message, *args)

    def _check_open(self) -> Engine:
        if self._closed:
            raise ClosedError(f"PersistDict {self.path!r} is closed")
        return self._engine

    def _cache_key(self, key: Any, lookup: bytes) -> Any:
        """The front-cache key for ``key``: itself for str/bytes, else (lookup,)."""
        return key if self._plain_cache_keys and type(key) in _PLAIN_KEY_TYPES else (lookup,)

    def _encode_value(self, value: Any) -> tuple[int, bytes]:
        return self._values.encode(value)

    def _record_key(self, record: Record) -> Any:
        return self._keys.decode(record.lookup, record.exact)

    def _is_live(self, expires: float, now: float) -> bool:
        return not expires or expires > now

    # -- reading ------------------------------------------------------------------

    def _hot_entry(self, key: Any) -> CachedEntry | None:
        """A live front-cache entry for ``key``, found without taking the lock, or None.

        Valid only if the cache is current as of LMDB's last commit and no
        mutation of the cache ran meanwhile (the seqlock ``stamp``).
        """
        front = self._front
        if front is None or type(key) not in _PLAIN_KEY_TYPES or not self._plain_cache_keys:
            return None
        stamp = front.stamp
        entry = front.hot.get(key)
        if entry is None or stamp & 1:
            return None
        feed = self._feed  # coherence.is_current, inlined: the hot read is the product
        views = feed.views
        if views is None or feed.txn_holders:
            return None
        first, second = views[0][0], views[1][0]
        if front.valid_at != (first if first > second else second) or front.stamp != stamp:
            return None
        if entry.expires and entry.expires <= self._clock():
            return None
        front.hits += 1
        recent = front.recent
        recent[key] = entry
        if len(recent) > RECENT_LIMIT:
            with self._lock:
                self._apply_recent()
        return entry

    def __getitem__(self, key: K) -> V:
        front = self._front
        entry = self._hot_entry(key) if front is not None and front.hot else None  # an empty cache: no call
        if entry is not None:
            mode, obj, copier = entry.state  # CachedEntry.value, inlined for the two common modes
            return obj if mode == SHARED else copier(obj) if mode == COPIED else entry.value(self._decode_cached)
        return self._read(key)

    def _read(self, key: Any) -> Any:
        """The slow path of a read, after ``_hot_entry`` missed: the cache under the lock, then LMDB.

        LMDB is read outside the instance lock: a read may have to wait for a
        map resize, which waits for open transactions, whose threads may need
        the lock.
        """
        keys = self._keys
        if type(key) is str and keys.canonical:  # KeyCodec.lookup, inlined: the read path is the product
            try:
                lookup = b"s" + key.encode()  # ~20 ns faster than naming the codec and error handler
            except UnicodeEncodeError:  # a lone surrogate
                lookup = b"s" + key.encode("utf-8", "surrogatepass")
        else:
            lookup = keys.encode(key)[0]
        if self._closed:
            self._check_open()  # raises; inlined: the read path is the product
        feed = self._feed
        front = self._front
        if front is not None:
            # _cache_key, inlined
            cache_key = key if self._plain_cache_keys and type(key) in _PLAIN_KEY_TYPES else (lookup,)
            if feed.txn_holders and feed.in_transaction():  # coherence.bypassed, inlined
                front = None  # inside transaction(): the cache does not see uncommitted writes
            elif cache_key is not key or feed.views is None or feed.txn_holders:
                # _hot_entry could not look without the lock; otherwise its look was conclusive
                changes = coherence.changes_since(feed, front, self._plain_cache_keys)
                with self._lock:
                    coherence.validate(front, feed, changes)
                    entry = front.hot.get(cache_key)
                    if entry is not None and (not entry.expires or entry.expires > self._clock()):
                        front.hits += 1
                        front.note_hit(entry)
                    else:
                        entry = None
                if entry is not None:
                    return entry.value(self._decode_cached)
        try:
            seq, expires, kind, payload, snapshot = self._engine_get(lookup)
        except CorruptedRecordError as exc:
            raise _corrupted(key, exc) from exc
        now = self._clock()
        if seq < 0 or (expires and expires <= now):
            self._misses += 1  # counters are not locked: they may undercount under contention
            raise KeyError(key)
        self._touched.shards[seq & SHARD_MASK][seq] = now  # PendingAccesses.note, inlined; no lock needed
        self._hits += 1
        if front is not None and (snapshot != front.valid_at or front.seen.note(cache_key)):  # note_miss, inlined
            changes = coherence.changes_since(feed, front, self._plain_cache_keys)
            with self._lock:  # a second miss: cache it, if nothing moved meanwhile (see FrontCache.fill)
                coherence.validate(front, feed, changes)
                front.fill(cache_key, kind, payload, seq, expires, snapshot)
        if kind == KIND_SERIALIZED and self._loads_takes_buffer:  # inlined _decode_value for pickle
            try:
                return pickle.loads(payload)
            except Exception as exc:  # noqa: BLE001 - raised below, unchained (see _undecodable)
                error = undecodable(key, exc)
            raise error
        return self._decode_value(kind, payload, key)

    def _apply_recent(self) -> None:
        """Apply buffered front-cache hits to the LRU order and the pending atimes."""
        if self._front is not None:
            self._front.apply_recent()

    def _note_cached_reads(self) -> None:
        """Hand the front cache's buffered hits to the access times now: eviction, expiry,
        ``metadata()`` and the flush must see the reads the cache served."""
        front = self._front
        if front is not None and front.recent:
            with self._lock:
                self._apply_recent()

    def _record_hits(self, entries: list[CachedEntry]) -> None:
        """Front-cache hits count as reads: their access times go to the next flush."""
        now = self._clock()
        note = self._touched.note
        for entry in entries:
            note(entry.seq, now)

    @overload
    def get(self, key: K, default: None = None) -> V | None: ...
    @overload
    def get(self, key: K, default: V | T) -> V | T: ...

    def get(self, key: Any, default: Any = None) -> Any:
        # Overridden: Mapping.get goes through __getitem__ and an exception on a miss.
        front = self._front
        entry = self._hot_entry(key) if front is not None and front.hot else None  # an empty cache: no call
        if entry is not None:
            mode, obj, copier = entry.state  # CachedEntry.value, inlined for the two common modes
            return obj if mode == SHARED else copier(obj) if mode == COPIED else entry.value(self._decode_cached)
        try:
            return self._read(key)
        except KeyError:
            return default

    def __contains__(self, key: Any) -> bool:
        # `in` looks first (a plain key in hot), then calls: for a key that is not hot the look costs
        # half what the call would. d[k] and get call directly: their hits would look up twice.
        front = self._front
        hot = None if front is None else front.hot
        if hot and type(key) in _PLAIN_KEY_TYPES and key in hot and self._hot_entry(key) is not None:
            return True
        if self._closed:
            self._check_open()  # raises; inlined: `in` is on the read path
        keys = self._keys
        if type(key) is str and keys.canonical:  # KeyCodec.lookup, inlined: `in` is on the read path
            try:
                lookup = b"s" + key.encode()  # as in _read
            except UnicodeEncodeError:
                lookup = b"s" + key.encode("utf-8", "surrogatepass")
        else:
            lookup = keys.encode(key)[0]
        try:
            expires = self._engine.expires(lookup)
        except CorruptedRecordError as exc:
            raise _corrupted(key, exc) from exc
        return expires is not None and (not expires or expires > self._clock())

    @typechecked
    def get_many(self, keys: Iterable[K]) -> dict[K, V]:
        """Read several keys as one consistent snapshot; returns the ones found.

        Front-cache hits are used when they are valid for the same snapshot
        as the transaction that reads the rest.
        """
        lookup_of = self._keys.lookup
        encoded = [(key, lookup_of(key)) for key in keys]
        engine = self._check_open()
        feed = self._feed
        now = self._clock()
        front = self._front
        if coherence.bypassed(feed):
            front = None  # inside transaction(): read everything through it
        cached: dict[Any, CachedEntry] = {}
        cached_at = -1
        if front is not None:
            changes = coherence.changes_since(feed, front, self._plain_cache_keys)
            with self._lock:
                coherence.validate(front, feed, changes)
                cached_at = front.valid_at
                for key, lookup in encoded:
                    entry = front.hot.get(self._cache_key(key, lookup))
                    if entry is not None and self._is_live(entry.expires, now):
                        cached[key] = entry
                        front.hits += 1
                        front.note_hit(entry)
        raw: list[tuple[Any, int, int, bytes]] = []
        if len(cached) < len(encoded):
            known = frozenset(index for index, (key, _) in enumerate(encoded) if key in cached)
            got, snapshot = engine.get_many([lookup for _, lookup in encoded], cached_at, known)
            if snapshot != cached_at:  # something was committed meanwhile: all of it was read there
                cached.clear()
            for (key, _), found_entry in zip(encoded, got):
                if found_entry is None or key in cached:
                    continue
                if isinstance(found_entry, CorruptedRecordError):
                    raise _corrupted(key, found_entry) from found_entry
                seq, expires, kind, payload = found_entry
                if not expires or expires > now:
                    raw.append((key, seq, kind, payload))
        for _, seq, _, _ in raw:
            self._touched.note(seq, now)
        found = {key: entry.value(self._decode_cached) for key, entry in cached.items()}
        for key, _, kind, payload in raw:
            found[key] = self._decode_value(kind, payload, key)
        return {key: found[key] for key, _ in encoded if key in found}  # in the order asked

    def __len__(self) -> int:
        return self._check_open().count()

    def _key_snapshot(self) -> list[Any]:
        """Every live key in order, read in one snapshot."""
        keys = self._keys
        return self._check_open().keys(self._clock(), keys.decode_many,
                                       keys.decode_str_keys if keys.canonical else None)

    def _item_snapshot(self, want_keys: bool) -> list[Any]:
        """Every live (key, value) pair, or value, in order, read in one transaction.

        Payloads are copied out and decoded after the transaction ends, so no
        user code (codecs) runs while it holds a reader slot.
        """
        raw = self._check_open().items(self._clock())
        decode_key, decode_value = self._keys.decode, self._decode_value
        if not want_keys:
            try:
                return [decode_value(kind, payload) for _, _, kind, payload in raw]
            except CodecError:  # decode again, one by one, to name the key (the keys cost only here)
                for lookup, exact, kind, payload in raw:
                    decode_value(kind, payload, decode_key(lookup, exact))
                raise
        out = []
        for lookup, exact, kind, payload in raw:
            key = decode_key(lookup, exact)
            out.append((key, decode_value(kind, payload, key)))
        return out

    def readable_items(self, keys: Iterable[Any] | None = None) -> ReadableItems:
        """Every entry that can be read, of the whole store or of ``keys``, in one snapshot, and the
        damaged ones (key and error); nothing is deleted. items(), values(), copy() and get_many()
        raise on the first damaged entry instead."""
        return readable_items(self._check_open(), self._clock(), self._keys, self._decode_value, keys)

    def __iter__(self) -> Iterator[K]:
        return iter(self._key_snapshot())

    def keys(self) -> KeysView[K]:
        return _SnapshotKeys(self)

    def values(self) -> ValuesView[V]:
        return _SnapshotValues(self)

    def items(self) -> ItemsView[K, V]:
        return _SnapshotItems(self)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Mapping):
            return NotImplemented
        return dict(self.items()) == dict(other.items())

    __hash__ = None  # type: ignore[assignment]  # mutable mapping

    def copy(self) -> dict[K, V]:
        """A plain dict snapshot of the whole store."""
        return dict(self.items())

    def __or__(self, other: Mapping[K, V]) -> dict[K, V]:
        if not isinstance(other, Mapping):
            return NotImplemented
        merged = self.copy()
        merged.update(other)
        return merged

    def __ror__(self, other: Mapping[K, V]) -> dict[K, V]:
        if not isinstance(other, Mapping):
            return NotImplemented
        merged = dict(other)
        merged.update(self.items())
        return merged

    def __ior__(self, other: Mapping[K, V]) -> PersistDict[K, V]:
        self.update(other)
        return self

    def metadata(self, key: K) -> Metadata:
        """Creation and last access time of ``key``; ``KeyError`` if missing."""
        engine = self._check_open()
        lookup, _ = self._keys.encode(key)
        now = self._clock()
        self._note_cached_reads()
        try:
            times = engine.times(lookup, now)
        except CorruptedRecordError as exc:
            raise _corrupted(key, exc) from exc
        if times is None:
            raise KeyError(key)
        return Metadata(_utc(times[0]), _utc(times[1]))

    # -- writing --------------------------------------------------------------------

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
        return Item(lookup, exact, kind, payload)

    @property
    def _bounds(self) -> Bounds:
        return Bounds(self.max_items, self.max_bytes)

    def _check_fits(self, keys: list[Any], items: list[Item]) -> None:
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
                what = (f"the value for key {key_text(keys[0])} needs" if count == 1
                        else f"these {count} entries need")
                raise ValueError(f"{what} at least {needed} bytes of database pages, more than "
                                 f"max_bytes={self.max_bytes}")

    def _note_evictions(self, evicted: list[bytes]) -> None:
        if evicted:
            self.counters["evicted"] += len(evicted)
            self._log("evicted {} entries to stay within bounds", len(evicted))

    def _write_many(self, keys: list[Any], items: list[Item], expires: float, once: bytes | None = None) -> None:
        engine = self._check_open()
        now = self._clock()
        bounds = self._bounds
        if bounds.max_items is not None or bounds.max_bytes is not None:
            self._check_fits(keys, items)
            self._note_cached_reads()  # eviction picks by access time
        commit = engine.put(items, now, expires, bounds, once)
        self.counters["sets"] += len(items)
        self._note_evictions(commit.evicted)
        self._after_commit([item.lookup for item in items] + commit.evicted, commit)

    def __setitem__(self, key: K, value: V) -> None:
        self._check_open()
        self._write_many([key], [self._prepare(key, value)], 0.0)

    @typechecked
    def set(self, key: K, value: V, ttl: int | float | None = None) -> None:
        """``d[key] = value``, optionally expiring ``ttl`` seconds from now."""
        ttl = ttl_seconds(ttl)
        self._check_open()
        expires = 0.0 if ttl is None else self._clock() + ttl
        self._write_many([key], [self._prepare(key, value)], expires)

    @typechecked
    def set_many(self, mapping: Mapping[K, V] | Iterable[tuple[K, V]], ttl: int | float | None = None) -> None:
        """Write several entries in one transaction (all or nothing)."""
        ttl = ttl_seconds(ttl)
        pairs = list(mapping.items() if isinstance(mapping, Mapping) else mapping)
        items = [self._prepare(key, value) for key, value in pairs]
        if items:
            self._write_many([key for key, _ in pairs], items, 0.0 if ttl is None else self._clock() + ttl)

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
            raise _corrupted(key, exc) from exc
        if removed is None:
            raise KeyError(key)

    @overload
    def pop(self, key: K) -> V: ...
    @overload
    def pop(self, key: K, default: V | T) -> V | T: ...

    def pop(self, key: Any, default: Any = _MISSING) -> Any:
        """Remove ``key`` and return its value, atomically. The value is decoded before the entry
        is removed, outside the write transaction: a value the codec cannot decode stays
        (``CodecError``), and a codec may use the store."""
        lookup = self._keys.encode(key)[0]
        while True:
            try:
                record = self._check_open().find(lookup, self._clock())
            except CorruptedRecordError as exc:
                raise _corrupted(key, exc) from exc
            if record is None:
                if default is _MISSING:
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
    def setdefault(self: PersistDict[K, T | None], key: K, default: None = None) -> T | None: ...
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
                self._check_fits([key], [item])
            encode_error: Exception | None = None
        except Exception as exc:
            item, encode_error = Item(lookup, exact, 0, b""), exc
        engine = self._check_open()
        now = self._clock()
        if bounded:
            self._note_cached_reads()  # eviction picks by access time
        try:
            found, commit = engine.put_if_absent(item, now, bounds, encode_error)
        except CorruptedRecordError as exc:
            raise _corrupted(key, exc) from exc
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

    def __call__(self, /, *args: Any, **kwargs: V) -> PersistDict[K, V]:
        """Initialise like ``dict(...)``; allowed once per database (until ``clear()``)."""
        source: dict[Any, Any] = dict(*args, **kwargs)
        items = [self._prepare(key, value) for key, value in source.items()]
        self._write_many(list(source), items, 0.0, once=b"called")
        return self

    @contextmanager
    def transaction(self) -> Iterator[PersistDict[K, V]]:
        """Make a group of reads and writes atomic and isolated across threads and processes.

        Rolls back if the block raises. Nested blocks in the same thread are
        savepoints: an inner block that raises rolls back only its own writes.
        Other writers (threads and processes) wait until it ends: keep it short.
        A block that outgrows the LMDB map raises ``StorageFullError`` after the
        rollback has grown it: run the block again.
        """
        with self._check_open().transaction():
            yield self

    # -- lifecycle -----------------------------------------------------------------

    @typechecked
    def flush_atimes(self, batch: int = 500) -> int:
        """Write the access times kept in memory; returns how many were written.

        Written in transactions of ``batch`` entries so writers never wait long,
        and our own front cache stays valid (access times change no value).
        Python work between two LMDB calls stays short: a background thread that
        holds the GIL makes every foreground read wait for it (up to 5 ms each time).
        """
        check_number("batch", batch, "a positive count of entries")
        self._note_cached_reads()
        if self._closed:
            return 0
        return sum(self._write_atimes(chunk) for chunk in self._touched.drain(batch))

    def _write_atimes(self, chunk: list[tuple[int, float]]) -> int:
        count, commit = self._engine.write_atimes(chunk)
        self._after_commit([], commit)
        time.sleep(0)
        return count

    @typechecked
    def check(self, repair: bool = False, drop_unreadable: bool = False) -> CheckReport:
        """Cross-check the database; with ``repair`` fix structural problems.

        Entries that fail their checksum or that the current value codec cannot
        decode are reported, and deleted only with ``drop_unreadable=True``.
        """
        report = self._check_open().check(self._keys, self._values.can_decode, repair, drop_unreadable,
                                          encode_format(self._format()))
        if repair or drop_unreadable:
            with self._lock:
                if self._front is not None:
                    self._front.clear()
        self._log("check: {}", report)
        return report

    def expire(self) -> int:
        """Remove entries past their TTL or unused for ``expiration_days``, now; returns how many."""
        return self._sweep(start_after=0, deadline=float("inf"))[0]

    def _sweep(self, start_after: int, deadline: float) -> tuple[int, int | None]:
        engine = self._check_open()
        now = self._clock()
        cutoff = now - self.expiration_days * 86400 if self.expiration_days else None
        self._note_cached_reads()
        removed, resume = engine.sweep(now, cutoff, start_after, deadline, time.monotonic, self._alert)
        if removed:
            self.counters["expired"] += removed
            self._log("expired {} entries", removed)
        return removed, resume

    def _alert(self, problem: Exception) -> None:
        """A damaged row a maintenance pass skipped: count it and warn; the pass goes on without it."""
        self.counters["integrity_alerts"] += 1
        logger.warning("[{}] maintenance skipped a damaged row: {}", self.name, problem)

    def run_maintenance(self) -> None:
        """One maintenance pass: flush access times; if this process holds the lease, check that
        records and order rows agree (O(1)) and expire entries (within ``background_timeout``,
        resuming where the last pass stopped); sync in 'fast' mode."""
        self.flush_atimes()
        maintenance = self._maintenance
        engine = self._check_open()
        if engine.take_lease(maintenance.holder, self._clock(), maintenance.lease_seconds,
                             self.expiration_days or None):
            records, rows = engine.counts()
            if records != rows:  # the full check reads every record: only point to it
                self.counters["integrity_alerts"] += 1
                message = (f"database {self.path!r} has {records} records but {rows} order rows: "
                           "run check(repair=True)")
                warnings.warn(message, RuntimeWarning, stacklevel=2)
                logger.warning("[{}] {}", self.name, message)
            _, maintenance.resume_after = self._sweep(maintenance.resume_after or 0,
                                                      time.monotonic() + maintenance.timeout)
        if self._settings["durability"] == "fast":
            engine.sync()

    def stats(self) -> dict[str, int]:
        """Counters of this instance and figures of the database."""
        engine = self._check_open()
        with self._lock:
            front = self._front
            counters = dict(self.counters, hits=self._hits, misses=self._misses)
            front_hits = front.hits if front is not None else 0
            cached = (len(front), front.bytes_used) if front is not None else (0, 0)
        entries = engine.count()
        info = engine.info()
        counters["hits"] += front_hits
        return {
            **counters,
            "front_cache_hits": front_hits,
            "front_cache_entries": cached[0],
            "front_cache_bytes": cached[1],
            "entries": entries,
            **info,
        }

    def close(self) -> None:
        """Write pending access times, stop maintenance, release the database. Idempotent."""
        if self._closed:
            return
        self._maintenance.stop()  # outside the lock: the thread may be waiting for it
        try:
            self.flush_atimes()  # outside the lock too: a write may wait for other threads
            self._engine.release_lease(self._maintenance.holder)
            if self._settings["durability"] == "fast":
                self._engine.sync()  # what 'fast' deferred reaches the disk at close
        finally:
            with self._lock:
                if not self._closed:
                    self._closed = True
                    lifecycle.unregister(self)
                    self._engine.close()
                    if self._front is not None:
                        self._front.clear()
                    self._log("closed")

    @property
    def closed(self) -> bool:
        return self._closed

    def __enter__(self) -> PersistDict[K, V]:
        self._check_open()
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()

    def __reduce__(self) -> tuple[Any, ...]:
        # An instance travels as its path and settings; the receiver opens its own.
        return (_reopen, (self.path, self._settings))

    def __repr__(self) -> str:
        if getattr(self, "_closed", True):
            return f"PersistDict({self.path!r}, closed)"
        return f"PersistDict({self.path!r}, entries={len(self)})"

    # -- format record -------------------------------------------------------------

    def _format(self) -> dict[str, Any]:
        return format_record(self._keys.description, self._keys.key_size_limit, self._values.description)

    def _check_format(self) -> None:
        """Write the format record into a new store; refuse one whose keys this instance would not
        find; warn when only the value codec differs."""
        wanted = self._format()
        stored, damage = stored_format(self._engine.format(encode_format(wanted)))
        if damage is not None:
            self._warn(damage, RuntimeWarning, stacklevel=4)
        if stored is not None:
            message = compare_formats(self.path, stored, wanted)
            if message is not None:
                self._warn(message, CodecMismatchWarning, stacklevel=4)

    def _warn(self, message: str, category: type[Warning], stacklevel: int) -> None:
        warnings.warn(message, category, stacklevel=stacklevel)
        logger.warning("[{}] {}", self.name, message)

    def _after_fork_in_child(self) -> None:
        # Locks held by the parent's other threads would never be released here,
        # the front cache may be mid-update, and the maintenance thread is gone.
        self._lock = threading.RLock()
        if self._front is not None:
            self._front = FrontCache(self._front.max_entries, self._front.max_bytes, self._record_hits)
        self._maintenance.restart_after_fork()


def _reopen(path: str, settings: dict[str, Any]) -> PersistDict:
    return PersistDict(path, **settings)


class _SnapshotKeys(KeysView[Any]):
    """keys() iterating the snapshot list directly (KeysView's generator costs ~20 ns per key)."""

    def __iter__(self) -> Iterator[Any]:
        return iter(self._mapping._key_snapshot())  # type: ignore[attr-defined]


class _SnapshotValues(ValuesView[Any]):
    """values() as a consistent snapshot: read in one transaction."""

    def __iter__(self) -> Iterator[Any]:
        return iter(self._mapping._item_snapshot(False))  # type: ignore[attr-defined]

    def __contains__(self, value: object) -> bool:
        return any(v is value or v == value for v in self)


class _SnapshotItems(ItemsView[Any, Any]):
    """items() as a consistent snapshot: read in one transaction."""

    def __iter__(self) -> Iterator[tuple[Any, Any]]:
        return iter(self._mapping._item_snapshot(True))  # type: ignore[attr-defined]

