"""Storage: the LMDB environment of one store directory.

One :class:`Storage` per database directory per process, shared by every
engine on that path (py-lmdb refuses a second open of the same files).
It owns opening (file checks), the named tables, transactions, map growth and
fork safety; txn.py is a transaction seen as tables of bytes, gate.py the
count of open transactions, errors.py the translation of LMDB's errors.
"""

from __future__ import annotations

import errno
import mmap
import os
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

import lmdb
from loguru import logger

from ...exceptions import (
    ClosedError,
    CorruptedDatabaseError,
    DatabasePermissionError,
    NotADatabaseDirectoryError,
)
from .errors import translate_error
from .feed import DATA_FILE, MetaPageFeed
from .feed import fork_generation as _fork_generation
from .gate import TxnGate
from .transactions import Transactions
from .layout import check_final_pages_are_free
from .permissions import warn_if_others_can_write
from .readers import reap_dead_readers
from . import tables as _lmdb_tables
from .txn import TABLES, Txn
from .users import UsersLock

T = TypeVar("T")

LOCK_FILE = "lock.mdb"
# Written once the database holds its format record: if it exists and the
# data file looks new, the data file was truncated or replaced.
MARKER_FILE = "persistdict.marker"

MAX_READERS = 8192  # one slot per concurrently open read transaction
DIR_MODE = 0o700
FILE_MODE = 0o600

# durability mode -> (sync, metasync)
DURABILITY = {
    "full": (True, True),  # every acknowledged write survives power loss
    "safe": (True, False),  # survives kill -9; OS crash may undo the last write, never corrupts
    "fast": (False, False),  # survives kill -9; OS crash may lose recent writes or corrupt
}

_OPEN_ATTEMPTS = 100  # see _while_the_map_grows



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


_registry: dict[tuple[int, int], Storage] = {}
_registry_lock = threading.Lock()


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


class Storage(Transactions, MetaPageFeed):
    """The process-wide handle on one database directory; also its change feed (MetaPageFeed)."""

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
        self._gate = TxnGate()
        # one element per thread inside transaction(), and one while the tables are not open for good
        # (see tables.py): reads look at these cases only when it is not empty
        self.txn_holders = []
        self._tables_lock = threading.RLock()
        self.swapping = False  # while compaction replaces the data file: keep the users lock (users.py)
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
        if not self.swapping:  # before mapping the file: a compaction or restore replacing it finishes first
            try:
                self.users_lock = UsersLock(path)
            except OSError as exc:
                raise translate_error(exc, path) from exc
            try:
                self.users_lock.share()
            except BaseException:
                self.users_lock.close()
                raise
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
            self._release_users_lock()
            raise translate_error(exc, path) from exc
        except BaseException:
            self._release_users_lock()
            raise
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
            self._dir_fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
            self._dir_mtime = os.fstat(self._dir_fd).st_mtime_ns
            self._writes_unchecked = 0
        except lmdb.Error as exc:
            self.env.close()
            self._release_users_lock()
            raise translate_error(exc, path) from exc
        except BaseException:
            self.env.close()
            self._release_users_lock()
            raise
        self._meta_map: mmap.mmap | None = None
        self._map_meta_pages()
        self.generation = _fork_generation[0]
        if not self.swapping:  # compaction drops them from the new file before it is swapped in
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

    def _env_info(self) -> dict[str, int]:
        """env.info(), never concurrent with a map resize (LMDB then answers EINVAL)."""
        self._checked_env()
        self._gate.enter()
        try:
            return self.env.info()  # type: ignore[return-value]  # past the gate: see begin_read
        finally:
            self._gate.leave()

    def _close_env(self) -> None:
        # Drop, do not release: a lock-free reader may still hold the views;
        # the map is unmapped when the last reference goes.
        self.views = None
        self._meta_map = None
        os.close(self._data_fd)
        os.close(self._dir_fd)
        if self.generation != _fork_generation[0] and not self._reopening:
            # Inherited from the parent and never used here: closing it would abort
            # the parent's transactions (shared reader slots). Keep it, untouched.
            _inherited_envs.append(self.env)
            self._release_users_lock()  # our fd only: the parent's lock is the same open file description
            return
        self.env.close()
        self._release_users_lock()

    def _release_users_lock(self) -> None:
        if not self.swapping:
            self.users_lock.close()

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
        self._gate = TxnGate()
        self._tables_lock = threading.RLock()
        self._local = threading.local()
        self.txn_holders = []
        self.views = None  # the inherited map is not ours any more

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
        self._checked_env()
        self._gate.enter()
        try:
            self.env.sync(True)  # past the gate: see begin_read
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


def _directory_identity(path: str) -> tuple[int, int]:
    st = os.stat(path)
    return st.st_dev, st.st_ino
