"""The mapping's reads of many entries: get_many, iteration and the snapshot views, equality and
``|``, ``metadata``, ``readable_items``. The one-key reads (the hot path) are _core's."""

from __future__ import annotations

from collections.abc import ItemsView, Iterable, Iterator, KeysView, Mapping, ValuesView
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Generic, cast, overload

from .._frontcache import coherence
from .._frontcache.cache import CachedEntry
from .._readable import ReadableItems, readable_items
from ..exceptions import CodecError, CorruptedRecordError, EncryptionError, KeyEncodingError
from .state import K, V, StoreState, corrupted, typechecked

@dataclass(frozen=True)
class Metadata:
    """When an entry was created and last read or written (timezone-aware UTC)."""

    ctime: datetime
    atime: datetime


def _utc(timestamp: float) -> datetime:
    return datetime.fromtimestamp(timestamp, tz=timezone.utc)


class BulkReads(StoreState, Generic[K, V]):
    """get_many, snapshots and views, equality, ``|``, metadata, readable_items."""

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
                    raise corrupted(key, found_entry) from found_entry
                seq, expires, kind, payload = found_entry
                if not expires or expires > now:
                    raw.append((key, seq, kind, payload))
        for _, seq, _, _ in raw:
            self._touched.note(seq, now)
        found = {key: entry.value(self._decode_cached) for key, entry in cached.items()}
        for key, _, kind, payload in raw:
            found[key] = self._decode_value(kind, payload, key)
        return {key: found[key] for key, _ in encoded if key in found}  # in the order asked

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

    @overload
    def keys(self) -> KeysView[K]: ...
    @overload
    def keys(self, prefix: str | bytes) -> list[K]: ...

    def keys(self, prefix: str | bytes | None = None) -> KeysView[K] | list[K]:
        """The keys: a view read afresh by each iteration (one snapshot each).

        ``prefix``: a list (one snapshot) of the str keys starting with this str, or of the bytes
        keys starting with these bytes, ordered by key (code points, bytes), not by insertion;
        found in the store's sorted index without reading the other entries (README, "Keys")."""
        if prefix is None:
            return _SnapshotKeys(cast(Any, self))  # a Mapping once composed into PersistDict
        return cast("list[K]", self._prefix_snapshot(self._prefix_lookup(prefix)))

    def _prefix_lookup(self, prefix: Any) -> bytes:
        """The lookup encodings of the keys starting with ``prefix`` start with these bytes."""
        codec = self._keys
        if codec.hashed:
            raise EncryptionError("keys(prefix=...) is not available on an encrypted store: its keys are stored as "
                                  "keyed hashes, which keep no order (see the README, Encryption)")
        if isinstance(prefix, str):
            body, tags = str.__str__(prefix).encode("utf-8", "surrogatepass"), b"sc"
        elif isinstance(prefix, bytes):
            body, tags = b"".join((prefix,)), b"by"
        else:
            raise TypeError(f"prefix must be str or bytes, not {type(prefix).__name__!r}")
        if codec.canonical:
            return tags[:1] + body
        if codec.serializer is None and codec.unserializer is None:  # raw str/bytes keys
            return tags[1:] + body
        raise KeyEncodingError("keys(prefix=...) needs the default key codec or key_serializer=None: "
                               "a custom key_serializer's output does not keep a key's prefix")

    def _prefix_snapshot(self, lookup_prefix: bytes) -> list[Any]:
        """The live keys whose lookup starts with ``lookup_prefix``, by lookup, one snapshot."""
        encoded = self._check_open().prefixed(lookup_prefix, self._clock())
        return self._keys.decode_many(encoded)

    def values(self) -> ValuesView[V]:
        return _SnapshotValues(cast(Any, self))  # a Mapping once composed into PersistDict

    def items(self) -> ItemsView[K, V]:
        return _SnapshotItems(cast(Any, self))  # a Mapping once composed into PersistDict

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

    def metadata(self, key: K) -> Metadata:
        """Creation and last access time of ``key``; ``KeyError`` if missing."""
        engine = self._check_open()
        lookup, _ = self._keys.encode(key)
        now = self._clock()
        self._hand_over_hits()
        try:
            times = engine.times(lookup, now)
        except CorruptedRecordError as exc:
            raise corrupted(key, exc) from exc
        if times is None:
            raise KeyError(key)
        return Metadata(_utc(times[0]), _utc(times[1]))


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

