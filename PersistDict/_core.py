"""PersistDict: the public mapping. It composes the key codec, the value codec,
the front cache, the storage and the maintenance thread.

Data flows one way: public method -> key codec -> (front cache) -> storage
transaction -> record codec. Serializers run outside write transactions.
"""

from __future__ import annotations

import atexit
import json
import math
import mmap
import os
import pickle
import random
import sys
import threading
import warnings
import time
import weakref
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
from typing import TYPE_CHECKING, Any, NamedTuple, TypeVar, overload

from beartype import BeartypeConf, beartype
from loguru import logger

from . import _table
from ._accesses import SHARD_MASK, PendingAccesses
from ._frontcache import COPIED, RECENT_LIMIT, SHARED, CachedEntry, Changes, FrontCache
from ._keys import KeyCodec, _callable_name, canonical_key_serializer, canonical_key_unserializer, read_as
from ._integrity import CheckReport, check_database
from ._eviction import enforce_bounds, least_bytes
from ._maintenance import Maintenance, release_lease, sweep, try_take_lease
from ._options import check_number
from ._rows import check_format_row
from ._readable import ReadableItems, readable_items
from ._redact import describe
from ._records import (
    KIND_BYTES,
    KIND_SERIALIZED,
    KIND_SERIALIZED_TEXT,
    KIND_STR,
    Record,
    record_length,
    unpack_value,
)
from ._settings import SettingsAttributes
from ._storage import DEFAULT_MAP_SIZE, DURABILITY, Storage, Txn
from .exceptions import (
    AlreadyCalledError,
    ClosedError,
    CodecError,
    CodecMismatchError,
    CodecMismatchWarning,
    CorruptedRecordError,
)

typechecked = beartype(conf=BeartypeConf(violation_type=TypeError))

_MISSING: Any = object()
_ABSENT = (-1, 0.0, 0, b"", 0)  # _find_hashed's answer for a key that is not stored
# Keys whose Python equality is exactly the canonical codec's equality (no
# str equals a bytes or a number): the front cache is keyed by the object
# itself for them, so a hit needs no encoding. Other keys use (lookup,).
_PLAIN_KEY_TYPES = frozenset({str, bytes})
_FORMAT_VERSION = 1
CLOSE_WAIT_SECONDS = 5.0  # how long close() waits for its writes (see close)

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


def _key_text(key: Any) -> str:
    text = repr(key)
    return text if len(text) <= 80 else text[:77] + "..."


# id -> instance, for the flush at exit (instances are unhashable, like dict)
_live_instances: weakref.WeakValueDictionary[int, PersistDict] = weakref.WeakValueDictionary()


class _Commit(NamedTuple):
    txn_id: int
    wrote: bool  # it changed something, so it took txn id ``txn_id``
    tracked: bool  # its own commit (not a write inside transaction(), committed with the block)


def _corrupted(key: Any, exc: CorruptedRecordError) -> CorruptedRecordError:
    return CorruptedRecordError(f"entry for key {_key_text(key)} is corrupted: {exc}")


def _ttl_seconds(ttl: int | float | None) -> float | None:
    """``ttl`` as float seconds, or None; ValueError unless it is positive and finite (a NaN
    expiry would be live for some reads and expired for others)."""
    if ttl is None:
        return None
    return float(check_number("ttl", ttl, "positive, finite seconds", maximum=sys.float_info.max))


def _same_version(record: Record, expected: Record) -> bool:
    """Whether ``record`` is still the version of its entry that ``expected`` was read as."""
    return (record.seq == expected.seq and record.mtime == expected.mtime and record.expires == expected.expires
            and record.kind == expected.kind and record.payload == expected.payload)


def _decodes(keys: KeyCodec, encoded: bytes) -> bool:
    try:
        keys.decode_many([encoded])
    except Exception:  # the canonical decoder on damaged bytes: any error
        return False
    return True


def _undecodable(key: Any, cause: BaseException) -> CodecError:
    """The CodecError for a value that cannot be decoded, naming its key and, when the codec
    raised a CodecError of its own (a wrong secret, a tampered value), that error's message, else
    the type and position of the codec's exception (see _redact). Raise it outside the ``except``
    block that caught ``cause``: it must not chain it, even as ``__context__``."""
    where = "" if key is _MISSING else f" of key {_key_text(key)}"
    message = f"cannot decode the value{where} with the configured value_unserializer"
    if isinstance(cause, CodecError):  # our codecs' messages quote no value
        kind = CodecMismatchError if isinstance(cause, CodecMismatchError) else CodecError
        return kind(f"{message}: {cause}")
    return CodecError(f"{message}: {describe(cause)}")


@atexit.register
def _flush_at_exit() -> None:
    for instance in list(_live_instances.values()):
        try:
            instance.close()
        except Exception:  # exit must not fail because one database cannot be written
            pass


def _reset_after_fork_in_child() -> None:
    # Locks held by the parent's other threads would never be released here,
    # the front cache may be mid-update, and the maintenance thread is gone.
    for instance in list(_live_instances.values()):
        instance._lock = threading.RLock()
        if instance._front is not None:
            instance._front = FrontCache(instance._front.max_entries, instance._front.max_bytes,
                                         instance._record_hits)
        instance._maintenance.restart_after_fork()


