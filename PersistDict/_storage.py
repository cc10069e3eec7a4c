"""Storage: the only module that touches LMDB.

One :class:`Storage` per database directory per process, shared by every
instance on that path (py-lmdb refuses a second open of the same files).
It owns the environment, the named tables, transactions, map growth,
fork safety and the translation of LMDB errors into :mod:`.exceptions`.
Everything above it speaks in bytes through :class:`Txn`.
"""

from __future__ import annotations

import errno
import mmap
import os
import struct
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

import lmdb
from loguru import logger

from . import _lmdb_tables
from ._keys import read_as
from ._lmdb_file import check_final_pages_are_free
from ._permissions import warn_if_others_can_write
from ._readers import reap_dead_readers
from ._records import record_expires
from ._rows import LENGTH as _LENGTH
from ._rows import SEQ as _SEQ
from ._rows import TIME as _FLOAT
from ._rows import atime_of, change_row, damaged, seq_of
from .exceptions import (
    ClosedError,
    CorruptedDatabaseError,
    CorruptedRecordError,
    DatabasePermissionError,
    NotADatabaseDirectoryError,
    StorageError,
    StorageFullError,
    TransactionError,
)

T = TypeVar("T")

DATA_FILE = "data.mdb"
LOCK_FILE = "lock.mdb"
# Written once the database holds its format record: if it exists and the
# data file looks new, the data file was truncated or replaced.
MARKER_FILE = "persistdict.marker"

DEFAULT_MAP_SIZE = 1 << 30  # virtual address space only: the file grows as needed
MAX_READERS = 8192  # one slot per concurrently open read transaction
DIR_MODE = 0o700
FILE_MODE = 0o600

# durability mode -> (sync, metasync)
DURABILITY = {
    "full": (True, True),  # every acknowledged write survives power loss
    "safe": (True, False),  # survives kill -9; OS crash may undo the last write, never corrupts
    "fast": (False, False),  # survives kill -9; OS crash may lose recent writes or corrupt
}

TABLES = ("records", "order", "atimes", "meta", "changes")

SEQ_BYTES = _SEQ.size

# the change log (``changes`` table, a ring: txn id % KEPT -> txn id + lookups of the entries that
# commit changed), read by other front caches to evict only those (Txn.log_changes, Storage.changes_since)
CHANGE_LOG_KEPT = 1024  # commits: a reader more commits behind empties its cache (<= 16 MB of rows)
CHANGE_LOG_MAX_BYTES = 16 << 10  # a commit that changed more is not logged: readers empty their cache

_OPEN_ATTEMPTS = 100  # see _while_the_map_grows

# LMDB's on-disk meta page: MDB_page header (16 bytes) then MDB_meta, whose
# mm_txnid sits at byte 128 on 64-bit builds. Reading it from a read-only map
# of the file costs ~70 ns against ~650 ns for env.info(); verified at open.
_META_MAGIC = 0xBEEFC0DE
_META_TXNID_OFFSET = 16 + 128


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


def _while_the_map_grows(step: Callable[[], T], adopt: Callable[[], None] = lambda: None) -> T:
    """``step()`` of opening a store, again (after ``adopt()``) while other processes grow the
    map under it: MDB_MAP_RESIZED, in about 1 open of 10 while another process keeps writing."""
    attempts = 1
    while True:
        try:
            return step()
        except lmdb.MapResizedError:
            if attempts == _OPEN_ATTEMPTS:
                raise
            attempts += 1
            adopt()


def _map_for_data(env: lmdb.Environment, page_size: int, growth: int) -> None:
    """Map ``growth`` times our map, and at least twice the data the store holds now.

    Sized from the data, never from the map size recorded in the store (``set_mapsize(0)``): that
    is the largest any process ever used, it only grows, and adopting it made each process that
    outgrew a small map double it again (5 MiB of data reached 64 TiB) or fail to map it at all.
    """
    info = env.info()  # the map we have, and the last commit's end of data
    env.set_mapsize(max(info["map_size"] * growth, 2 * (info["last_pgno"] + 1) * page_size))


# py-lmdb's error for an object whose environment was closed under it (by another thread's close())
_CLOSED_OBJECT = "closed/deleted/dropped object"


