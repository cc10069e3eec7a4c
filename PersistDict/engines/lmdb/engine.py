"""The LMDB engine: the engine protocol (engines/base.py) over one shared LMDB environment.

Every write the mapping asks for is one transaction script here (``work(txn)``), run by
``_write``: the script only touches the database, since a write that outgrows the map is
aborted, the map grown and the script run again (see ``Storage.write``). The entry layer
(``entries``) composes the tables; slots, pages and transactions stay below this line.
"""

from __future__ import annotations

import os
import random
import struct
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, TypeVar

import lmdb

from ..._accesses import PendingAccesses
from ..._codec.record import Record, record_expires, record_length, unpack_record, unpack_value
from ...exceptions import AlreadyCalledError, CorruptedRecordError
from ..base import Bounds, Commit, Item, live
from . import entries
from .bounds import enforce_bounds, least_bytes
from .env import Storage
from .errors import translate_error
from .txn import Txn
from .feed import fork_generation as _fork_generation
from .housekeeping import release_lease, sweep, try_take_lease
from ..base import CheckReport
from .integrity import check_database
from .slots import Slots, read_as

T = TypeVar("T")

CALLED = b"called"  # meta row: d(...) was called (until clear())
FORMAT = b"format"  # meta row: the store's format record
_RESIZED: Any = object()  # get's markers: read again
_REAPED: Any = object()


