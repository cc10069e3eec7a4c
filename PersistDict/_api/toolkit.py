"""Read-modify-write helpers above the engine: counters (``incr``/``decr``), versions
(``version``/``compare_and_set``) and tracked values (``track_changes``). Each reads the entry,
runs the codec outside any write, then writes with the engine's ``replace``: one write that
stores only if the entry is still the version read, so it is atomic across threads and processes
on every engine."""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, Generic

from ..engines.base import Item, StoredEntry
from .._redact import key_text
from ..exceptions import ConflictError, CorruptedRecordError
from .options import ttl_seconds
from .state import MISSING, K, V, StoreState, corrupted, typechecked

Number = int | float


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

        def _note_evictions(self, evicted: list[bytes]) -> None: ...

    def _replace(self, key: Any, lookup: bytes, exact: bytes | None, kind: int, payload: bytes,
                 expected: StoredEntry | None, expires: float | None) -> bool:
        """Write the encoded value if the entry of ``key`` is still ``expected`` (None: absent), in one
        engine write; ``expires`` None: keep ``expected``'s expiry. Whether it wrote."""
        engine = self._check_open()
        bounds = self._write_bounds()
        if expires is None:
            expires = 0.0 if expected is None else expected.expires
        try:
            wrote, commit = engine.replace(Item(lookup, exact, kind, payload), expected, self._clock(), expires, bounds)
        except CorruptedRecordError as exc:
            raise corrupted(key, exc) from exc
        if wrote:
            self.counters["sets"] += 1
            self._note_evictions(commit.evicted)
        self._after_commit([lookup] + commit.evicted, commit)
        return wrote

    def _read_modify_write(self, key: Any, change: Callable[[bool, Any], Any]) -> Any:
        """Store ``change(found, value)`` of the live entry of ``key`` (found False: absent) and
        return it, atomically: the value is decoded, changed and encoded outside the engine's
        write, which stores it only if the entry is still the version read (else: again)."""
        lookup, exact = self._keys.encode(key)
        while True:
            record = self._find(self._check_open(), lookup, key)
            current = None if record is None else self._decode_value(record.kind, record.payload, key)
            new = change(record is not None, current)
            kind, payload = self._encode_value(new)
            if self._replace(key, lookup, exact, kind, payload, record, None):
                return new

    def incr(self, key: K, delta: Number = 1, *, default: Number = 0) -> Number:
        """Add ``delta`` to the number stored at ``key`` (``default`` if missing) and return the new
        value, atomically across threads and processes. The entry keeps its TTL. ``TypeError``, and
        nothing written, if the stored value, ``delta`` or ``default`` is not an int or a float."""
        if not _is_number(delta):
            raise TypeError(f"incr() delta must be an int or a float, not {type(delta).__name__}")
        if not _is_number(default):
            raise TypeError(f"incr() default must be an int or a float, not {type(default).__name__}")

        def add(found: bool, current: Any) -> Any:
            value = current if found else default
            if not _is_number(value):
                raise TypeError(f"incr() needs an int or a float stored at the key, found {type(value).__name__}")
            return value + delta

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
        kind, payload = self._encode_value(value)  # outside the engine's write
        record = self._find(self._check_open(), lookup, key)
        if (None if record is None else version_of(record)) != version:
            return False
        now = self._clock()
        return self._replace(key, lookup, exact, kind, payload, record, 0.0 if ttl is None else now + ttl)

    @contextmanager
    def track_changes(self, key: K, default: V = MISSING) -> Iterator[V]:
        """Hand out the value stored at ``key`` (``default`` if missing; ``KeyError`` without one) to
        change in place; on a clean exit, if it changed, write it back (keeping the entry's TTL) only
        if nobody wrote the entry meanwhile, else raise :class:`ConflictError` and write nothing.
        An exception inside the block writes nothing."""
        lookup, exact = self._keys.encode(key)
        record = self._find(self._check_open(), lookup, key)
        if record is None:
            if default is MISSING:
                raise KeyError(key)
            value = default
        else:
            value = self._decode_value(record.kind, record.payload, key)
        # "Changed" is judged on the encoding, so in-place changes anywhere inside the value count.
        before = self._encode_value(value)
        yield value
        kind, payload = self._encode_value(value)
        if (kind, payload) == before:
            return
        if not self._replace(key, lookup, exact, kind, payload, record, None):
            raise ConflictError(f"track_changes: the entry for key {key_text(key)} was written by someone "
                                "else meanwhile; nothing written")