def translate_error(exc: BaseException, path: str) -> BaseException:
    """The one place where LMDB and OS errors become PersistDict errors."""
    if isinstance(exc, lmdb.Error) and _CLOSED_OBJECT in str(exc):
        return ClosedError(f"database {path!r} is closed")
    if isinstance(exc, lmdb.ReadonlyError) or (
        isinstance(exc, OSError) and exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS)
    ):
        return DatabasePermissionError(errno.EACCES, f"permission denied on database {path!r}")
    text = str(exc)
    if isinstance(exc, lmdb.DiskError) or any(
        marker in text for marker in ("No space left", "Input/output error", "File too large", "Disk quota")
    ):
        return StorageFullError(errno.ENOSPC, f"no space left for database {path!r} ({text})")
    if isinstance(exc, (lmdb.CorruptedError, lmdb.InvalidError, lmdb.PageNotFoundError,
                        lmdb.VersionMismatchError, lmdb.PanicError)):
        return CorruptedDatabaseError(errno.EIO, f"database {path!r} is corrupted: {text}")
    if isinstance(exc, lmdb.ReadersFullError):
        return StorageError(errno.EAGAIN, f"database {path!r}: too many concurrent readers ({text})")
    return StorageError(getattr(exc, "errno", None) or errno.EIO, f"database {path!r}: {text}")


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


class _TxnGate:
    """Counts open transactions so the map can be resized when there are none, and so a write
    transaction can be aborted when no other thread is inside LMDB.

    Entering is an append and a flag read (atomic under the GIL, no lock);
    the resizer raises its flag, then waits for the count to reach zero; an
    abort raises its own flag, then waits until only its own transaction and
    write begins queued on its writer lock are left (see ``quiesced``).
    """

    def __init__(self) -> None:
        # deques, not lists: appending to and popping from an empty list allocates and frees its
        # storage every time (measured: 41 against 25 ns a pair; every read enters the gate)
        self.open_txns: deque[None] = deque()
        self.write_begins: deque[None] = deque()  # open_txns entries still waiting for LMDB's writer lock
        self.resizing = False
        self.resize_lock = threading.Lock()
        self.quiescing = False
        self.quiesce_lock = threading.Lock()

    def enter(self) -> None:
        while True:
            self.open_txns.append(None)
            if not (self.resizing or self.quiescing):
                return
            self.open_txns.pop()
            self.wait()

    def wait(self) -> None:
        """Until no resize and no abort holds new transactions back."""
        with self.resize_lock:
            pass
        with self.quiesce_lock:
            pass

    def leave(self) -> None:
        self.open_txns.pop()

    @contextmanager
    def exclusive(self, own: int = 0) -> Iterator[None]:
        """Hold new transactions back until the open ones, but the caller's ``own``, have ended."""
        with self.resize_lock:
            self.resizing = True
            try:
                while len(self.open_txns) > own:
                    time.sleep(0.0005)
                yield
            finally:
                self.resizing = False

    @contextmanager
    def quiesced(self) -> Iterator[None]:
        """For the thread holding the write transaction, before it aborts it: py-lmdb 2 and 3 make
        a write abort() wait until no other thread of the process is inside an LMDB call, which
        never happens while two threads read in a loop (the abort hangs, holding the writer lock
        of every process). So hold new transactions back and let the open ones end; write begins
        are left out (they wait for the lock this abort releases, and py-lmdb does not wait for
        them). Bounded by ABORT_WAIT_SECONDS in case a count is off."""
        with self.quiesce_lock:
            self.quiescing = True
            try:
                deadline = time.monotonic() + ABORT_WAIT_SECONDS
                while len(self.open_txns) - len(self.write_begins) > 1 and time.monotonic() < deadline:
                    time.sleep(0.0002)
                yield
            finally:
                self.quiescing = False


ABORT_WAIT_SECONDS = 5.0
_registry: dict[tuple[int, int], Storage] = {}
_registry_lock = threading.Lock()
_fork_generation = [0]


# Every wait of fork() for this process's locks and transactions, together. Past it a store is
# forked as it is: a child that then reopens it frees the reader slots of the transactions still
# open (and the spare, not dropped) under the parent, and hangs if a parent thread held or waited
# for that store's write transaction (py-lmdb's close waits for it). Opening or closing a store
# inside a transaction() while another thread forks makes the fork wait this long.
FORK_WAIT_SECONDS = 5.0


class _ForkState(threading.local):
    """Per thread: what each _before_fork call took, for its _after_fork_in_parent, innermost last."""

    def __init__(self) -> None:
        self.frames: list[tuple[list[threading.Lock], list[Storage]]] = []


_fork_state = _ForkState()
_inherited_envs: list[lmdb.Environment] = []  # never closed in a child: see Storage._close_env


