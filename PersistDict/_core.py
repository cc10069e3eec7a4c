"""PersistDict: the public mapping over a storage engine (engines/base.py).

It composes the key codec, the value codec, the front cache and its coherence
rule, the engine and the maintenance scheduler. This module holds the store's
state, the one-key reads (the hot path: ``d[k]``, ``get``, ``in``) and its
lifecycle; the other reads, the writes and the housekeeping are its parts in
_api/ (reads.py, writes.py, housekeeping.py).

Data flows one way: public method -> key codec -> (front cache) -> engine ->
record. Serializers run outside the engine's write transactions.
"""

from __future__ import annotations

import os
import pickle
import threading
import time
import warnings
from collections.abc import Callable, MutableMapping
from typing import Any, overload

from loguru import logger

from .engines.registry import open_engine, store_path  # first: the engines' fork hooks run before lifecycle's
from ._accesses import SHARD_MASK
from ._api import lifecycle
from ._api.aio import AsyncMethods
from ._api.encryption import Encryption
from ._api.housekeeping import Housekeeping
from ._api.options import compare_formats, encode_format, format_record, settings_of, stored_format
from ._api.reads import BulkReads, Metadata
from ._api.state import PLAIN_KEY_TYPES as _PLAIN_KEY_TYPES
from ._api.state import K, T, V, corrupted, typechecked
from ._api.locks import Locks
from ._api.memoize import Memoize
from ._api.operations import Operations
from ._api.toolkit import Toolkit
from ._api.writes import Writes
from ._codec import crypto
from ._codec.keys import KeyCodec, canonical_key_serializer, canonical_key_unserializer
from ._codec.record import KIND_SERIALIZED, Record
from ._codec.values import ValueCodec, undecodable
from ._frontcache import coherence
from ._frontcache.cache import COPIED, RECENT_LIMIT, SHARED, CachedEntry, FrontCache
from ._maintenance import Maintenance
from .engines.base import Engine
from .engines.lmdb import DEFAULT_MAP_SIZE
from .exceptions import ClosedError, CodecMismatchWarning, CorruptedRecordError, TransactionError

__all__ = ["Metadata", "PersistDict"]

CLOSE_WAIT_SECONDS = 5.0  # how long close() waits for its writes (see close)


