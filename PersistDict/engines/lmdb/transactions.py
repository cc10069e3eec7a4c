"""Storage's transactions (a mixin of Storage, env.py): reads, writes with their map-growth retry,
transaction() with its savepoints, and the opening of an existing store's tables by its reads
until the process's first write (tables.py)."""

from __future__ import annotations

import errno
import os
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, TypeVar

import lmdb

from ...exceptions import StorageError, TransactionError
from . import tables as _lmdb_tables
from .errors import outgrew_map, translate_error
from .feed import fork_generation as _fork_generation
from .gate import TxnGate
from .txn import TABLES, Txn

T = TypeVar("T")


UNLINK_CHECK_EVERY = 256  # writes between two reads of the data file's link count (see _refuse_if_deleted)


class Transactions:
    """begin_read/end/reading, write, transaction(); see Storage for the state they use."""

    path: str
    env: lmdb.Environment
    generation: int
    txn_holders: list[None]
    _gate: TxnGate
    _local: threading.local
    _tables_lock: Any
    _dbs: tuple[Any, ...] | None
    _records_db: Any
    _data_fd: int
    _dir_fd: int
    _dir_mtime: int
    _writes_unchecked: int

    if TYPE_CHECKING:  # Storage's
        def _checked_env(self) -> lmdb.Environment: ...
        def _adopt_map_size(self) -> None: ...
        def _grow_map(self) -> None: ...
        def _grow_map_if_half_full(self) -> None: ...

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
        if self.generation != _fork_generation[0]:
            self._checked_env()
        if self._dbs is None:
            return self._begin_read_opening_tables(buffers)
        gate = self._gate
        gate.enter()
        # read once past the gate: a compaction (copies.py) replaces both while the gate holds us back
        env, dbs = self.env, self._dbs
        if dbs is None:
            gate.leave()
            return self.begin_read(buffers)
        try:
            raw = env.begin(None, None, False, True) if buffers else env.begin()
            return Txn(raw, dbs, False, buffers)
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

    def _begin_read_opening_tables(self, buffers: bool) -> Txn:
        """begin_read before this process's first write: the read opens the tables itself (see
        tables.py), holding _tables_lock until it ends (LMDB: one such transaction at a time)."""
        # The gate first, then the lock, as a first write takes them (_begin_write, then
        # _keep_tables_open): the other order deadlocked a close() (the gate held back for it)
        # against a first write waiting for a read that waited at the gate.
        gate = self._gate
        gate.enter()
        env = self.env  # past the gate: see begin_read
        lock = self._tables_lock
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
                raise outgrew_map(self.path) from exc
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
        self._checked_env()
        self._refuse_if_deleted()
        gate = self._gate
        while True:
            gate.enter()
            gate.write_begins.append(None)
            env = self.env  # past the gate: a compaction (copies.py) replaces it while the gate holds us back
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
        store): LMDB would go on committing into it and everything written would vanish at close.

        The data file's link count is read when the directory changed (an unlink changes its mtime;
        removed, it has no link) and every UNLINK_CHECK_EVERY writes else: on ext4 a stat of a file
        just fdatasync'ed takes ~35 us (a fifth of a 'safe' set), one of its directory nothing."""
        directory = os.fstat(self._dir_fd)
        self._writes_unchecked += 1
        if (directory.st_mtime_ns == self._dir_mtime and directory.st_nlink
                and self._writes_unchecked < UNLINK_CHECK_EVERY):
            return
        self._writes_unchecked = 0
        if not directory.st_nlink or os.fstat(self._data_fd).st_nlink == 0:
            raise StorageError(errno.ENOENT, f"database {self.path!r} was deleted while open: its data file "
                                             "is gone, so nothing written now would be kept")
        self._dir_mtime = directory.st_mtime_ns

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
                raise outgrew_map(self.path) from exc
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
