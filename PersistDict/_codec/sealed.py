"""The engine of an encrypted store, as the mapping sees it: any engine, with every key and value
sealed on the way down and opened on the way up (see crypto.py for the scheme).

The engine below sees the keyed hash of each key (the lookup the key codec made), the key's exact
encoding sealed, and the value sealed and bound to its lookup and kind; so does every table of it
(records, order, change log). Metadata (times, expiry, sizes) stays in clear. Records read back
are verified: a value against its lookup (associated data), a key by hashing it back to the
lookup it was found under. A failure is a ``TamperedRecordError`` (a ``CorruptedRecordError``),
which the mapping names with the key, as it does every damaged record.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import Any

from ..engines.base import Bounds, CheckReport, Commit, Item, Loaded
from ..exceptions import CorruptedRecordError, EncryptionError, TamperedRecordError
from .crypto import Sealer, UnknownGeneration
from .keys import KeyCodec
from .record import Record


# engine operations that take and return no key and no value (times, counts, housekeeping)
_PASSED = frozenset({
    "expires", "count", "counts", "times", "retime", "clear", "transaction", "write_atimes", "sweep",
    "take_lease", "release_lease", "claim", "unclaim", "format", "setting", "put_setting", "info", "sync",
    "close", "path", "durability", "storage",
    "backup", "compact",  # copy the sealed file as it is (with its key record): the copy opens with the same key
})


class _Opened(Record):
    """A record with its key and value opened; ``sealed`` is the record as stored, which the
    engine compares with when it is passed back as ``expected``."""

    sealed: Record


def _with_sealed(record: Record, opened: Record) -> _Opened:
    out = _Opened(*opened)
    out.sealed = record
    return out


class SealedEngine:
    """Wraps ``engine``; ``sealer`` is the current :class:`Sealer`, ``refresh()`` re-reads the store's
    key record (another process may have rotated the key) and returns the sealer for it."""

    def __init__(self, engine: Any, keys: KeyCodec, sealer: Sealer,
                 refresh: Callable[[], Sealer]) -> None:
        self.engine = engine
        self.feed = engine.feed
        self.accesses = engine.accesses
        self.key_codec = keys
        self.sealer = sealer
        self._refresh = refresh
        self._refresh_lock = threading.Lock()

    def __getattr__(self, name: str) -> Any:
        # what carries no key or value is passed through; anything else (an operation added to the
        # engines later, a lookup by key prefix...) is refused rather than handed hashes or sealed bytes
        if name in _PASSED:
            return getattr(self.engine, name)
        raise EncryptionError(f"{name!r} is not available on an encrypted store (keys are stored as keyed hashes "
                              "and sealed; see the README, Encryption)")

    # -- opening ------------------------------------------------------------------------------------

    def _retry(self, action: Callable[[Sealer], Any]) -> Any:
        """``action`` with the current sealer; once more after re-reading the key record if a blob
        was sealed with a data key this process does not have yet (a rotation in another process)."""
        try:
            return action(self.sealer)
        except UnknownGeneration:
            pass
        with self._refresh_lock:
            self.sealer = self._refresh()
        try:
            return action(self.sealer)
        except UnknownGeneration as exc:
            raise EncryptionError(f"a record is sealed with key generation {exc.gen}, which this store's key "
                                  "record does not hold with the key this instance was opened with (rotated "
                                  "to another key: reopen with it)") from None

    def _value(self, lookup: bytes, kind: int, payload: Any) -> bytes:
        return self._retry(lambda sealer: sealer.open_value(lookup, kind, payload))  # type: ignore[no-any-return]

    def _exact(self, lookup: bytes, exact: bytes | None) -> bytes:
        """The key's exact encoding, checked to hash to ``lookup``."""
        if exact is None:
            raise TamperedRecordError("the record holds no sealed key")
        plain = self._retry(lambda sealer: sealer.open_key(exact))
        if self.sealer.lookup(self.key_codec.plain_lookup(plain)) != lookup:
            raise TamperedRecordError("the key failed authentication: it belongs to another entry")
        return plain  # type: ignore[no-any-return]

    def _record(self, record: Record | None) -> _Opened | None:
        if record is None:
            return None
        return _with_sealed(record, record._replace(
            exact=self._exact(record.lookup, record.exact),
            payload=self._value(record.lookup, record.kind, record.payload)))

    @staticmethod
    def _stored(expected: Record | None) -> Record | None:
        return getattr(expected, "sealed", expected)

    # -- sealing ------------------------------------------------------------------------------------

    def _seal(self, items: Sequence[Item]) -> list[Item]:
        sealer = self._check_current()
        return [Item(lookup, sealer.seal_key(lookup if exact is None else exact),
                     kind, sealer.seal_value(lookup, kind, payload)) for lookup, exact, kind, payload in items]

    def _check_current(self) -> Sealer:
        """The sealer to write with: the key record is read first (one meta read), so that a writer
        never goes on sealing with a data key a rotation retired."""
        with self._refresh_lock:
            self.sealer = self._refresh()
        return self.sealer

    # -- reads ----------------------------------------------------------------------------------------

    def get(self, lookup: bytes) -> tuple[int, float, int, Any, int]:
        seq, expires, kind, payload, snapshot = self.engine.get(lookup)
        if seq < 0:
            return seq, expires, kind, payload, snapshot
        return seq, expires, kind, self._value(lookup, kind, payload), snapshot

    def get_many(self, lookups: Sequence[bytes], known_at: int = -1, known: frozenset[int] = frozenset()
                 ) -> tuple[list[Any], int]:
        got, snapshot = self.engine.get_many(lookups, known_at, known)
        out: list[Any] = []
        for lookup, entry in zip(lookups, got):
            if entry is None or isinstance(entry, CorruptedRecordError):
                out.append(entry)
                continue
            seq, expires, kind, payload = entry
            try:
                out.append((seq, expires, kind, self._value(lookup, kind, payload)))
            except TamperedRecordError as exc:
                out.append(exc)
        return out, snapshot

    def keys(self, now: float, decode_many: Callable[[list[bytes]], list[Any]],
             decode_str_keys: Any = None) -> list[Any]:
        # through items(): each key is checked against the lookup it is stored under
        return decode_many([exact for _, exact, _, _ in self._items(now, values=False)])

    def items(self, now: float) -> list[tuple[bytes, bytes | None, int, Any]]:
        return self._items(now, values=True)  # type: ignore[return-value]

    def _items(self, now: float, values: bool) -> list[tuple[bytes, bytes, int, Any]]:
        return [(lookup, self._exact(lookup, exact), kind, self._value(lookup, kind, payload) if values else b"")
                for lookup, exact, kind, payload in self.engine.items(now)]

    def sealed_keys(self, now: float) -> list[bytes]:
        """The sealed exact key of every live entry, unchecked (rotation: it re-reads each by lookup)."""
        return self.engine.keys(now, lambda encoded: encoded, None)  # type: ignore[no-any-return]

    def readable(self, lookups: Sequence[bytes] | None, now: float) -> list[tuple[Any, ...] | None]:
        out: list[tuple[Any, ...] | None] = []
        for entry in self.engine.readable(lookups, now):
            if entry is None or len(entry) != 5:
                out.append(entry if entry is None else (None, entry[-1]))  # a damaged place spells only a hash
                continue
            lookup, exact, kind, payload, seq = entry
            try:
                out.append((lookup, self._exact(lookup, exact), kind, self._value(lookup, kind, payload), seq))
            except TamperedRecordError as exc:
                out.append((None, exc))
        return out

    def find(self, lookup: bytes, now: float) -> _Opened | None:
        return self._record(self.engine.find(lookup, now))

    def newest(self, now: float) -> tuple[_Opened, Any] | None:
        found = self.engine.newest(now)
        if found is None:
            return None
        record, where = found
        return self._record(record), where  # type: ignore[return-value]

    # -- writes -------------------------------------------------------------------------------------

    def footprint(self, items: Sequence[Item]) -> int:
        return self.engine.footprint(self._seal(items))  # type: ignore[no-any-return]

    def put(self, items: Sequence[Item], now: float, expires: float, bounds: Bounds,
            once: bytes | None = None) -> Commit:
        return self.engine.put(self._seal(items), now, expires, bounds, once)  # type: ignore[no-any-return]

    def put_if_absent(self, item: Item, now: float, bounds: Bounds, refuse: BaseException | None = None
                      ) -> tuple[tuple[int, Any] | None, Commit]:
        found, commit = self.engine.put_if_absent(self._seal([item])[0], now, bounds, refuse)
        if found is not None:
            found = (found[0], self._value(item.lookup, found[0], found[1]))
        return found, commit

    def replace(self, item: Item, expected: Record | None, now: float, expires: float, bounds: Bounds,
                keep_key: bool = True) -> tuple[bool, Commit]:
        return self.engine.replace(self._seal([item])[0], self._stored(expected), now, expires, bounds, keep_key)  # type: ignore[no-any-return]

    def replace_sealed(self, item: Item, expected: Record, now: float) -> bool:
        """Rotation: store ``item`` (already sealed) if the entry is still ``expected`` (as stored)."""
        return self.engine.replace(item, expected, now, expected.expires, Bounds(None, None), keep_key=False)[0]  # type: ignore[no-any-return]

    def load(self, batch: Sequence[Loaded], now: float, bounds: Bounds) -> Commit:
        # entries copied from another encrypted store come with its hashes: hash their keys here
        rehash = self.sealer.lookup
        sealed = self._seal([entry.item._replace(lookup=rehash(self.key_codec.plain_lookup(entry.item.exact)))
                             if entry.item.exact is not None else entry.item for entry in batch])
        return self.engine.load([entry._replace(item=item) for entry, item in zip(batch, sealed)], now, bounds)  # type: ignore[no-any-return]

    def entries_after(self, start_after: int, limit: int, now: float) -> list[tuple[_Opened, float]]:
        # opened: an export (or a ':memory:' backup, written entry by entry) carries keys and values
        return [(self._record(record), atime)  # type: ignore[misc]
                for record, atime in self.engine.entries_after(start_after, limit, now)]

    def remove(self, lookup: bytes, now: float, expected: Record | None = None) -> tuple[Record | None, Commit]:
        # the removed record as stored: the mapping reads only its id (a value is opened before, by find)
        return self.engine.remove(lookup, now, self._stored(expected))  # type: ignore[no-any-return]

    def remove_at(self, where: Any, expected: Record) -> tuple[Record | None, bytes, Commit]:
        return self.engine.remove_at(where, self._stored(expected))  # type: ignore[no-any-return]

    # -- housekeeping ---------------------------------------------------------------------------------

    def check(self, keys: Any, can_decode: Callable[[Record], bool], repair: bool, drop: bool,
              format_row: bytes, progress: Callable[[int, int], Any] | None = None) -> CheckReport:
        sealed = self

        class OpenedKeys:  # names keys in the report, opened as the mapping would
            @staticmethod
            def decode(lookup: bytes, exact: bytes | None) -> Any:
                return keys.decode(lookup, sealed._exact(lookup, exact))

        def can_open(record: Record) -> bool:  # its key too: keys() and iteration open every key
            try:
                sealed._exact(record.lookup, record.exact)
                plain = sealed._value(record.lookup, record.kind, record.payload)
            except (TamperedRecordError, EncryptionError):
                return False
            return can_decode(record._replace(payload=plain))

        return self.engine.check(OpenedKeys, can_open, repair, drop, format_row, progress)  # type: ignore[no-any-return]