class PersistDict(BulkReads[K, V], Writes[K, V], Toolkit[K, V], Memoize[K, V], Locks, AsyncMethods[K, V],
                  Housekeeping, Operations, Encryption, MutableMapping[K, V]):
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
        encryption_key: Any = None,
        allow_pickling_key: bool = False,
        namespace: str | None = None,
        client: Any = None,
        strict_reads: bool = False,
    ) -> None:
        path = store_path(database_path)
        self._settings: dict[str, Any] = settings_of(
            path, expiration_days, key_serializer, key_unserializer, key_size_limit, value_serializer,
            value_unserializer, caching, verbose, background_thread, background_timeout, name,
            durability=durability, cache_max_entries=cache_max_entries, cache_max_bytes=cache_max_bytes,
            maintenance_interval=maintenance_interval, atime_flush_interval=atime_flush_interval,
            map_size=map_size, max_items=max_items, max_bytes=max_bytes, clock=clock)
        key_source = None if encryption_key is None else crypto.key_source(encryption_key, allow_pickling_key)
        self._settings.update(encryption_key=key_source, allow_pickling_key=allow_pickling_key)
        if namespace is not None or strict_reads:  # the Redis engine's (a client does not travel: see __reduce__)
            self._settings.update(namespace=namespace, strict_reads=strict_reads)
        self.path = path
        self._clock = clock
        self.max_items = max_items
        self.max_bytes = max_bytes
        self._keys = KeyCodec(key_serializer, key_unserializer, key_size_limit, hashed=key_source is not None)
        self._plain_cache_keys = self._keys.canonical
        self._values = values = ValueCodec(value_serializer, value_unserializer)
        # bound once: the read path calls them without an attribute lookup on the codec
        self._decode_value = values.decode
        self._encode_value = values.encode
        self._decode_cached = values.decode_cached
        self._loads_takes_buffer = values.loads_takes_buffer
        self._lock = threading.RLock()
        self._front = FrontCache(cache_max_entries, cache_max_bytes, self._take_hits) if caching else None
        # hit/miss counters are plain attributes: the read path is the product
        self._hits = self._misses = 0
        self.counters = dict.fromkeys(("sets", "deletes", "expired", "evicted", "integrity_alerts"), 0)
        self._closed = True
        # a missing or malformed key (an unset variable, a callable's wrong bytes) is refused before
        # the store is opened, so a failed open creates no store
        master = None if key_source is None else key_source.get()
        self._engine = engine = open_engine(path, durability, map_size, self._keys.key_size_limit, namespace,
                                            client, strict_reads)
        self._engine_get = engine.get  # bound once: the cold read path
        self._feed = engine.feed  # the commit clock and changed keys: the front cache's coherence
        self._touched = engine.accesses  # id -> atime not yet written: reads note here, no lock
        self._closed = False
        self._released = False  # the engine, once: by close() or by the writes it left to a thread
        try:
            self._check_format()
            if key_source is not None and master is not None:
                self._open_encrypted(key_source, master)  # the key check: a wrong key stops here, nothing changed
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
                front.hand_over_hits()
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
            raise corrupted(key, exc) from exc
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

    def _hand_over_hits(self) -> None:
        """Hand the front cache's buffered hits over to the access times now: eviction, expiry,
        ``metadata()`` and the flush must see the reads the cache served."""
        front = self._front
        if front is not None and front.recent:
            with self._lock:
                front.hand_over_hits()

    def _take_hits(self, entries: list[CachedEntry]) -> None:
        """The front cache's hits, handed over: they count as reads, their access times go to the next flush."""
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
            raise corrupted(key, exc) from exc
        return expires is not None and (not expires or expires > self._clock())

    def __len__(self) -> int:
        return self._check_open().count()

    # -- lifecycle -----------------------------------------------------------------

    def close(self) -> None:
        """Write pending access times, stop maintenance, release the database. Idempotent."""
        if self._closed:
            return
        if self._feed.in_transaction():  # the engines would end the block differently: refuse, change nothing
            raise TransactionError("close() inside transaction(): leave the block first (the store stays open)")
        self._close_committer()  # the async writes queued before close() land; later ones: ClosedError
        self._maintenance.stop()  # outside the lock: the thread may be waiting for it
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
                        self._engine.close()

        try:
            threading.Thread(target=write, name="PersistDict close", daemon=True).start()
        except RuntimeError:  # at interpreter exit (3.12 starts no new thread then): write here
            write()
        if not written.wait(CLOSE_WAIT_SECONDS):
            logger.warning("closing {!r}: another process or thread holds the writer lock; the access times are "
                           "written when it frees it (or lost if this process exits first)", self.path)
        self._mark_closed(release=written.is_set())
        if errors:
            raise errors[0]

    def _write_before_close(self) -> None:
        self.flush_atimes()  # outside the lock: a write may wait for other threads
        self._engine.release_lease(self._maintenance.holder)
        if self._settings["durability"] == "fast":
            self._engine.sync()  # what 'fast' deferred reaches the disk at close

    def _mark_closed(self, release: bool) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
            lifecycle.unregister(self)
            if release and not self._released:
                self._released = True
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
        self._committer = None  # the parent's queue and thread stay the parent's
        if self._front is not None:
            self._front = FrontCache(self._front.max_entries, self._front.max_bytes, self._take_hits)
        self._maintenance.restart_after_fork()


def _reopen(path: str, settings: dict[str, Any]) -> PersistDict:
    return PersistDict(path, **settings)