os.register_at_fork(after_in_child=_reset_after_fork_in_child)


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
        if durability not in DURABILITY:
            raise ValueError(f"durability must be one of {sorted(DURABILITY)}, not {durability!r}")
        if expiration_days is not None and expiration_days is not False:  # 0.2.x: 0, None (or False): no expiry
            check_number("expiration_days", expiration_days, "finite days >= 0 (0 or None: no expiry)",
                         strict=False)
        expiration_days = expiration_days or 0
        # 0.2.x clamps background_timeout up to 5 s, so a smaller one is no error; waits take at most TIMEOUT_MAX
        check_number("background_timeout", background_timeout, "finite seconds (below 5 counts as 5)", -math.inf,
                     maximum=threading.TIMEOUT_MAX - 5)
        check_number("maintenance_interval", maintenance_interval, "positive, finite seconds")
        check_number("atime_flush_interval", atime_flush_interval, "positive, finite seconds",
                     maximum=threading.TIMEOUT_MAX)
        check_number("key_size_limit", key_size_limit, "at least 1", 1, strict=False)
        check_number("cache_max_entries", cache_max_entries, "positive")
        check_number("cache_max_bytes", cache_max_bytes, "positive")
        check_number("map_size", map_size, "at least 1 MiB", 1 << 20, strict=False)
        if max_items is not None:
            check_number("max_items", max_items, "positive when given")
        if max_bytes is not None:  # LMDB's page: the least one entry takes
            check_number("max_bytes", max_bytes, f"at least one database page ({mmap.PAGESIZE} bytes)",
                         mmap.PAGESIZE, strict=False)
        if isinstance(background_thread, str):
            background_thread = background_thread.lower()  # 0.2.x accepted "DISABLED"
        if background_thread not in (True, False, "disabled"):
            raise ValueError(f"background_thread must be True, False or 'disabled', not {background_thread!r}")
        if (key_serializer is None) != (key_unserializer is None):
            raise ValueError("key_serializer and key_unserializer must both be given or both be None")
        if (value_serializer is None) != (value_unserializer is None):
            raise ValueError("value_serializer and value_unserializer must both be given or both be None")
        path = os.path.abspath(os.fspath(database_path))
        self._settings: dict[str, Any] = dict(
            expiration_days=expiration_days, key_serializer=key_serializer, key_unserializer=key_unserializer,
            key_size_limit=key_size_limit, value_serializer=value_serializer,
            value_unserializer=value_unserializer, caching=caching, verbose=verbose,
            background_thread=background_thread, background_timeout=background_timeout, name=name,
            durability=durability, cache_max_entries=cache_max_entries, cache_max_bytes=cache_max_bytes,
            maintenance_interval=maintenance_interval, atime_flush_interval=atime_flush_interval,
            map_size=map_size, max_items=max_items, max_bytes=max_bytes, clock=clock,
        )
        self.path = path
        self._clock = clock
        self.max_items = max_items
        self.max_bytes = max_bytes
        self._rng = random.Random()
        self._keys = KeyCodec(key_serializer, key_unserializer, key_size_limit)
        self._plain_cache_keys = self._keys.canonical
        self._value_serializer = value_serializer
        self._value_unserializer = value_unserializer
        self._raw_values = value_serializer is None
        self._loads_takes_buffer = value_unserializer is pickle.loads
        self._lock = threading.RLock()
        self._front = FrontCache(cache_max_entries, cache_max_bytes, self._record_hits) if caching else None
        self._touched = PendingAccesses()  # seq -> atime not yet written
        # hit/miss counters are plain attributes: the read path is the product
        self._hits = self._misses = 0
        self.counters = dict.fromkeys(("sets", "deletes", "expired", "evicted", "integrity_alerts"), 0)
        self._closed = True
        self._storage = Storage.acquire(path, durability, map_size)
        self._closed = False
        self._released = False  # the storage, once: by close() or by the writes it left to a thread
        try:
            self._check_format()
        except BaseException:
            self._closed = True
            self._storage.release()
            raise
        _live_instances[id(self)] = self
        if verbose:
            logger.enable("PersistDict")
        self._log("opened {} (durability={})", path, durability)
        self._maintenance = Maintenance(self, background_thread, max(5.0, float(background_timeout)),
                                        float(maintenance_interval), float(atime_flush_interval))
        self._maintenance.start()

    # -- small helpers ----------------------------------------------------------

    def _log(self, message: str, *args: Any) -> None:
        if self.verbose:
            logger.opt(depth=1).info(f"[{self.name}] " + message, *args)

    def _check_open(self) -> Storage:
        if self._closed:
            raise ClosedError(f"PersistDict {self.path!r} is closed")
        return self._storage

    def _cache_key(self, key: Any, lookup: bytes) -> Any:
        """The front-cache key for ``key``: itself for str/bytes, else (lookup,)."""
        return key if self._plain_cache_keys and type(key) in _PLAIN_KEY_TYPES else (lookup,)

    def _cache_forms(self, lookup: bytes) -> list[Any]:
        """Every front-cache key under which the entry of ``lookup`` may be cached.

        A str key is cached as itself, and an equal key of another type (a str
        subclass) as (lookup,): a write must evict both.
        """
        forms: list[Any] = [(lookup,)]
        if self._plain_cache_keys:
            if lookup[0] == 0x73:  # 's': a str key
                forms.append(lookup[1:].decode("utf-8", "surrogatepass"))
            elif lookup[0] == 0x62:  # 'b': a bytes key
                forms.append(lookup[1:])
        return forms

    def _cache_forms_of(self, lookups: Iterable[bytes]) -> list[Any]:
        return [form for lookup in lookups for form in self._cache_forms(lookup)]

    def _encode_value(self, value: Any) -> tuple[int, bytes]:
        if self._raw_values:
            if type(value) is str:
                return KIND_STR, value.encode("utf-8", "surrogatepass")
            if isinstance(value, (bytes, bytearray, memoryview)):
                return KIND_BYTES, bytes(value)
            raise TypeError(
                f"values must be str or bytes when value_serializer is None, not {type(value).__name__!r}"
            )
        payload = self._value_serializer(value)  # type: ignore[misc]
        if type(payload) is bytes:
            return KIND_SERIALIZED, payload
        if isinstance(payload, str):  # json.dumps and friends
            return KIND_SERIALIZED_TEXT, payload.encode("utf-8", "surrogatepass")
        if not isinstance(payload, (bytes, bytearray, memoryview)):
            raise TypeError(f"value_serializer must return bytes or str, not {type(payload).__name__!r}")
        return KIND_SERIALIZED, bytes(payload)

    def _decode_value(self, kind: int, payload: bytes | memoryview, key: Any = _MISSING) -> Any:
        if kind == KIND_SERIALIZED or kind == KIND_SERIALIZED_TEXT:
            if self._raw_values:
                raise _undecodable(key, CodecMismatchError("it was serialized, but value_serializer is None"))
            try:
                if kind == KIND_SERIALIZED_TEXT:
                    return self._value_unserializer(bytes(payload).decode("utf-8", "surrogatepass"))  # type: ignore[misc]
                if self._loads_takes_buffer:
                    return self._value_unserializer(payload)  # type: ignore[misc]
                return self._value_unserializer(bytes(payload))  # type: ignore[misc]
            except Exception as exc:  # noqa: BLE001 - any codec error; raised below, unchained
                error = _undecodable(key, exc)
            raise error
        if kind == KIND_STR:
            return bytes(payload).decode("utf-8", "surrogatepass")
        if kind == KIND_BYTES:
            return bytes(payload)
        raise CorruptedRecordError(f"unknown value kind {kind}")

    def _decode_cached(self, cached: bytes) -> Any:
        return self._decode_value(cached[0], memoryview(cached)[1:])

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
        storage = self._storage
        views = storage.txnid_views
        if views is None or storage.txn_holders:
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
        storage = self._storage
        front = self._front
        if front is not None:
            # _cache_key, inlined
            cache_key = key if self._plain_cache_keys and type(key) in _PLAIN_KEY_TYPES else (lookup,)
            if storage.txn_holders and storage.current_write_txn() is not None:
                front = None  # inside transaction(): the cache does not see uncommitted writes
            elif cache_key is not key or storage.txnid_views is None or storage.txn_holders:
                # _hot_entry could not look without the lock; otherwise its look was conclusive
                changes = self._changes_since(storage, front)
                with self._lock:
                    front.validate(storage.last_txnid(), changes)
                    entry = front.hot.get(cache_key)
                    if entry is not None and (not entry.expires or entry.expires > self._clock()):
                        front.hits += 1
                        front.note_hit(entry)
                    else:
                        entry = None
                if entry is not None:
                    return entry.value(self._decode_cached)
        if len(lookup) <= keys.key_size_limit:  # the slot is the lookup encoding: one get
            data, snapshot = storage.read_record(lookup)
            if data is None:
                seq = -1
            else:
                try:
                    seq, expires, kind, payload = unpack_value(data, lookup)
                except CorruptedRecordError as exc:
                    raise _corrupted(key, exc) from exc
        else:
            seq, expires, kind, payload, snapshot = self._find_hashed(storage, key, lookup)
        now = self._clock()
        if seq < 0 or (expires and expires <= now):
            self._misses += 1  # counters are not locked: they may undercount under contention
            raise KeyError(key)
        self._touched.shards[seq & SHARD_MASK][seq] = now  # PendingAccesses.note, inlined; no lock needed
        self._hits += 1
        if front is not None and (snapshot != front.valid_at or front.seen.note(cache_key)):  # note_miss, inlined
            changes = self._changes_since(storage, front)
            with self._lock:  # a second miss: cache it, if nothing moved meanwhile (see FrontCache.fill)
                front.validate(storage.last_txnid(), changes)
                front.fill(cache_key, kind, payload, seq, expires, snapshot)
        if kind == KIND_SERIALIZED and self._loads_takes_buffer:  # inlined _decode_value for pickle
            try:
                return pickle.loads(payload)
            except Exception as exc:  # noqa: BLE001 - raised below, unchained (see _undecodable)
                error = _undecodable(key, exc)
            raise error
        return self._decode_value(kind, payload, key)

    def _find_hashed(self, storage: Storage, key: Any, lookup: bytes) -> tuple[int, float, int, Any, int]:
        """(seq, expires, kind, payload, snapshot txn id) of a key with a hashed slot; seq is -1 if absent."""
        with storage.reading() as txn:
            record = self._find(txn, key, lookup, self._keys.slot(lookup))
            if record is None:
                return _ABSENT
            return record.seq, record.expires, record.kind, bytes(record.payload), txn.id

    def _find(self, txn: Txn, key: Any, lookup: bytes, base: bytes) -> Record | None:
        """The record of ``key`` (None: absent); one that is damaged, or another key's record that a
        damaged database key led to, raises CorruptedRecordError naming ``key``."""
        try:
            return _table.find(txn, lookup, base).record
        except CorruptedRecordError as exc:
            raise _corrupted(key, exc) from exc

    def _changes_since(self, storage: Storage, front: FrontCache) -> Changes | None:
        """For ``FrontCache.validate``: (valid_at, snapshot id, cache keys changed in between) if
        the change log covers every commit since the front cache was valid, else None. It reads
        LMDB, so it runs before the lock is taken (see ``_read``)."""
        since = front.valid_at
        if since < 0 or storage.last_txnid() == since:
            return None
        logged = storage.changes_since(since)
        if logged is None:
            return None
        snapshot, lookups = logged
        return since, snapshot, self._cache_forms_of(lookups)

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
        if len(lookup) <= keys.key_size_limit:
            try:
                expires = self._storage.read_expiry(lookup)
            except CorruptedRecordError as exc:
                raise _corrupted(key, exc) from exc
            return expires is not None and (not expires or expires > self._clock())
        with self._storage.reading() as txn:
            record = self._find(txn, key, lookup, keys.slot(lookup))
            return record is not None and self._is_live(record.expires, self._clock())

    @typechecked
    def get_many(self, keys: Iterable[K]) -> dict[K, V]:
        """Read several keys as one consistent snapshot; returns the ones found.

        Front-cache hits are used when they are valid for the same snapshot
        as the transaction that reads the rest.
        """
        lookup_of = self._keys.lookup
        encoded = [(key, lookup_of(key)) for key in keys]
        storage = self._check_open()
        now = self._clock()
        front = self._front
        if storage.txn_holders and storage.current_write_txn() is not None:
            front = None  # inside transaction(): read everything through it
        cached: dict[Any, CachedEntry] = {}
        cached_at = -1
        if front is not None:
            changes = self._changes_since(storage, front)
            with self._lock:
                front.validate(storage.last_txnid(), changes)
                cached_at = front.valid_at
                for key, lookup in encoded:
                    entry = front.hot.get(self._cache_key(key, lookup))
                    if entry is not None and self._is_live(entry.expires, now):
                        cached[key] = entry
                        front.hits += 1
                        front.note_hit(entry)
        raw: list[tuple[Any, int, int, bytes]] = []
        if len(cached) < len(encoded):
            limit = self._keys.key_size_limit
            with storage.reading(buffers=False) as txn:
                if txn.id != cached_at:  # something was committed meanwhile: read all of it here
                    cached.clear()
                for key, lookup in encoded:
                    if key in cached:
                        continue
                    try:
                        if len(lookup) <= limit:  # the slot is the lookup encoding: one get
                            data = txn.record(lookup)
                            if data is None:
                                continue
                            seq, expires, kind, payload = unpack_value(data, lookup)
                        else:
                            record = _table.find(txn, lookup, self._keys.slot(lookup)).record
                            if record is None:
                                continue
                            seq, expires, kind, payload = record.seq, record.expires, record.kind, record.payload
                    except CorruptedRecordError as exc:
                        raise _corrupted(key, exc) from exc
                    if not expires or expires > now:
                        raw.append((key, seq, kind, bytes(payload)))  # copied: the txn's memory goes
        for _, seq, _, _ in raw:
            self._touched.note(seq, now)
        found = {key: entry.value(self._decode_cached) for key, entry in cached.items()}
        for key, _, kind, payload in raw:
            found[key] = self._decode_value(kind, payload, key)
        return {key: found[key] for key, _ in encoded if key in found}  # in the order asked

    def __len__(self) -> int:
        with self._check_open().reading() as txn:
            return txn.count()

    def _key_snapshot(self) -> list[Any]:
        """Every live key in order, read in one transaction."""
        storage = self._check_open()
        now = self._clock()
        with storage.reading(buffers=False) as txn:
            rows = txn.order_rows()
            try:
                str_keys = self._keys.decode_str_keys(rows)  # plain rows (the slot is the key) of str keys
            except UnicodeDecodeError:
                str_keys = None  # a damaged row: found below, one row at a time
            if str_keys is not None:
                return str_keys
            encoded = [row for row in rows if row and row[0]]  # plain rows: the slot is the key
            if len(encoded) != len(rows):  # some rows carry a TTL or need their record
                encoded = []
                for row in rows:
                    try:
                        expires, key_in_slot, slot = _table.unpack_order(row)
                    except CorruptedRecordError:
                        raise _table.damaged_order_row(txn, row) from None
                    if expires and expires <= now:
                        continue
                    if key_in_slot:
                        encoded.append(slot)
                    else:
                        record = _table.record_at(txn, slot)
                        encoded.append(record.exact or record.lookup)
            try:
                return self._keys.decode_many(encoded)
            except Exception:  # order rows carry no checksum: name the damaged one
                if not self._keys.canonical:
                    raise  # the user's key codec: its own error
                raise next(_table.damaged_order_row(txn, row) for row in encoded
                           if not _decodes(self._keys, row)) from None

    def _item_snapshot(self, want_keys: bool) -> list[Any]:
        """Every live (key, value) pair, or value, in order, read in one transaction.

        Payloads are copied out and decoded after the transaction ends, so no
        user code (codecs) runs while it holds a reader slot.
        """
        storage = self._check_open()
        now = self._clock()
        raw: list[tuple[bytes, bytes | None, int, bytes]] = []
        with storage.reading() as txn:
            for row in txn.order_rows():
                try:
                    expires, _, slot = _table.unpack_order(row)
                except CorruptedRecordError:
                    raise _table.damaged_order_row(txn, row) from None
                if expires and expires <= now:
                    continue
                record = _table.record_at(txn, slot)
                raw.append((record.lookup, record.exact, record.kind, bytes(record.payload)))
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
        return readable_items(self, keys)

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
        storage = self._check_open()
        lookup, _ = self._keys.encode(key)
        now = self._clock()
        self._note_cached_reads()
        with storage.reading() as txn:
            record = self._find(txn, key, lookup, self._keys.slot(lookup))
            if record is None or not self._is_live(record.expires, now):
                raise KeyError(key)
            atime = _table.atime_of(txn, record)
        atime = max(atime, self._touched.get(record.seq, 0.0))
        return Metadata(_utc(record.ctime), _utc(atime))

    # -- writing --------------------------------------------------------------------

    def _commit(self, work: Callable[[Txn], Any], savepoint: bool = False) -> tuple[Any, _Commit]:
        """Run ``work`` in a write transaction; returns its result and what ``_after_commit`` needs.
        ``savepoint``: ``work`` may raise after writing (see Storage.write)."""
        storage = self._check_open()

        def run(txn: Txn) -> tuple[Any, int, bool]:
            return work(txn), txn.id, txn.wrote

        tracked = storage.current_write_txn() is None  # not inside transaction()
        result, txn_id, wrote = storage.write(run, savepoint)
        return result, _Commit(txn_id, wrote, tracked)

    def _after_commit(self, lookups: list[bytes], commit: _Commit) -> None:
        """Evict the written keys (``lookups``) from the front cache, which stays valid if ours was the only commit."""
        front = self._front
        if front is None or not commit.tracked:
            return  # inside transaction(): its final commit moves the txnid and empties the cache
        with self._lock:
            # forms are only worth computing when something may be cached under them
            forms = self._cache_forms_of(lookups) if front.holds_keys() else []
            front.after_write(forms, commit.txn_id, commit.wrote, self._storage.last_txnid())

    def _prepare(self, key: Any, value: Any) -> tuple[Any, bytes, bytes | None, bytes, int, bytes]:
        keys = self._keys
        lookup, exact = keys.encode(key)
        kind, payload = self._encode_value(value)
        slot = lookup if len(lookup) <= keys.key_size_limit else keys.slot(lookup)
        return key, lookup, exact, slot, kind, payload

    @property
    def _bounded(self) -> bool:
        return self.max_items is not None or self.max_bytes is not None

    def _check_fits(self, prepared: list[tuple[Any, bytes, bytes | None, bytes, int, bytes]]) -> None:
        """Refuse, before any transaction, a write that max_items/max_bytes cannot hold even in an
        otherwise empty store (eviction never removes what the write itself stores)."""
        entries = {lookup: (key, (len(slot), record_length(lookup, exact, payload)))  # a key given twice counts once
                   for key, lookup, exact, slot, _, payload in prepared}
        if not entries:
            return
        if self.max_items is not None and len(entries) > self.max_items:
            raise ValueError(f"this write stores {len(entries)} entries, more than max_items={self.max_items}")
        if self.max_bytes is not None:
            needed = least_bytes([sizes for _, sizes in entries.values()], self._storage.page_size)
            if needed > self.max_bytes:
                what = (f"the value for key {_key_text(prepared[0][0])} needs" if len(entries) == 1
                        else f"these {len(entries)} entries need")
                raise ValueError(f"{what} at least {needed} bytes of database pages, more than "
                                 f"max_bytes={self.max_bytes}")

    def _enforce_bounds(self, txn: Txn, written: set[int]) -> list[bytes]:
        """Evict (inside the writing transaction) until max_items/max_bytes hold; the lookups that went."""
        if not self._bounded:
            return []
        return enforce_bounds(txn, self.max_items, self.max_bytes, written, self._touched,
                              self._keys.hash_bytes, self._rng)

    def _note_evictions(self, evicted: list[bytes]) -> None:
        if evicted:
            self.counters["evicted"] += len(evicted)
            self._log("evicted {} entries to stay within bounds", len(evicted))

    def _write_many(self, prepared: list[tuple[Any, bytes, bytes | None, bytes, int, bytes]], expires: float,
                    extra: Callable[[Txn], None] | None = None) -> None:
        now = self._clock()
        bounded = self._bounded
        if bounded:
            self._check_fits(prepared)
            self._note_cached_reads()  # eviction picks by access time
        put = _table.put

        def work(txn: Txn) -> list[bytes]:
            if extra is not None:
                extra(txn)
            seqs = _table.SeqAllocator(txn)
            if not bounded:
                for _, lookup, exact, base, kind, payload in prepared:
                    put(txn, seqs, lookup, exact, base, kind, payload, now, expires)
                return []
            written = {put(txn, seqs, lookup, exact, base, kind, payload, now, expires)[0]
                       for _, lookup, exact, base, kind, payload in prepared}
            return self._enforce_bounds(txn, written)

        evicted, commit = self._commit(work, savepoint=bounded)  # eviction raises if the write cannot fit
        self.counters["sets"] += len(prepared)
        self._note_evictions(evicted)
        self._after_commit([lookup for _, lookup, *_ in prepared] + evicted, commit)

    def __setitem__(self, key: K, value: V) -> None:
        self._check_open()
        self._write_many([self._prepare(key, value)], 0.0)

    @typechecked
    def set(self, key: K, value: V, ttl: int | float | None = None) -> None:
        """``d[key] = value``, optionally expiring ``ttl`` seconds from now."""
        ttl = _ttl_seconds(ttl)
        self._check_open()
        expires = 0.0 if ttl is None else self._clock() + ttl
        self._write_many([self._prepare(key, value)], expires)

    @typechecked
    def set_many(self, mapping: Mapping[K, V] | Iterable[tuple[K, V]], ttl: int | float | None = None) -> None:
        """Write several entries in one transaction (all or nothing)."""
        ttl = _ttl_seconds(ttl)
        pairs = mapping.items() if isinstance(mapping, Mapping) else mapping
        prepared = [self._prepare(key, value) for key, value in pairs]
        if prepared:
            self._write_many(prepared, 0.0 if ttl is None else self._clock() + ttl)

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
        base = self._keys.slot(lookup)
        now = self._clock()

        def work(txn: Txn) -> Record | None:
            found = _table.find(txn, lookup, base)
            record = found.record
            if record is None or (expected is not None and not _same_version(record, expected)):
                return None
            removed = _table.remove(txn, found, base)
            return removed if self._is_live(removed.expires, now) else None

        return self._removed(lookup, *self._commit(work))

    def _removed(self, name: bytes, record: Record | None, commit: _Commit) -> Record | None:
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
        base = self._keys.slot(lookup)
        while True:
            now = self._clock()
            with self._check_open().reading() as txn:
                record = self._find(txn, key, lookup, base)
                if record is not None and self._is_live(record.expires, now):
                    record = record._replace(payload=bytes(record.payload))  # a view is valid only in the txn
                else:
                    record = None
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
            now = self._clock()
            with self._check_open().reading() as txn:
                for entry in _table.iter_order(txn, newest_first=True):
                    if self._is_live(entry.expires, now):
                        break
                else:
                    raise KeyError("popitem(): PersistDict is empty")
                slot, record = entry.slot, _table.record_at(txn, entry.slot)
                record = record._replace(payload=bytes(record.payload))
            key = self._record_key(record)
            value = self._decode_value(record.kind, record.payload, key)

            def work(txn: Txn, slot: bytes = slot, expected: Record = record) -> Record | None:
                current = _table.record_at_or_none(txn, slot)  # by slot: a misplaced record is removed too
                if current is None or not _same_version(current, expected):
                    return None
                return _table.remove_slot(txn, slot, self._keys.hash_bytes)

            if self._removed(read_as(slot, record.lookup), *self._commit(work)) is not None:
                return key, value

    @overload
    def setdefault(self: PersistDict[K, T | None], key: K, default: None = None) -> T | None: ...
    @overload
    def setdefault(self, key: K, default: V) -> V: ...

    def setdefault(self, key: Any, default: Any = None) -> Any:
        """Return ``d[key]``, first storing ``default`` if missing, atomically."""
        lookup, exact = self._keys.encode(key)
        base = self._keys.slot(lookup)
        bounded = self._bounded
        try:  # serialized before the transaction; an error matters only if the key is missing
            kind, payload = self._encode_value(default)
            if bounded:
                self._check_fits([(key, lookup, exact, base, kind, payload)])
            encode_error: Exception | None = None
        except Exception as exc:
            kind, payload, encode_error = 0, b"", exc
        now = self._clock()
        if bounded:
            self._note_cached_reads()  # eviction picks by access time

        def work(txn: Txn) -> tuple[int, bytes] | list[bytes]:
            record = self._find(txn, key, lookup, base)
            if record is not None and self._is_live(record.expires, now):
                return record.kind, bytes(record.payload)
            if encode_error is not None:
                raise encode_error
            seq, _ = _table.put(txn, _table.SeqAllocator(txn), lookup, exact, base, kind, payload, now, 0.0)
            return self._enforce_bounds(txn, {seq})  # put replaces an expired entry

        outcome, commit = self._commit(work, savepoint=bounded)
        inserted = isinstance(outcome, list)  # the entries evicted to make room; else the one found
        if inserted:
            self.counters["sets"] += 1
            self._note_evictions(outcome)
        self._after_commit([lookup] + outcome if inserted else [lookup], commit)
        if inserted:
            return default
        return self._decode_value(outcome[0], outcome[1], key)

    @typechecked
    def touch(self, key: K, ttl: int | float | None = None) -> None:
        """Mark ``key`` as used now; with ``ttl``, expire it ``ttl`` seconds from now (None: never)."""
        ttl = _ttl_seconds(ttl)
        lookup, _ = self._keys.encode(key)
        base = self._keys.slot(lookup)
        now = self._clock()

        def work(txn: Txn) -> bool:
            found = _table.find(txn, lookup, base)
            record = found.record
            if record is None or not self._is_live(record.expires, now):
                return False
            _table.set_expiry(txn, found, 0.0 if ttl is None else now + ttl)
            txn.put_atime(record.seq, now)
            return True

        ok, commit = self._commit(work)
        self._after_commit([lookup], commit)
        if not ok:
            raise KeyError(key)

    def clear(self) -> None:
        """Remove every entry; ``d(...)`` may be called again afterwards."""

        def work(txn: Txn) -> None:
            txn.clear_all()
            txn.delete_meta(b"called")

        _, commit = self._commit(work)
        if commit.tracked:  # as in _delete
            self._touched.clear()
        if self._front is not None:
            with self._lock:
                self._front.clear()  # before _after_commit lets the cache pass this commit
        self._after_commit([], commit)

    def __call__(self, /, *args: Any, **kwargs: V) -> PersistDict[K, V]:
        """Initialise like ``dict(...)``; allowed once per database (until ``clear()``)."""
        source: dict[Any, Any] = dict(*args, **kwargs)
        prepared = [self._prepare(key, value) for key, value in source.items()]

        def mark_called(txn: Txn) -> None:
            if txn.meta(b"called") is not None:
                raise AlreadyCalledError(
                    "The __call__ method of PersistDict can only be called once. Just like a regular dict."
                )
            txn.put_meta(b"called", b"1")

        self._write_many(prepared, 0.0, extra=mark_called)
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
        storage = self._check_open()
        with storage.transaction():
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
        count, commit = self._commit(lambda txn: txn.raise_atimes(chunk))
        self._after_commit([], commit)
        time.sleep(0)
        return count

    @typechecked
    def check(self, repair: bool = False, drop_unreadable: bool = False) -> CheckReport:
        """Cross-check the database; with ``repair`` fix structural problems.

        Entries that fail their checksum or that the current value codec cannot
        decode are reported, and deleted only with ``drop_unreadable=True``.
        """
        storage = self._check_open()

        def can_decode(kind: int, payload: Any) -> bool:
            try:
                self._decode_value(kind, payload)
            except Exception:
                return False
            return True

        report = check_database(storage, self._keys, can_decode, repair, drop_unreadable,
                                json.dumps(self._format()).encode())
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
        storage = self._check_open()
        now = self._clock()
        cutoff = now - self.expiration_days * 86400 if self.expiration_days else None
        self._note_cached_reads()
        removed, resume = sweep(storage, self._keys.hash_bytes, now, cutoff, self._touched,
                                start_after, deadline, time.monotonic, self._maintenance.alert)
        if removed:
            self.counters["expired"] += removed
            self._log("expired {} entries", removed)
        return removed, resume

    def run_maintenance(self) -> None:
        """One maintenance pass: flush access times; if this process holds the lease, check that
        records and order rows agree (O(1)) and expire entries (within ``background_timeout``,
        resuming where the last pass stopped); sync in 'fast' mode."""
        self.flush_atimes()
        maintenance = self._maintenance
        storage = self._check_open()
        if try_take_lease(storage, maintenance.holder, self._clock(), maintenance.lease_seconds,
                          self.expiration_days or None):
            with storage.reading() as txn:
                records, rows = txn.count(), txn.order_count()
            if records != rows:  # the full check reads every record: only point to it
                self.counters["integrity_alerts"] += 1
                message = (f"database {self.path!r} has {records} records but {rows} order rows: "
                           "run check(repair=True)")
                warnings.warn(message, RuntimeWarning, stacklevel=2)
                logger.warning("[{}] {}", self.name, message)
            _, maintenance.resume_after = self._sweep(maintenance.resume_after or 0,
                                                      time.monotonic() + maintenance.timeout)
        if self._settings["durability"] == "fast":
            storage.sync()

    def stats(self) -> dict[str, int]:
        """Counters of this instance and figures of the database."""
        storage = self._check_open()
        with self._lock:
            front = self._front
            counters = dict(self.counters, hits=self._hits, misses=self._misses)
            front_hits = front.hits if front is not None else 0
            cached = (len(front), front.bytes_used) if front is not None else (0, 0)
        with storage.reading() as txn:
            entries = txn.count()
            records_bytes = txn.records_bytes()
        info = storage.info()
        counters["hits"] += front_hits
        return {
            **counters,
            "front_cache_hits": front_hits,
            "front_cache_entries": cached[0],
            "front_cache_bytes": cached[1],
            "entries": entries,
            "records_bytes": records_bytes,
            "bytes_on_disk": storage.file_size(),
            "map_size": info["map_size"],
            "readers_in_use": info["readers_in_use"],
        }

    def close(self) -> None:
        """Write pending access times, stop maintenance, release the database. Idempotent."""
        if self._closed:
            return
        self._maintenance.stop()  # outside the lock: the thread may be waiting for it
        if self._storage.current_write_txn() is not None:  # inside transaction(): the writes join it
            try:
                self._write_before_close()
            finally:
                self._mark_closed(release=True)
            return
        # Another thread writes, so that close() never waits long for a writer lock that another
        # process holds (hung, or SIGSTOPped, inside a transaction): after CLOSE_WAIT_SECONDS it
        # leaves the writes (access times, the lease: no data) to that thread, which releases the
        # store when they are done.
        errors: list[BaseException] = []
        written = threading.Event()

        def write() -> None:
            try:
                self._write_before_close()
            except BaseException as exc:
                errors.append(exc)
            finally:
                written.set()
                with self._lock:
                    if self._closed and not self._released:  # close() stopped waiting
                        self._released = True
                        self._storage.release()

        threading.Thread(target=write, name="PersistDict close", daemon=True).start()
        if not written.wait(CLOSE_WAIT_SECONDS):
            logger.warning("closing {!r}: another process holds the writer lock; the access times are "
                           "written when it frees it (or lost if this process exits first)", self.path)
        self._mark_closed(release=written.is_set())
        if errors:
            raise errors[0]

    def _write_before_close(self) -> None:
        self.flush_atimes()  # outside the lock: a write may wait for other threads
        release_lease(self._storage, self._maintenance.holder)
        if self._settings["durability"] == "fast":
            self._storage.sync()  # what 'fast' deferred reaches the disk at close

    def _mark_closed(self, release: bool) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
            _live_instances.pop(id(self), None)
            if release and not self._released:
                self._released = True
                self._storage.release()
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
        serializer = self._value_serializer
        values = "raw" if serializer is None else _callable_name(serializer)  # module too: json.dumps, not dumps
        codec_name = getattr(getattr(serializer, "__self__", None), "name", None)
        return {
            "format": _FORMAT_VERSION,
            "keys": self._keys.description,
            "key_size_limit": self._keys.key_size_limit,
            "values": codec_name or values,
        }

    def _check_format(self) -> None:
        wanted = self._format()
        storage = self._storage

        def work(txn: Txn) -> dict[str, Any] | None:
            stored = txn.meta(b"format")
            if stored is None:
                if txn.count() == 0:
                    txn.put_meta(b"format", json.dumps(wanted).encode())
                return None
            return check_format_row(stored)

        with storage.reading() as txn:
            stored_raw = txn.meta(b"format")
        try:
            stored = storage.write(work) if stored_raw is None else check_format_row(stored_raw)
        except CorruptedRecordError as exc:  # unknown codecs: opened unchecked, like a store without the row
            warnings.warn(str(exc), RuntimeWarning, stacklevel=3)
            logger.warning("[{}] {}", self.name, exc)
            stored = None
        storage.mark_initialised()
        if stored is None:
            return
        if stored.get("format") != _FORMAT_VERSION:
            raise CodecMismatchError(f"database {self.path!r} has format {stored.get('format')}, "
                                     f"this version reads format {_FORMAT_VERSION}")
        if stored.get("keys") != wanted["keys"] or stored.get("key_size_limit") != wanted["key_size_limit"]:
            raise CodecMismatchError(
                f"database {self.path!r} was written with key encoding {stored.get('keys')!r} and "
                f"key_size_limit={stored.get('key_size_limit')}; opening it with {wanted['keys']!r} and "
                f"key_size_limit={wanted['key_size_limit']} would make its entries unreachable"
            )
        stored_values = str(stored.get("values"))
        # development versions recorded a function without its module ("dumps"): no mismatch by itself
        legacy_match = "." not in stored_values and wanted["values"].endswith("." + stored_values)
        if stored_values != wanted["values"] and not legacy_match:
            message = (f"database {self.path!r} was written with value codec {stored.get('values')!r} and is "
                       f"opened with {wanted['values']!r}: entries the new codec cannot decode raise CodecError "
                       "on read and are listed by check(); nothing is deleted")
            warnings.warn(message, CodecMismatchWarning, stacklevel=3)
            logger.warning("[{}] {}", self.name, message)


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