class LmdbEngine:
    """One store's handle on the process-wide :class:`Storage` of its directory."""

    def __init__(self, path: str, durability: str, map_size: int, key_size_limit: int) -> None:
        self.storage = Storage.acquire(path, durability, map_size)
        self.feed = self.storage  # the meta-page clock and the change-log ring (see Storage)
        self.path = path
        self.durability = durability
        self.slots = Slots(key_size_limit)
        self.limit = key_size_limit  # lookups up to this long are their own slot: one get
        self.accesses = PendingAccesses()
        self._rng = random.Random()

    # -- reads ----------------------------------------------------------------------------------

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
            raise translate_error(exc, storage.path) from exc
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

    # -- writes ---------------------------------------------------------------------------------

    def _write(self, work: Callable[[Txn], T], savepoint: bool = False) -> tuple[T, Commit]:
        """Run ``work`` in a write transaction: its result and the commit (see Storage.write)."""
        storage = self.storage

        def run(txn: Txn) -> tuple[T, int, bool]:
            return work(txn), txn.id, txn.wrote

        tracked = storage.current_write_txn() is None  # not inside transaction()
        result, txn_id, wrote = storage.write(run, savepoint)
        return result, Commit(txn_id, wrote, tracked, [])

    def footprint(self, items: Sequence[Item]) -> int:
        """The fewest bytes of database pages ``items`` take in an otherwise empty store."""
        sizes = {item.lookup: (len(self.slots.slot(item.lookup)),
                               record_length(item.lookup, item.exact, item.payload)) for item in items}
        return least_bytes(list(sizes.values()), self.storage.page_size)

    def _evict(self, txn: Txn, bounds: Bounds, written: set[int]) -> list[bytes]:
        if bounds.max_items is None and bounds.max_bytes is None:
            return []
        return enforce_bounds(txn, bounds.max_items, bounds.max_bytes, written, self.accesses,
                              self.slots.hash_bytes, self._rng)

    def put(self, items: Sequence[Item], now: float, expires: float, bounds: Bounds,
            once: bytes | None = None) -> Commit:
        bounded = bounds.max_items is not None or bounds.max_bytes is not None
        put, slot_of = entries.put, self.slots.slot

        def work(txn: Txn) -> list[bytes]:
            if once is not None:
                if txn.meta(once) is not None:
                    raise AlreadyCalledError(
                        "The __call__ method of PersistDict can only be called once. Just like a regular dict."
                    )
                txn.put_meta(once, b"1")
            seqs = entries.SeqAllocator(txn)
            if not bounded:
                for lookup, exact, kind, payload in items:
                    put(txn, seqs, lookup, exact, slot_of(lookup), kind, payload, now, expires)
                return []
            written = {put(txn, seqs, lookup, exact, slot_of(lookup), kind, payload, now, expires)[0]
                       for lookup, exact, kind, payload in items}
            return self._evict(txn, bounds, written)

        evicted, commit = self._write(work, savepoint=bounded)  # eviction raises if the write cannot fit
        return commit._replace(evicted=evicted)

    def put_if_absent(self, item: Item, now: float, bounds: Bounds, refuse: BaseException | None = None
                      ) -> tuple[tuple[int, Any] | None, Commit]:
        lookup, exact, kind, payload = item
        base = self.slots.slot(lookup)

        def work(txn: Txn) -> tuple[int, bytes] | list[bytes]:
            record = entries.find(txn, lookup, base).record
            if record is not None and live(record.expires, now):
                return record.kind, bytes(record.payload)
            if refuse is not None:
                raise refuse
            seq, _ = entries.put(txn, entries.SeqAllocator(txn), lookup, exact, base, kind, payload, now, 0.0)
            return self._evict(txn, bounds, {seq})  # put replaces an expired entry

        bounded = bounds.max_items is not None or bounds.max_bytes is not None
        outcome, commit = self._write(work, savepoint=bounded)
        if isinstance(outcome, list):  # stored: the entries evicted to make room
            return None, commit._replace(evicted=outcome)
        return outcome, commit

    def remove(self, lookup: bytes, now: float, expected: Record | None = None) -> tuple[Record | None, Commit]:
        """Remove the entry; returns its record if it was live (and, given ``expected``, still that
        version). CorruptedRecordError if its slot holds another key's record: nothing removed."""
        base = self.slots.slot(lookup)

        def work(txn: Txn) -> Record | None:
            found = entries.find(txn, lookup, base)
            record = found.record
            if record is None or (expected is not None and not same_version(record, expected)):
                return None
            removed = entries.remove(txn, found, base)
            return removed if live(removed.expires, now) else None

        return self._write(work)

    def remove_at(self, where: bytes, expected: Record) -> tuple[Record | None, bytes, Commit]:
        """Remove the entry ``newest`` found at ``where`` if it is still that version: its record,
        the lookup it is read by, the commit."""

        def work(txn: Txn) -> Record | None:
            current = entries.record_at_or_none(txn, where)  # by slot: a misplaced record is removed too
            if current is None or not same_version(current, expected):
                return None
            return entries.remove_slot(txn, where, self.slots.hash_bytes)

        removed, commit = self._write(work)
        return removed, read_as(where, expected.lookup), commit

    def retime(self, lookup: bytes, now: float, expires: float) -> tuple[bool, Commit]:
        base = self.slots.slot(lookup)

        def work(txn: Txn) -> bool:
            found = entries.find(txn, lookup, base)
            record = found.record
            if record is None or not live(record.expires, now):
                return False
            entries.set_expiry(txn, found, expires)
            txn.put_atime(record.seq, now)
            return True

        return self._write(work)

    def clear(self) -> Commit:
        def work(txn: Txn) -> None:
            txn.clear_all()
            txn.delete_meta(CALLED)

        return self._write(work)[1]

    @contextmanager
    def transaction(self) -> Iterator[None]:
        with self.storage.transaction():
            yield

    # -- housekeeping ---------------------------------------------------------------------------

    def write_atimes(self, batch: list[tuple[int, float]]) -> tuple[int, Commit]:
        return self._write(lambda txn: txn.raise_atimes(batch))

    def sweep(self, now: float, idle_cutoff: float | None, start_after: int, deadline: float,
              monotonic: Callable[[], float], alert: Callable[[Exception], None]) -> tuple[int, int | None]:
        return sweep(self.storage, self.slots.hash_bytes, now, idle_cutoff, self.accesses, start_after,
                     deadline, monotonic, alert)

    def take_lease(self, holder: str, now: float, seconds: float, days: float | None) -> bool:
        return try_take_lease(self.storage, holder, now, seconds, days)

    def release_lease(self, holder: str) -> None:
        release_lease(self.storage, holder)

    def check(self, keys: Any, can_decode: Callable[[int, Any], bool], repair: bool, drop: bool,
              format_row: bytes) -> CheckReport:
        return check_database(self.storage, keys, self.slots, can_decode, repair, drop, format_row)

    def format(self, wanted: bytes) -> bytes | None:
        """The stored format record; ``wanted`` is stored first if there is none and the store is
        empty (then None). A store that holds entries but no record stays without one."""
        storage = self.storage

        def work(txn: Txn) -> bytes | None:
            stored = txn.meta(FORMAT)
            if stored is None and txn.count() == 0:
                txn.put_meta(FORMAT, wanted)
                return None
            return stored

        with storage.reading() as txn:
            raw = txn.meta(FORMAT)
        stored = storage.write(work) if raw is None else raw
        storage.mark_initialised()
        return stored

    def info(self) -> dict[str, int]:
        with self.storage.reading() as txn:
            records_bytes = txn.records_bytes()
        info = self.storage.info()
        return {"records_bytes": records_bytes, "bytes_on_disk": self.storage.file_size(),
                "map_size": info["map_size"], "readers_in_use": info["readers_in_use"]}

    def sync(self) -> None:
        self.storage.sync()

    def close(self) -> None:
        self.storage.release()


def same_version(record: Record, expected: Record) -> bool:
    """Whether ``record`` is still the version of its entry that ``expected`` was read as."""
    return (record.seq == expected.seq and record.mtime == expected.mtime and record.expires == expected.expires
            and record.kind == expected.kind and record.payload == expected.payload)


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


def open_engine(path: str, durability: str, map_size: int, key_size_limit: int) -> LmdbEngine:
    """The LMDB engine of the store directory ``path`` (created if missing)."""
    return LmdbEngine(os.path.abspath(path), durability, map_size, key_size_limit)
