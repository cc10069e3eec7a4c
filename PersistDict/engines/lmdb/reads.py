"""The LMDB engine's reads (LmdbEngine's reading half): each in one snapshot, the payloads copied
out unless the caller decodes within it. ``get`` and ``expires`` are the read path."""

from __future__ import annotations

import struct
from collections.abc import Callable, Sequence
from typing import Any

import lmdb

from ..._accesses import PendingAccesses
from ..._codec.record import Record, record_expires, record_listing, unpack_record, unpack_value
from ...exceptions import CorruptedRecordError
from ..base import live
from . import entries
from .env import Storage
from .errors import translate_error
from .feed import fork_generation as _fork_generation
from .rows import damaged
from .slots import HASHED_SLOT_MARK, Slots, read_as
from .txn import Txn

_RESIZED: Any = object()  # get's markers: read again
_REAPED: Any = object()


class LmdbReads:
    """The reads of the engine protocol over one Storage."""

    storage: Storage
    slots: Slots
    limit: int  # lookups up to this long are their own slot: one get
    accesses: PendingAccesses

    # get and expires are the read path: each runs its one transaction inline (fork check, resize
    # gate, begin, get, abort), with no call but LMDB's, and returns plain tuples (a NamedTuple's
    # constructor is a Python frame).

    def get(self, lookup: bytes) -> tuple[int, float, int, Any, int]:
        """(id, expires, kind, payload, snapshot); id -1 if absent. CorruptedRecordError (naming
        no key) if the record is damaged or another key's."""
        if len(lookup) > self.limit:
            return self._get_slowly(lookup)
        storage = self.storage
        if storage.txn_holders:
            active = getattr(storage._local, "txn", None)
            if active is not None:  # copied: decoding may run user code that writes in this txn
                data = active.raw.get(lookup, None, storage._records_db)
                if data is None:
                    return -1, 0.0, 0, b"", active.raw.id()
                seq, expires, kind, payload = unpack_value(bytes(data), lookup)
                return seq, expires, kind, payload, active.raw.id()
            if storage._dbs is None:  # the tables are not open for good yet (see tables.py)
                return self._get_slowly(lookup)
        if storage.generation != _fork_generation[0]:  # forked: reopen, then read as the reopened store does
            storage._checked_env()
            return self.get(lookup)
        env = storage.env
        gate = storage._gate
        open_txns = gate.open_txns
        open_txns.append(None)
        if gate.resizing or gate.quiescing:  # _TxnGate.enter, inlined
            open_txns.pop()
            gate.wait()
            return self.get(lookup)
        txn: Any = None
        try:
            txn = env.begin(storage._records_db)  # positional arguments: see Txn
            data = txn.get(lookup)
            snapshot = txn.id()
        except lmdb.MapResizedError:
            data = _RESIZED  # adopted below, once this read no longer counts as open
        except lmdb.ReadersFullError as exc:
            if not storage._reaped_dead_readers():
                raise translate_error(exc, storage.path) from exc
            data = _REAPED
        except lmdb.Error as exc:
            if env is not storage.env:  # a compaction swapped the environment since it was read: again
                data = _REAPED
            else:
                raise translate_error(exc, storage.path) from exc
        finally:  # whatever happened: a leaked count would block every resize
            if txn is not None:
                txn.abort()
            open_txns.pop()
        if data is None:
            return -1, 0.0, 0, b"", snapshot
        if data is _RESIZED or data is _REAPED:
            if data is _RESIZED:
                storage._wait_or_adopt_resize()
            return self.get(lookup)
        seq, expires, kind, payload = unpack_value(data, lookup)
        return seq, expires, kind, payload, snapshot

    def _get_slowly(self, lookup: bytes) -> tuple[int, float, int, Any, int]:
        """get in a transaction of storage.reading(): for a hashed slot, or before the tables are open for good."""
        with self.storage.reading() as txn:
            if len(lookup) <= self.limit:
                data = txn.record(lookup)
                if data is None:
                    return -1, 0.0, 0, b"", txn.id
                seq, expires, kind, payload = unpack_value(data, lookup)
                return seq, expires, kind, bytes(payload), txn.id
            record = entries.find(txn, lookup, self.slots.slot(lookup)).record
            if record is None:
                return -1, 0.0, 0, b"", txn.id
            return record.seq, record.expires, record.kind, bytes(record.payload), txn.id

    def expires(self, lookup: bytes) -> float | None:
        """The entry's expiry (0.0: never), or None if absent: what ``in`` needs. The record is
        parsed in LMDB's memory, not copied."""
        if len(lookup) > self.limit:
            return self._expires_slowly(lookup)
        storage = self.storage
        if storage.txn_holders:
            active = getattr(storage._local, "txn", None)
            if active is not None:
                data = active.raw.get(lookup, None, storage._records_db)
                return None if data is None else record_expires(data, lookup)
            if storage._dbs is None:
                return self._expires_slowly(lookup)
        if storage.generation != _fork_generation[0]:
            storage._checked_env()
            return self.expires(lookup)
        env = storage.env
        gate = storage._gate
        open_txns = gate.open_txns
        open_txns.append(None)
        if gate.resizing or gate.quiescing:
            open_txns.pop()
            gate.wait()
            return self.expires(lookup)
        txn: Any = None
        try:
            txn = env.begin(storage._records_db, None, False, True)  # buffers: valid until abort
            data = txn.get(lookup)
            return None if data is None else record_expires(data, lookup)
        except lmdb.MapResizedError:
            pass
        except lmdb.ReadersFullError as exc:
            if storage._reaped_dead_readers():
                return self.expires(lookup)
            raise translate_error(exc, storage.path) from exc
        except lmdb.Error as exc:
            if env is storage.env:
                raise translate_error(exc, storage.path) from exc
            return self.expires(lookup)  # a compaction swapped the environment since it was read: again
        finally:
            if txn is not None:
                txn.abort()
            open_txns.pop()
        storage._wait_or_adopt_resize()
        return self.expires(lookup)

    def _expires_slowly(self, lookup: bytes) -> float | None:
        """expires through storage.reading() (see _get_slowly)."""
        with self.storage.reading() as txn:
            if len(lookup) <= self.limit:  # the header only, as the read path does
                data = txn.record(lookup)
                return None if data is None else record_expires(data, lookup)
            record = entries.find(txn, lookup, self.slots.slot(lookup)).record
            return None if record is None else record.expires

    def get_many(self, lookups: Sequence[bytes], known_at: int = -1, known: frozenset[int] = frozenset()
                 ) -> tuple[list[tuple[int, float, int, bytes] | CorruptedRecordError | None], int]:
        """(id, expires, kind, payload copied), None (absent) or the CorruptedRecordError of a
        damaged entry, for each of ``lookups``, in one snapshot, and its clock. The positions in
        ``known`` are not read (None) if the snapshot is ``known_at``."""
        out: list[tuple[int, float, int, bytes] | CorruptedRecordError | None] = []
        limit, slot_of = self.limit, self.slots.slot
        with self.storage.reading(buffers=False) as txn:
            snapshot = txn.id
            skip = known if snapshot == known_at else frozenset()
            for index, lookup in enumerate(lookups):
                if index in skip:
                    out.append(None)
                    continue
                try:
                    if len(lookup) <= limit:  # the slot is the lookup encoding: one get
                        data = txn.record(lookup)
                        if data is None:
                            out.append(None)
                            continue
                        seq, expires, kind, payload = unpack_value(data, lookup)
                    else:
                        record = entries.find(txn, lookup, slot_of(lookup)).record
                        if record is None:
                            out.append(None)
                            continue
                        seq, expires, kind, payload = record.seq, record.expires, record.kind, record.payload
                except CorruptedRecordError as exc:
                    out.append(exc)  # the caller names the key
                    continue
                out.append((seq, expires, kind, bytes(payload)))  # copied: the txn's memory goes
        return out, snapshot

    def count(self) -> int:
        with self.storage.reading() as txn:
            return txn.count()

    def counts(self) -> tuple[int, int]:
        """(records, order rows): unequal means damage that ``check(repair=True)`` fixes."""
        with self.storage.reading() as txn:
            return txn.count(), txn.order_count()

    def find(self, lookup: bytes, now: float) -> Record | None:
        """The live record of ``lookup``, payload copied; CorruptedRecordError naming no key."""
        with self.storage.reading() as txn:
            record = entries.find(txn, lookup, self.slots.slot(lookup)).record
            if record is None or not live(record.expires, now):
                return None
            return record._replace(payload=bytes(record.payload))  # a view is valid only in the txn

    def times(self, lookup: bytes, now: float) -> tuple[float, float] | None:
        """(ctime, atime) of the live entry, pending reads included; None if absent."""
        with self.storage.reading() as txn:
            record = entries.find(txn, lookup, self.slots.slot(lookup)).record
            if record is None or not live(record.expires, now):
                return None
            atime = entries.atime_of(txn, record)
        return record.ctime, max(atime, self.accesses.get(record.seq, 0.0))

    def newest(self, now: float) -> tuple[Record, bytes] | None:
        """The most recently inserted live record (payload copied) and where it is (``popitem``)."""
        with self.storage.reading() as txn:
            for entry in entries.iter_order(txn, newest_first=True):
                if live(entry.expires, now):
                    break
            else:
                return None
            record = entries.record_at(txn, entry.slot)
            return record._replace(payload=bytes(record.payload)), entry.slot

    def keys(self, now: float, decode_many: Callable[[list[bytes]], list[Any]],
             decode_str_keys: Callable[[list[bytes]], list[str] | None] | None) -> list[Any]:
        """Every live key in insertion order, decoded by the mapping's key codec inside one
        snapshot (so a damaged row can be named). ``decode_str_keys``: the all-str fast path."""
        with self.storage.reading(buffers=False) as txn:
            rows = txn.order_rows()
            if decode_str_keys is not None:
                try:
                    str_keys = decode_str_keys(rows)  # plain rows (the slot is the key) of str keys
                except UnicodeDecodeError:
                    str_keys = None  # a damaged row: found below, one row at a time
                if str_keys is not None:
                    return str_keys
            encoded = [row for row in rows if row and row[0]]  # plain rows: the slot is the key
            if len(encoded) != len(rows):  # some rows carry a TTL or need their record
                encoded = []
                for row in rows:
                    try:
                        expires, key_in_slot, slot = entries.unpack_order(row)
                    except CorruptedRecordError:
                        raise entries.damaged_order_row(txn, row) from None
                    if expires and expires <= now:
                        continue
                    if key_in_slot:
                        encoded.append(slot)
                    else:
                        record = entries.record_at(txn, slot)
                        encoded.append(record.exact or record.lookup)
            try:
                return decode_many(encoded)
            except Exception:  # order rows carry no checksum: name the damaged one
                if decode_str_keys is None:
                    raise  # the user's key codec: its own error
                bad = next((row for row in encoded if not _decodes(decode_many, row)), None)
                if bad is None:
                    raise
                raise entries.damaged_order_row(txn, bad) from None

    def prefixed(self, prefix: bytes, now: float) -> list[bytes]:
        """The exact encodings (the lookup when the same) of the live entries whose lookup starts
        with ``prefix``, ordered by lookup, in one snapshot.

        A lookup up to ``limit`` bytes is its own slot, and LMDB keeps slots sorted: one seek to
        ``prefix``, then one step per matching record (its header is read, in place, for the
        expiry and exact key). Longer lookups live under hashed slots (``#`` + hash), which keep
        no order: every one of them is read to compare its lookup (none: one seek finds that)."""
        found: list[tuple[bytes, bytes]] = []
        hashed = False
        with self.storage.reading() as txn:
            if len(prefix) <= self.limit:
                for slot, data in txn.iter_records_under(prefix):
                    try:
                        _, expires, exact = record_listing(data, slot)
                    except CorruptedRecordError as exc:
                        raise damaged("records", slot, str(exc)) from None
                    if not expires or expires > now:
                        found.append((slot, exact or slot))
            for slot, data in txn.iter_records_under(HASHED_SLOT_MARK):
                try:
                    lookup = record_listing(data, None)[0]
                    if not lookup.startswith(prefix):
                        continue
                    record = unpack_record(data)  # a match: verified, as keys() reads hashed entries
                except CorruptedRecordError as exc:
                    raise damaged("records", slot, str(exc)) from None
                if live(record.expires, now):
                    found.append((record.lookup, record.exact or record.lookup))
                    hashed = True
        if hashed:  # hashed slots are in hash order
            found.sort()
        return [encoding for _, encoding in found]

    def items(self, now: float) -> list[tuple[bytes, bytes | None, int, Any]]:
        """(lookup, exact, kind, payload copied) of every live entry in insertion order, one snapshot."""
        raw: list[tuple[bytes, bytes | None, int, Any]] = []
        with self.storage.reading() as txn:
            for row in txn.order_rows():
                try:
                    expires, _, slot = entries.unpack_order(row)
                except CorruptedRecordError:
                    raise entries.damaged_order_row(txn, row) from None
                if expires and expires <= now:
                    continue
                record = entries.record_at(txn, slot)
                raw.append((record.lookup, record.exact, record.kind, bytes(record.payload)))
        return raw

    def readable(self, lookups: Sequence[bytes] | None, now: float) -> list[tuple[Any, ...] | None]:
        """``readable_items``' reads, in one snapshot, past damage: for every entry in order (or
        for each of ``lookups``; None: absent or expired) (lookup, exact, kind, payload copied, id),
        or (the lookup its place spells, None if unknown, the CorruptedRecordError) if damaged."""
        out: list[tuple[Any, ...] | None] = []
        with self.storage.reading() as txn:
            if lookups is None:
                for _, row in txn.iter_order():
                    entry = _read_row(txn, bytes(row), now)
                    if entry is not None:
                        out.append(entry)
                return out
            for lookup in lookups:
                try:
                    record = entries.find(txn, lookup, self.slots.slot(lookup)).record
                except CorruptedRecordError as exc:
                    out.append((lookup, exc))
                    continue
                if record is not None and live(record.expires, now):
                    out.append((record.lookup, record.exact, record.kind, bytes(record.payload), record.seq))
                else:
                    out.append(None)
        return out


def _read_row(txn: Txn, row: bytes, now: float) -> tuple[Any, ...] | None:
    """What the order row ``row`` leads to, copied out of the transaction (None: expired)."""
    try:
        expires, _, slot = entries.unpack_order(row)
    except (struct.error, IndexError):
        return (None, CorruptedRecordError("order row shorter than its header"))
    if expires and expires <= now:
        return None
    data = txn.record(slot)
    if data is None:
        return (read_as(slot, None), CorruptedRecordError("order index points to a missing record"))
    try:
        record = unpack_record(data)
    except CorruptedRecordError as exc:
        return (read_as(slot, None), exc)
    if record.expires and record.expires <= now:
        return None
    return (record.lookup, record.exact, record.kind, bytes(record.payload), record.seq)


def _decodes(decode_many: Callable[[list[bytes]], list[Any]], encoded: bytes) -> bool:
    try:
        decode_many([encoded])
    except Exception:  # the canonical decoder on damaged bytes: any error
        return False
    return True