def _before_fork() -> None:
    """Let open transactions finish before fork(), hold new ones back, and drop each idle
    environment's spare read transaction.

    A child must close the environment it inherited before reopening it
    (py-lmdb refuses a second open of the same files), and closing aborts every
    transaction copied from the parent, releasing its reader slot under the
    parent. So fork waits for open transactions, and drops py-lmdb's spare one,
    which keeps its slot between reads (else the parent's next read fails with
    MDB_BAD_RSLOT, and freeing that slot again could release another process's).

    ``_registry_lock`` first (the order opening a store takes it and a gate):
    with it no release() closes an environment being resized. Every lock is
    waited for until one deadline, so a thread that holds a transaction and
    waits for one of them delays the fork instead of deadlocking it.
    """
    deadline = time.monotonic() + FORK_WAIT_SECONDS
    held: list[threading.Lock] = []
    paused: list[Storage] = []
    frames = _fork_state.frames
    frames.append((held, paused))
    if len(frames) > 1:
        return  # a fork from inside this one (say, by a log sink): the outer call holds everything

    def take(lock: threading.Lock) -> bool:
        if lock.acquire(timeout=max(0.0, deadline - time.monotonic())):
            held.append(lock)
            return True
        return False

    if not take(_registry_lock):
        return  # e.g. a thread opening a store waits for another process's write: fork as it is
    for storage in list(_registry.values()):
        if take(storage._gate.resize_lock):
            paused.append(storage)  # before the flag: _after_fork_in_parent lowers the flags of these
            storage._gate.resizing = True
    for storage in paused:
        open_txns = storage._gate.open_txns
        while open_txns and time.monotonic() < deadline:
            time.sleep(0.0005)
        if not open_txns and not storage.closed and storage.generation == _fork_generation[0]:
            storage._drop_spare_txn()


def _after_fork_in_parent() -> None:
    frames = _fork_state.frames
    if not frames:
        return
    held, paused = frames.pop()
    for storage in paused:
        storage._gate.resizing = False
    while held:  # the gates, then _registry_lock
        held.pop().release()


def _after_fork_in_child() -> None:
    global _registry_lock
    _registry_lock = threading.Lock()
    _fork_generation[0] += 1
    _fork_state.frames = []  # the parent's locks: replaced here and below
    for storage in list(_registry.values()):
        storage._reset_locks_after_fork()


os.register_at_fork(before=_before_fork, after_in_parent=_after_fork_in_parent,
                    after_in_child=_after_fork_in_child)


def _prepare_directory(path: str) -> None:
    if os.path.exists(path) and not os.path.isdir(path):
        raise NotADatabaseDirectoryError(errno.ENOTDIR, f"database path {path!r} exists and is not a directory")
    try:
        os.makedirs(path, mode=DIR_MODE, exist_ok=True)
    except OSError as exc:
        raise translate_error(exc, path) from exc
    data = os.path.join(path, DATA_FILE)
    if os.path.exists(data) and not os.access(data, os.R_OK | os.W_OK):
        raise DatabasePermissionError(errno.EACCES, f"permission denied on database {path!r}")


