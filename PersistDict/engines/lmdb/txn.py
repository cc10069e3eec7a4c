"""One LMDB transaction seen as the store's five tables of bytes, and the rows' encodings.

The tables: records (slot -> record), order (seq -> order row: insertion order), atimes
(seq -> stored access time), meta (name -> value) and changes (the change-log ring, feed.py).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import lmdb
from loguru import logger

from ...exceptions import CorruptedRecordError
from .feed import CHANGE_LOG_KEPT
from .rows import LENGTH as _LENGTH
from .rows import SEQ as _SEQ
from .rows import TIME as _FLOAT
from .rows import atime_of, change_row, damaged, seq_of
from .slots import read_as

TABLES = ("records", "order", "atimes", "meta", "changes")

SEQ_BYTES = _SEQ.size

CHANGE_LOG_MAX_BYTES = 16 << 10  # a commit that changed more is not logged: readers empty their cache


def encode_seq(seq: int) -> bytes:
    return _SEQ.pack(seq)


def decode_seq(data: bytes | memoryview) -> int:
    return _SEQ.unpack(data)[0]


def change_log_slot(txn_id: int) -> bytes:
    return (txn_id % CHANGE_LOG_KEPT).to_bytes(2, "big")


def encode_time(value: float) -> bytes:
    return _FLOAT.pack(value)


def decode_time(data: bytes | memoryview) -> float:
    return _FLOAT.unpack(data)[0]


class Txn:
    """An LMDB transaction seen as five tables of bytes.

    py-lmdb arguments go by position (get(key, default, db), put(key, value, dupdata,
    overwrite, append, db), delete(key, value, db), cursor(db), begin(db, parent, write,
    buffers)): py-lmdb parses keywords ~0.07-0.15 µs slower per call (measured), a
    tenth of a cold read.
    """

    __slots__ = ("raw", "write", "buffers", "wrote", "changed", "changed_bytes", "tables_lock",
                 "_records", "_order", "_atimes", "_meta", "_changes")

    def __init__(self, raw: lmdb.Transaction, dbs: tuple[Any, ...], write: bool, buffers: bool = True) -> None:
        self.raw = raw
        self.write = write
        self.buffers = buffers
        self.wrote = False  # whether it changed anything: only then does its commit take a txn id
        # lookups of the entries whose records it changed; None once it changed one it cannot name,
        # or more than the change log takes (CHANGE_LOG_MAX_BYTES, counted in changed_bytes)
        self.changed: list[bytes] | None = []
        self.changed_bytes = 0
        self.tables_lock: Any = None  # an RLock held by a read that opened its own tables until it ends
        self._records, self._order, self._atimes, self._meta, self._changes = dbs

    def _note_changed(self, slot: bytes, lookup: bytes | None) -> None:
        self.wrote = True
        changed = self.changed
        if changed is not None:
            name = read_as(slot, lookup)
            if name is None:
                self.changed = None
            else:
                changed.append(name)
                self.changed_bytes += _LENGTH.size + len(name)
                if self.changed_bytes > CHANGE_LOG_MAX_BYTES:
                    self.changed = None

    @property
    def id(self) -> int:
        return self.raw.id()

    # records: slot -> record
    def record(self, slot: bytes) -> bytes | memoryview | None:
        return self.raw.get(slot, None, self._records)

    def put_record(self, slot: bytes, data: bytes, lookup: bytes) -> None:
        """Store ``data``, the record of the entry whose lookup encoding is ``lookup``."""
        self.raw.put(slot, data, True, True, False, self._records)
        self._note_changed(slot, lookup)

    def delete_record(self, slot: bytes, lookup: bytes | None) -> None:
        """Delete the record at ``slot``, of the entry ``lookup`` (None: not known, e.g. unreadable)."""
        if self.raw.delete(slot, b"", self._records):
            self._note_changed(slot, lookup)

    def count(self) -> int:
        return self.raw.stat(self._records)["entries"]

    def rewrite_records(self) -> None:
        """Write the records table afresh, in key order, so its pages are full: after mass
        deletes LMDB leaves pages partly empty (it merges a page only below a quarter full)."""
        with self.raw.cursor(self._records) as cursor:
            rows = [(bytes(slot), bytes(data)) for slot, data in cursor]
        self.raw.drop(self._records, False)
        with self.raw.cursor(self._records) as cursor:
            for slot, data in rows:
                cursor.put(slot, data, True, True, True)  # dupdata, overwrite, append: in key order
        self.wrote = True

    def records_under(self, prefix: bytes) -> list[tuple[bytes, bytes]]:
        """(slot, record) of every record whose slot starts with ``prefix``, in slot order: for a
        hashed slot's base, its whole collision chain, gaps included."""
        rows = []
        with self.raw.cursor(self._records) as cursor:
            if cursor.set_range(prefix):
                for slot, data in cursor:
                    if not bytes(slot).startswith(prefix):
                        break
                    rows.append((bytes(slot), bytes(data)))
        return rows

    def iter_records_under(self, prefix: bytes) -> Iterator[tuple[bytes, bytes | memoryview]]:
        """(slot, record) of the records whose slot starts with ``prefix``, in slot order, reading
        nothing else: one seek, then one step per record (the record is a buffer at ``buffers``)."""
        with self.raw.cursor(self._records) as cursor:
            if not cursor.set_range(prefix):
                return
            for slot, data in cursor:
                slot = bytes(slot)
                if not slot.startswith(prefix):
                    return
                yield slot, data

    def iter_records(self) -> Iterator[tuple[bytes, bytes | memoryview]]:
        with self.raw.cursor(self._records) as cursor:
            for slot, data in cursor:
                yield bytes(slot), data

    # order: seq -> slot, iterated in insertion order
    def put_order(self, seq: int, slot: bytes) -> None:
        self.raw.put(encode_seq(seq), slot, True, True, False, self._order)
        self.wrote = True

    def delete_order(self, seq: int) -> None:
        self.wrote |= self.raw.delete(encode_seq(seq), b"", self._order)

    def order_row(self, seq: int) -> bytes | None:
        row = self.raw.get(encode_seq(seq), None, self._order)
        return None if row is None else bytes(row)

    def iter_order(self, newest_first: bool = False, start_after: int = 0,
                   damaged: list[CorruptedRecordError] | None = None) -> Iterator[tuple[int, bytes]]:
        """(seq, row) in seq order; a row whose key is not a seq raises, or with ``damaged`` is
        added to it and skipped."""
        with self.raw.cursor(self._order) as cursor:
            if newest_first:
                rows = cursor.iterprev()
            elif cursor.set_range(encode_seq(start_after + 1)):
                rows = cursor.iternext()
            else:  # nothing after start_after (an unpositioned cursor would restart at the first row)
                return
            for key, slot in rows:
                try:
                    seq = seq_of("order", key)
                except CorruptedRecordError as exc:
                    if damaged is None:
                        raise
                    damaged.append(exc)
                    continue
                yield seq, bytes(slot)

    def order_count(self) -> int:
        return self.raw.stat(self._order)["entries"]

    def seq_range(self) -> tuple[int, int] | None:
        """(oldest, newest) seq in the order table, or None when it is empty."""
        with self.raw.cursor(self._order) as cursor:
            if not cursor.first():
                return None
            first = seq_of("order", cursor.key())
            cursor.last()
            return first, seq_of("order", cursor.key())

    def order_row_at_or_after(self, seq: int) -> tuple[int, bytes] | None:
        with self.raw.cursor(self._order) as cursor:
            if not cursor.set_range(encode_seq(seq)):
                return None
            return seq_of("order", cursor.key()), bytes(cursor.value())

    def records_bytes(self) -> int:
        """Bytes of database pages holding records (what max_bytes bounds)."""
        stat = self.raw.stat(self._records)
        return (stat["branch_pages"] + stat["leaf_pages"] + stat["overflow_pages"]) * stat["psize"]

    # atimes: seq -> last access time
    def atime(self, seq: int) -> float | None:
        key = encode_seq(seq)
        data = self.raw.get(key, None, self._atimes)
        return None if data is None else atime_of(key, data)

    def put_atime(self, seq: int, when: float) -> None:
        self.raw.put(encode_seq(seq), encode_time(when), True, True, False, self._atimes)
        self.wrote = True

    def raise_atimes(self, accesses: list[tuple[int, float]]) -> int:
        """Store each (seq, time) of ``accesses`` whose entry still exists and whose stored
        access time is older; returns how many were stored. One loop over the batch with each
        seq encoded once and positional py-lmdb calls: the flush writes one for every entry read
        since the last flush (20.6k -> 14.4k instructions each)."""
        get, put, order, atimes = self.raw.get, self.raw.put, self._order, self._atimes
        pack_seq, pack_time, unpack_time = _SEQ.pack, _FLOAT.pack, _FLOAT.unpack
        count = 0
        for seq, when in accesses:
            key = pack_seq(seq)
            if get(key, None, order) is None:  # deleted meanwhile
                continue
            stored = get(key, None, atimes)
            if stored is not None:
                if len(stored) == 8:
                    if unpack_time(stored)[0] >= when:  # a NaN (damaged) compares false: replaced
                        continue
                else:  # damaged: this access replaces it
                    logger.warning("{}: replaced by a new access time", damaged("atimes", key, f"{len(stored)} bytes"))
            put(key, pack_time(when), True, True, False, atimes)
            count += 1
        self.wrote |= count > 0
        return count

    def delete_atime(self, seq: int) -> None:
        self.wrote |= self.raw.delete(encode_seq(seq), b"", self._atimes)

    def iter_atimes(self) -> Iterator[tuple[int, float]]:
        with self.raw.cursor(self._atimes) as cursor:
            for key, data in cursor:
                yield seq_of("atimes", key), atime_of(key, data)

    # meta: name -> small value
    def meta(self, name: bytes) -> bytes | None:
        data = self.raw.get(name, None, self._meta)
        return None if data is None else bytes(data)

    def put_meta(self, name: bytes, value: bytes) -> None:
        self.raw.put(name, value, True, True, False, self._meta)
        self.wrote = True

    def delete_meta(self, name: bytes) -> None:
        self.wrote |= self.raw.delete(name, b"", self._meta)

    def meta_names_under(self, prefix: bytes) -> list[bytes]:
        """The names of the meta rows that start with ``prefix``, in order."""
        names = []
        with self.raw.cursor(self._meta) as cursor:
            if cursor.set_range(prefix):
                for name in cursor.iternext(keys=True, values=False):
                    if not bytes(name).startswith(prefix):
                        break
                    names.append(bytes(name))
        return names

    # changes: txn id -> the lookups its commit changed (see log_changes)
    def logged_changes(self, txn_id: int) -> list[bytes] | None:
        """The lookups commit ``txn_id`` changed (see ``log_changes``); None if it is not logged."""
        key = change_log_slot(txn_id)
        row = self.raw.get(key, None, self._changes)
        if row is None:
            return None
        try:
            logged, lookups = change_row(key, row)
        except CorruptedRecordError:
            return None  # a damaged row (rows have no checksum): as if not logged
        return lookups if logged == txn_id else None  # else the ring's row is another commit's

    def future_change_log_rows(self, after: int) -> list[bytes]:
        """Ring slots holding a commit after txn id ``after``, or too short to say which."""
        with self.raw.cursor(self._changes) as cursor:
            return [bytes(slot) for slot, row in cursor if len(row) < SEQ_BYTES or decode_seq(row[:SEQ_BYTES]) > after]

    def delete_change_log_rows(self, slots: list[bytes]) -> None:
        for slot in slots:
            self.wrote |= self.raw.delete(slot, b"", self._changes)

    def rows(self, table: str) -> list[tuple[bytes, bytes]]:
        """Every (key, value) of ``table`` (one of TABLES) as stored, for check() to judge."""
        with self.raw.cursor(getattr(self, "_" + table)) as cursor:
            return [(bytes(key), bytes(value)) for key, value in cursor]

    def row(self, table: str, key: bytes) -> bytes | None:
        value = self.raw.get(key, None, getattr(self, "_" + table))
        return None if value is None else bytes(value)

    def delete_row(self, table: str, key: bytes) -> None:
        """Delete a row of ``table`` other than records (whose deletes the change log must name)."""
        self.wrote |= self.raw.delete(key, b"", getattr(self, "_" + table))

    def next_seq_value(self) -> int:
        """One more than the newest entry's seq.

        Derived instead of stored, to save a page write per insert. A seq is
        reused only after the newest entry is deleted, and nothing but an
        unflushed access time can follow a seq to its next owner, where it is
        harmless: it is older than the new entry's write, and an entry's last
        access is the latest of its write and its reads.
        """
        with self.raw.cursor(self._order) as cursor:
            return seq_of("order", cursor.key()) + 1 if cursor.last() else 1

    def order_rows(self) -> list[bytes]:
        """Every order row value, oldest first (one C-level pass)."""
        with self.raw.cursor(self._order) as cursor:
            rows = list(cursor.iternext(keys=False, values=True))
        return [bytes(row) for row in rows] if self.buffers else rows  # type: ignore[return-value]

    def clear_all(self) -> None:
        for db in (self._records, self._order, self._atimes):
            if self.raw.stat(db)["entries"]:
                self.raw.drop(db, delete=False)
                self.changed = None  # every entry: readers empty their caches

    def absorb(self, child: Txn) -> None:
        """A savepoint (child transaction) committed into this one: its changes are now ours."""
        self.wrote |= child.wrote
        if self.changed is not None:
            self.changed_bytes += child.changed_bytes
            if child.changed is None or self.changed_bytes > CHANGE_LOG_MAX_BYTES:
                self.changed = None
            else:
                self.changed += child.changed

    def log_changes(self) -> None:
        """Before commit: record which entries this transaction changed, under its txn id, so
        other front caches evict only those (see :meth:`Storage.changes_since`). A commit that
        changed an entry it cannot name, or too many, is not logged: readers then empty their
        cache. The log is a ring of ``CHANGE_LOG_KEPT`` rows; each names the txn id it is for.
        """
        changed = self.changed
        if not self.wrote or changed is None:
            return  # no txn id of its own, or changes it cannot name (or too many)
        txn_id = self.raw.id()
        log = b"".join([encode_seq(txn_id)] + [_LENGTH.pack(len(lookup)) + lookup for lookup in changed])
        self.raw.put(change_log_slot(txn_id), log, True, True, False, self._changes)