class Storage:
    """The process-wide handle on one database directory."""

    users: int  # instances using it in this process
    closed: bool

    @classmethod
    def acquire(cls, path: str, durability: str, map_size: int) -> Storage:
        """Return the shared Storage for ``path``, opening it on first use."""
        _prepare_directory(path)
        with _registry_lock:
            identity = _directory_identity(path)
            storage = _registry.get(identity)
            if storage is None or storage.closed:
                warn_if_others_can_write(path, (DATA_FILE, LOCK_FILE))
                storage = cls(path, durability, map_size)
                _registry[identity] = storage
            elif storage.durability != durability:
                raise ValueError(
                    f"database {path!r} is already open in this process with durability="
                    f"{storage.durability!r}; one process uses one durability per database"
                )
            storage.users += 1
            return storage

    def release(self) -> None:
        """Drop one user; the environment closes when the last user releases it."""
        with _registry_lock:
            self.users -= 1
            if self.users > 0 or self.closed:
                return
            for key, value in list(_registry.items()):
                if value is self:
                    del _registry[key]
            self.closed = True
            # Not under another thread's transaction: py-lmdb would mark it closed and wait for
            # its owner to abort it, which an abort of a closed transaction never does (a hang).
            with self._gate.exclusive(own=getattr(self._local, "txn", None) is not None):
                self._close_env()

    def __init__(self, path: str, durability: str, map_size: int) -> None:
        self.closed = False
        self.path = path
        self.durability = durability
        self.users = 0
        self._initial_map_size = map_size
        self._reopening = False
        self._local = threading.local()
        self._gate = _TxnGate()
        # one element per thread inside transaction(), and one while the tables are not open for good
        # (see _lmdb_tables): reads look at these cases only when it is not empty
        self.txn_holders: list[None] = []
        self._tables_lock = threading.RLock()
        self._open_env()

    # -- opening, closing, fork ---------------------------------------------

    def _open_env(self) -> None:
        sync, metasync = DURABILITY[self.durability]
        path = self.path
        marker = os.path.join(path, MARKER_FILE)
        data_file = os.path.join(path, DATA_FILE)
        if os.path.exists(marker):  # an initialised store: lmdb.open must not start a new, empty one
            try:
                data_size = os.path.getsize(data_file)
            except FileNotFoundError:
                raise CorruptedDatabaseError(
                    errno.ENOENT, f"database {path!r} is corrupted: its data file {DATA_FILE} is missing "
                    f"(the store was initialised: {MARKER_FILE} exists)") from None
            if data_size == 0:
                raise CorruptedDatabaseError(errno.EIO, f"database {path!r} is corrupted: its data file is empty")
        old_umask = os.umask(0o077)
        try:
            # readahead: LMDB's default. Without it, a process whose store is not in the page cache
            # faults it in one 4 KB page per read (measured: a 40 MB store, first `in` over 5,000 keys
            # 9-78 µs each with 360-4,900 disk faults, against 2.5 µs and none with readahead).
            # max_spare_txns=1: a read reuses the last one's transaction and reader slot (~900
            # instructions less: no allocation, no cross-process reader-table lock). fork() drops it
            # first (see _before_fork).
            def open_() -> lmdb.Environment:
                return _while_the_map_grows(lambda: lmdb.open(  # its first transaction may meet a grown map
                    path, map_size=self._initial_map_size, subdir=True, max_dbs=len(TABLES) + 1,
                    max_readers=MAX_READERS, mode=FILE_MODE, sync=sync, metasync=metasync,
                    readahead=True, max_spare_txns=1, lock=True,
                ))
            try:
                self.env = open_()
            except lmdb.ReadersFullError:  # py-lmdb's open itself needs a slot: reap without it, then again
                if not reap_dead_readers(path):
                    raise
                self.env = open_()
        except lmdb.Error as exc:
            raise translate_error(exc, path) from exc
        finally:
            os.umask(old_umask)
        try:
            self._check_file_size()
            self.env.reader_check()  # reap slots left by killed processes
            adopt = lambda: _map_for_data(self.env, self.page_size, 1)  # noqa: E731
            self._dbs: tuple[Any, ...] | None = None
            self._records_db: Any = None
            if _while_the_map_grows(lambda: _lmdb_tables.all_exist(self.env, TABLES), adopt):
                self.txn_holders.append(None)  # reads open the tables themselves until the first write
            else:  # a new store: creating its tables waits for other processes' write transactions
                self._dbs = _while_the_map_grows(
                    lambda: tuple(self.env.open_db(name.encode()) for name in TABLES), adopt)
                self._records_db = self._dbs[0]
            # kept open to notice the file unlinked under us (see _refuse_if_deleted)
            self._data_fd = os.open(os.path.join(path, DATA_FILE), os.O_RDONLY | os.O_CLOEXEC)
        except lmdb.Error as exc:
            self.env.close()
            raise translate_error(exc, path) from exc
        except BaseException:
            self.env.close()
            raise
        self._meta_map: mmap.mmap | None = None
        self._map_txnid_reader()
        self.generation = _fork_generation[0]
        self._drop_change_log_rows_from_the_future()  # one read of the ring's rows per open

    def _drop_change_log_rows_from_the_future(self) -> None:
        """Change-log rows for txn ids not reached yet come from a store whose ids went back (a
        restored or compacted copy): they must not vouch for the commits that take those ids."""
        with self.reading() as txn:
            if not txn.future_change_log_rows(txn.id):
                return

        def drop(txn: Txn) -> None:  # this commit is txn.id: rows for it or later are stale
            txn.delete_change_log_rows(txn.future_change_log_rows(txn.id - 1))
        self.write(drop)

    def _check_file_size(self) -> None:
        """Refuse a data file missing a page in use: reading it would SIGBUS. Pages past the end
        are fine when LMDB lists them free (allocated and freed in one transaction, never written)."""
        info = self.env.info()
        self.page_size = psize = self.env.stat()["psize"]
        data_file = os.path.join(self.path, DATA_FILE)
        if os.path.getsize(data_file) >= (info["last_pgno"] + 1) * psize:
            return

        def check() -> None:
            with self.env.begin():  # keeps the pages read below from being reused by a writer meanwhile
                check_final_pages_are_free(data_file, psize, f"database {self.path!r} is corrupted")
        _while_the_map_grows(check, adopt=lambda: _map_for_data(self.env, psize, 1))

    def _map_txnid_reader(self) -> None:
        """Map the two meta pages read-only to read the last txnid cheaply."""
        self.txnid_views: tuple[memoryview, memoryview] | None = None
        if sys.maxsize <= 2**32:
            return
        psize = self.env.stat()["psize"]
        try:
            with open(os.path.join(self.path, DATA_FILE), "rb") as handle:
                meta_map = mmap.mmap(handle.fileno(), 2 * psize, prot=mmap.PROT_READ)
        except (OSError, ValueError):
            return
        magic = struct.unpack_from("<I", meta_map, 16)[0], struct.unpack_from("<I", meta_map, psize + 16)[0]
        view = memoryview(meta_map)
        views = (view[_META_TXNID_OFFSET:_META_TXNID_OFFSET + 8].cast("Q"),
                 view[psize + _META_TXNID_OFFSET:psize + _META_TXNID_OFFSET + 8].cast("Q"))
        if magic == (_META_MAGIC, _META_MAGIC) and max(views[0][0], views[1][0]) == self.env.info()["last_txnid"]:
            self.txnid_views = views
            self._meta_map = meta_map
        else:  # unexpected layout: fall back to env.info()
            for v in views:
                v.release()
            view.release()
            meta_map.close()

    def last_txnid(self) -> int:
        """The id of the last transaction committed by any process."""
        views = self.txnid_views
        if views is not None and self.generation == _fork_generation[0]:
            first, second = views[0][0], views[1][0]
            return first if first > second else second
        return self._env_info()["last_txnid"]

    def _env_info(self) -> dict[str, int]:
        """env.info(), never concurrent with a map resize (LMDB then answers EINVAL)."""
        env = self._checked_env()
        self._gate.enter()
        try:
            return env.info()  # type: ignore[return-value]
        finally:
            self._gate.leave()

    def _close_env(self) -> None:
        # Drop, do not release: a lock-free reader may still hold the views;
        # the map is unmapped when the last reference goes.
        self.txnid_views = None
        self._meta_map = None
        os.close(self._data_fd)
        if self.generation != _fork_generation[0] and not self._reopening:
            # Inherited from the parent and never used here: closing it would abort
            # the parent's transactions (shared reader slots). Keep it, untouched.
            _inherited_envs.append(self.env)
            return
        self.env.close()

    def _drop_spare_txn(self) -> None:
        """Free py-lmdb's spare read transaction and its reader slot, before fork(); no transaction
        may be open. py-lmdb frees it when the map is resized, so "resize" it to its own size (LMDB
        unmaps and maps it again). Not a documented promise of py-lmdb's: the fork tests in
        tests/engines/lmdb/test_fork.py (e.g. test_fork_while_another_thread_reads_in_a_loop) fail without it."""
        try:
            self.env.set_mapsize(self.env.info()["map_size"])
        except lmdb.Error as exc:  # mmap failed: this environment is unusable (its next use raises)
            logger.warning("remapping {!r} before fork() failed: {!r}", self.path, exc)

    def _reset_locks_after_fork(self) -> None:
        self._gate = _TxnGate()
        self._tables_lock = threading.RLock()
        self._local = threading.local()
        self.txn_holders = []
        self.txnid_views = None  # the inherited map is not ours any more

    def _checked_env(self) -> lmdb.Environment:
        """The environment, reopened first if this process was forked from its opener."""
        if self.generation != _fork_generation[0]:
            with _registry_lock:
                if self.generation != _fork_generation[0]:
                    # An inherited environment must not be used: close it, reopen.
                    self._reopening = True
                    try:
                        self._close_env()
                    finally:
                        self._reopening = False
                    self._open_env()
        if self.closed:
            raise ClosedError(f"database {self.path!r} is closed")
        return self.env

    # -- transactions ---------------------------------------------------------

    # read_record and read_expiry are the read path: each runs its one transaction inline
    # (fork check, resize gate, begin, get, abort) rather than through a shared helper, whose
    # call would cost as much as the gate itself.

    def read_record(self, slot: bytes) -> tuple[bytes | None, int]:
        """(a copy of the record at ``slot`` or None, snapshot txn id) in one round trip."""
        if self.txn_holders:
            active = getattr(self._local, "txn", None)
            if active is not None:  # copied: decoding may run user code that writes in this txn
                data = active.raw.get(slot, None, self._records_db)
                return (None if data is None else bytes(data)), active.raw.id()
            if self._dbs is None:
                with self.reading(False) as txn:
                    return txn.record(slot), txn.id  # type: ignore[return-value]
        if self.generation != _fork_generation[0]:  # forked: reopen, then read as the reopened store does
            self._checked_env()
            return self.read_record(slot)
        env = self.env
        gate = self._gate
        open_txns = gate.open_txns
        open_txns.append(None)
        if gate.resizing or gate.quiescing:  # _TxnGate.enter, inlined
            open_txns.pop()
            gate.wait()
            return self.read_record(slot)
        txn: Any = None
        try:
            txn = env.begin(self._records_db)  # positional arguments: see Txn
            return txn.get(slot), txn.id()
        except lmdb.MapResizedError:
            pass  # adopted below, once this read no longer counts as open
        except lmdb.ReadersFullError as exc:
            if self._reaped_dead_readers():
                return self.read_record(slot)
            raise translate_error(exc, self.path) from exc
        except lmdb.Error as exc:
            raise translate_error(exc, self.path) from exc
        finally:  # whatever happened: a leaked count would block every resize
            if txn is not None:
                txn.abort()
            open_txns.pop()
        self._wait_or_adopt_resize()
        return self.read_record(slot)

    def read_expiry(self, slot: bytes) -> float | None:
        """The expiry time of the record at ``slot`` (0.0: none), or None if there is no record:
        what ``in`` needs. The record is parsed in LMDB's memory, not copied."""
        if self.txn_holders:
            active = getattr(self._local, "txn", None)
            if active is not None:
                data = active.raw.get(slot, None, self._records_db)
                return None if data is None else record_expires(data, slot)
            if self._dbs is None:
                with self.reading() as txn:
                    data = txn.record(slot)
                    return None if data is None else record_expires(data, slot)
        if self.generation != _fork_generation[0]:
            self._checked_env()
            return self.read_expiry(slot)
        env = self.env
        gate = self._gate
        open_txns = gate.open_txns
        open_txns.append(None)
        if gate.resizing or gate.quiescing:
            open_txns.pop()
            gate.wait()
            return self.read_expiry(slot)
        txn: Any = None
        try:
            txn = env.begin(self._records_db, None, False, True)  # buffers: valid until abort
            data = txn.get(slot)
            return None if data is None else record_expires(data, slot)
        except lmdb.MapResizedError:
            pass
        except lmdb.ReadersFullError as exc:
            if self._reaped_dead_readers():
                return self.read_expiry(slot)
            raise translate_error(exc, self.path) from exc
        except lmdb.Error as exc:
            raise translate_error(exc, self.path) from exc
        finally:
            if txn is not None:
                txn.abort()
            open_txns.pop()
        self._wait_or_adopt_resize()
        return self.read_expiry(slot)

    def _reaped_dead_readers(self) -> bool:
        """The reader table was full: free dead processes' slots; whether any was freed (then the
        read runs again; write transactions take no slot)."""
        try:
            return bool(self._checked_env().reader_check())
        except lmdb.Error:
            return False

    def _wait_or_adopt_resize(self) -> None:
        if self._gate.resizing:
            self._gate.wait()  # another thread is resizing
        else:
            self._adopt_map_size()

    def _abort_write(self, raw: lmdb.Transaction) -> None:
        """Abort this thread's write (or child) transaction; see ``_TxnGate.quiesced``."""
        with self._gate.quiesced():
            raw.abort()

    def current_write_txn(self) -> Txn | None:
        """The write transaction this thread holds through :meth:`transaction`, if any."""
        return getattr(self._local, "txn", None)

    def begin_read(self, buffers: bool = True) -> Txn:
        """Start a read transaction; pair with :meth:`end`. Joins this thread's write txn.

        With ``buffers`` values are memoryviews into the map (no copy, valid
        until the transaction ends); without, they are bytes.
        """
        active = getattr(self._local, "txn", None)
        if active is not None:
            return active
        env = self.env if self.generation == _fork_generation[0] else self._checked_env()
        if self._dbs is None:
            return self._begin_read_opening_tables(env, buffers)
        gate = self._gate
        gate.enter()
        try:
            raw = env.begin(None, None, False, True) if buffers else env.begin()
            return Txn(raw, self._dbs, False, buffers)
        except lmdb.MapResizedError:
            gate.leave()
            self._wait_or_adopt_resize()
            return self.begin_read(buffers)
        except lmdb.ReadersFullError as exc:
            gate.leave()
            if self._reaped_dead_readers():
                return self.begin_read(buffers)
            raise translate_error(exc, self.path) from exc
        except lmdb.Error as exc:
            gate.leave()
            raise translate_error(exc, self.path) from exc
        except BaseException:
            gate.leave()
            raise

    def _begin_read_opening_tables(self, env: lmdb.Environment, buffers: bool) -> Txn:
        """begin_read before this process's first write: the read opens the tables itself (see
        _lmdb_tables), holding _tables_lock until it ends (LMDB: one such transaction at a time)."""
        gate = self._gate
        gate.enter()  # before the lock, as a write does (_begin_write, then _keep_tables_open): the other
        lock = self._tables_lock  # order deadlocked close() against a first write (gate.exclusive)
        lock.acquire()
        if self._dbs is not None:  # opened for good meanwhile
            lock.release()
            gate.leave()
            return self.begin_read(buffers)
        raw = None
        try:
            raw = env.begin(None, None, False, buffers)
            txn = Txn(raw, _lmdb_tables.open_existing(env, raw, TABLES), False, buffers)
            txn.tables_lock = lock
            return txn
        except BaseException as exc:
            if raw is not None:
                raw.abort()  # a read: closes the handles it opened
            gate.leave()
            lock.release()
            if isinstance(exc, lmdb.MapResizedError):
                self._wait_or_adopt_resize()
                return self.begin_read(buffers)
            if isinstance(exc, lmdb.ReadersFullError) and self._reaped_dead_readers():
                return self.begin_read(buffers)
            if isinstance(exc, lmdb.Error):
                raise translate_error(exc, self.path) from exc
            raise

    def _keep_tables_open(self, raw: lmdb.Transaction) -> bool:
        """Open the tables for good in ``raw``, this process's first write transaction, and commit
        it empty (nothing is written): LMDB then gives the handles to every later transaction.
        False, with ``raw`` left open, if another thread did it first."""
        with self._tables_lock:  # no read is opening them meanwhile
            if self._dbs is not None:  # between its commit and here, this thread took the writer lock
                return False
            try:
                dbs = _lmdb_tables.open_existing(self.env, raw, TABLES)
                raw.commit()
            except BaseException:
                self._abort_write(raw)
                raise
            self._records_db = dbs[0]  # before _dbs: a read that sees _dbs set uses it
            self._dbs = dbs
            self.txn_holders.pop()  # what _open_env added while they were not open
            return True

    def end(self, txn: Txn) -> None:
        """Finish a read transaction from :meth:`begin_read`."""
        if txn.write:  # the thread's own write txn: committed by transaction()
            return
        txn.raw.abort()
        self._gate.leave()
        if txn.tables_lock is not None:
            txn.tables_lock.release()

    @contextmanager
    def reading(self, buffers: bool = True) -> Iterator[Txn]:
        txn = self.begin_read(buffers)
        try:
            yield txn
        except lmdb.Error as exc:
            raise translate_error(exc, self.path) from exc
        finally:
            self.end(txn)

    def changes_since(self, since: int) -> tuple[int, set[bytes]] | None:
        """(snapshot txn id, lookups of the entries changed after ``since`` up to it), or None
        when some commit in between is not in the change log (see :meth:`Txn.log_changes`).

        One read transaction, which reads the log in the snapshot it describes. A snapshot
        older than ``since`` proves nothing (LMDB's meta page, which ``last_txnid`` reads, can
        be ahead of the id a new read transaction starts from for a moment).
        """
        if self.last_txnid() - since > CHANGE_LOG_KEPT:
            return None  # more commits than the log keeps: no need to look
        changed: set[bytes] = set()
        with self.reading(buffers=False) as txn:
            snapshot = txn.id
            if snapshot < since or snapshot - since > CHANGE_LOG_KEPT:
                return None
            for txn_id in range(since + 1, snapshot + 1):
                lookups = txn.logged_changes(txn_id)
                if lookups is None:
                    return None
                changed.update(lookups)
        return snapshot, changed

    def write(self, work: Callable[[Txn], T], savepoint: bool = False) -> T:
        """Run ``work`` in one write transaction and commit it.

        Inside :meth:`transaction` the thread's open transaction is reused;
        with ``savepoint``, in a child transaction, so that ``work`` raising
        undoes its own writes (it may raise after writing). When the map is
        full the transaction is aborted, the map grown and ``work`` run again,
        so ``work`` must only touch the database.
        """
        active = getattr(self._local, "txn", None)
        if active is not None:
            try:
                if savepoint:
                    with self.transaction() as child:  # nested: a savepoint
                        return work(child)
                return work(active)
            except lmdb.MapFullError as exc:
                self._local.failed = self._local.map_full = True
                raise _outgrew_map(self.path) from exc
            except lmdb.Error as exc:
                self._local.failed = True
                raise translate_error(exc, self.path) from exc
        while True:
            txn = self._begin_write()
            try:
                result = work(txn)
                txn.log_changes()
                txn.raw.commit()
                return result
            except lmdb.MapFullError:
                self._abort_write(txn.raw)
                self._gate.leave()
                txn = None  # type: ignore[assignment]
                self._grow_map()
            except lmdb.Error as exc:
                self._abort_write(txn.raw)
                raise translate_error(exc, self.path) from exc
            except BaseException:
                self._abort_write(txn.raw)
                raise
            finally:
                if txn is not None:
                    self._gate.leave()

    def _begin_write(self) -> Txn:
        env = self._checked_env()
        self._refuse_if_deleted()
        gate = self._gate
        while True:
            gate.enter()
            gate.write_begins.append(None)
            try:
                raw = env.begin(None, None, True, True)
                if self._dbs is not None or not self._keep_tables_open(raw):
                    return Txn(raw, self._dbs, True)  # type: ignore[arg-type]
                gate.leave()  # the tables' empty commit: begin again
            except lmdb.MapResizedError:
                gate.leave()
                self._wait_or_adopt_resize()
            except lmdb.Error as exc:
                gate.leave()
                raise translate_error(exc, self.path) from exc
            except BaseException:
                gate.leave()
                raise
            finally:
                gate.write_begins.pop()

    def _refuse_if_deleted(self) -> None:
        """Refuse to write into a data file that was unlinked (the directory deleted under an open
        store): LMDB would go on committing into it and everything written would vanish at close."""
        if os.fstat(self._data_fd).st_nlink == 0:
            raise StorageError(errno.ENOENT, f"database {self.path!r} was deleted while open: its data file "
                                             "is gone, so nothing written now would be kept")

    @contextmanager
    def transaction(self) -> Iterator[Txn]:
        """A write transaction held by this thread.

        A nested call opens an LMDB child transaction (a savepoint): if its
        block raises, only its writes are rolled back.
        """
        local = self._local
        active = getattr(local, "txn", None)
        if active is not None:
            yield from self._savepoint(local, active)
            return
        self._grow_map_if_half_full()
        txn = self._begin_write()
        local.txn, local.failed, local.map_full = txn, False, False
        self.txn_holders.append(None)
        try:
            yield txn
        except BaseException:
            self._abort_write(txn.raw)
            raise
        else:
            if local.failed:
                self._abort_write(txn.raw)
                raise TransactionError(
                    f"database {self.path!r}: an operation in the transaction failed, so it was rolled back"
                )
            try:
                txn.log_changes()
                txn.raw.commit()
            except lmdb.MapFullError as exc:  # the change log's row or the commit itself
                self._abort_write(txn.raw)
                local.map_full = True
                raise _outgrew_map(self.path) from exc
            except lmdb.Error as exc:
                self._abort_write(txn.raw)
                raise translate_error(exc, self.path) from exc
        finally:
            local.txn = None
            self.txn_holders.pop()
            self._gate.leave()
            if local.map_full:
                self._grow_map()

    def _savepoint(self, local: threading.local, parent: Txn) -> Iterator[Txn]:
        try:
            child = Txn(self.env.begin(None, parent.raw, True, True), self._dbs, True)
        except lmdb.Error as exc:
            raise translate_error(exc, self.path) from exc
        local.txn = child
        try:
            yield child
        except BaseException:
            self._abort_write(child.raw)
            raise
        else:
            if local.failed:  # the whole transaction is lost: the outermost level reports it
                self._abort_write(child.raw)
            else:
                child.raw.commit()
                parent.absorb(child)
        finally:
            local.txn = parent

    # -- map growth -------------------------------------------------------------

    def _adopt_map_size(self) -> None:
        """Another process grew the store past our map: map it (no txn may be open here)."""
        with self._gate.exclusive():
            _map_for_data(self._checked_env(), self.page_size, 1)

    def _grow_map(self) -> None:
        with self._gate.exclusive():
            _map_for_data(self._checked_env(), self.page_size, 2)  # doubles while a transaction keeps outgrowing it

    def _grow_map_if_half_full(self) -> None:
        info = self._env_info()
        if (info["last_pgno"] + 1) * self.page_size * 2 > info["map_size"]:
            self._grow_map()

    # -- maintenance helpers -----------------------------------------------------

    def sync(self) -> None:
        """Flush written data to disk (for the 'fast' durability mode)."""
        env = self._checked_env()
        self._gate.enter()
        try:
            env.sync(True)
        except lmdb.Error as exc:
            raise translate_error(exc, self.path) from exc
        finally:
            self._gate.leave()

    def info(self) -> dict[str, int]:
        info = self._env_info()
        return {
            "map_size": info["map_size"],
            "bytes_used": (info["last_pgno"] + 1) * self.page_size,
            "readers_in_use": info["num_readers"],
            "max_readers": info["max_readers"],
        }

    def file_size(self) -> int:
        return os.path.getsize(os.path.join(self.path, DATA_FILE))

    def mark_initialised(self) -> None:
        marker = os.path.join(self.path, MARKER_FILE)
        if not os.path.exists(marker):
            fd = os.open(marker, os.O_CREAT | os.O_WRONLY, FILE_MODE)
            os.close(fd)


def _outgrew_map(path: str) -> StorageFullError:
    return StorageFullError(
        errno.ENOSPC,
        f"database {path!r}: the transaction outgrew the map; it was rolled back and the map grown, "
        "run the transaction again",
    )


def _directory_identity(path: str) -> tuple[int, int]:
    st = os.stat(path)
    return st.st_dev, st.st_ino
