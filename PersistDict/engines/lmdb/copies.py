"""Copies of a store's data file: a backup (a consistent snapshot taken while other threads and
processes go on reading and writing), compaction (a compact copy swapped in) and restore (a
backup put in place of a store).

LMDB writes the copy (``mdb_env_copyfd2``, compacting: only the pages in use, renumbered) from one
read transaction, so the copy is one snapshot. It writes into a pipe from a helper thread (py-lmdb
releases the GIL meanwhile) and this thread writes the file, so the caller's ``progress(done,
total)`` runs in its own thread, counting bytes. A copy is written under a temporary name and
renamed into place once it is complete and synced: a crash leaves the old file or the new one.
"""

from __future__ import annotations

import errno
import os
import shutil
import threading
from collections.abc import Callable
from typing import Any

import lmdb

from ...exceptions import DestinationNotEmptyError, NotADatabaseDirectoryError, StoreInUseError
from .env import DIR_MODE, FILE_MODE, MARKER_FILE, Storage
from .errors import translate_error
from .feed import DATA_FILE
from .housekeeping import LEASE
from .mutex import PREFIX as MUTEX_PREFIX
from .txn import TABLES
from .users import UsersLock

Progress = Callable[[int, int], Any] | None

_CHUNK = 1 << 20
_COMPACTING = "compacting.tmp"  # inside the store's directory: the rename stays on one file system
_RESTORING = "restoring.tmp"


def _table_pages(env: lmdb.Environment, raw: lmdb.Transaction) -> int:
    """Pages a compact copy of ``raw``'s snapshot takes: the two meta pages and every table's pages."""
    pages = 2
    stats = [env.stat()]  # the main table: it names the others
    for name in TABLES:
        try:
            stats.append(raw.stat(env.open_db(name.encode(), txn=raw, create=False)))
        except lmdb.NotFoundError:
            continue
    for stat in stats:
        pages += stat["branch_pages"] + stat["leaf_pages"] + stat["overflow_pages"]
    return pages


def _copy(env: lmdb.Environment, raw: lmdb.Transaction, target: str, compact: bool, progress: Progress,
          total: int) -> int:
    """Write ``raw``'s snapshot of ``env`` to the new file ``target`` (synced); its size."""
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, FILE_MODE)
    try:
        read_end, write_end = os.pipe()  # after the open: a refused target leaks no pipe
    except BaseException:
        os.close(fd)
        raise
    errors: list[BaseException] = []

    def run() -> None:
        try:
            if compact:
                env.copyfd(write_end, compact=True, txn=raw)
            else:  # py-lmdb takes a transaction only to compact: LMDB's copy begins its own snapshot
                env.copyfd(write_end)
        except BaseException as exc:  # noqa: BLE001 - raised in the caller's thread below
            errors.append(exc)
        finally:
            os.close(write_end)

    thread = threading.Thread(target=run, name="PersistDict copy", daemon=True)
    done = 0
    try:
        thread.start()
        try:
            while True:
                chunk = os.read(read_end, _CHUNK)
                if not chunk:
                    break
                view = memoryview(chunk)
                while view:
                    view = view[os.write(fd, view):]
                done += len(chunk)
                if progress is not None:
                    progress(done, max(total, done))
        finally:
            os.close(read_end)  # stopped early (a failed write, progress raised): the copy meets EPIPE and ends
            thread.join()
        if errors:
            raise errors[0]
        os.fsync(fd)
    finally:
        os.close(fd)
    if progress is not None:
        progress(done, done)
    return done


def _sync_directory(path: str) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _settle(directory: str, backup: bool) -> None:
    """Prepare the copy in ``directory`` to be opened as a store: drop its change log (a copy's txn
    ids start again, the rows would vouch for commits they did not see) and, for a backup or a
    restore, the maintenance lease and the named locks of the processes that used the original."""
    size = os.path.getsize(os.path.join(directory, DATA_FILE))
    env = lmdb.open(directory, map_size=2 * size + (64 << 20), subdir=True, max_dbs=len(TABLES) + 1,
                    mode=FILE_MODE, sync=True, metasync=True)
    try:
        with env.begin(write=True) as txn:
            changes = env.open_db(b"changes", txn=txn, create=False)
            txn.drop(changes, delete=False)
            if backup:
                meta = env.open_db(b"meta", txn=txn, create=False)
                txn.delete(LEASE, db=meta)
                with txn.cursor(meta) as cursor:
                    names = [bytes(key) for key in cursor.iternext(keys=True, values=False)
                             if bytes(key).startswith(MUTEX_PREFIX)]
                for name in names:
                    txn.delete(name, db=meta)
    finally:
        env.close()
    os.remove(os.path.join(directory, "lock.mdb"))  # its reader table is the settling process's


def _mark(directory: str) -> None:
    os.close(os.open(os.path.join(directory, MARKER_FILE), os.O_CREAT | os.O_WRONLY | os.O_CLOEXEC, FILE_MODE))


def _empty_destination(dest: str) -> None:
    if os.path.exists(dest):
        if not os.path.isdir(dest):
            raise NotADatabaseDirectoryError(errno.ENOTDIR, f"backup destination {dest!r} exists and is not a directory")
        if os.listdir(dest):
            raise DestinationNotEmptyError(f"backup destination {dest!r} is not empty: "
                                                         "give a new or empty directory")
    os.makedirs(dest, mode=DIR_MODE, exist_ok=True)


def backup(storage: Storage, dest: str, compact: bool, progress: Progress) -> int:
    """Copy the store to the new or empty directory ``dest`` as one snapshot; the copy's size."""
    _empty_destination(dest)
    partial = os.path.join(dest, DATA_FILE + ".partial")
    try:
        # one snapshot (``raw``, or the plain copy's own, begun while this one is open), counted by the
        # gate: no map resize under the copy
        with storage.reading() as txn:
            env, raw = storage.env, txn.raw
            info = env.info()
            total = (_table_pages(env, raw) if compact else info["last_pgno"] + 1) * storage.page_size
            size = _copy(env, raw, partial, compact, progress, total)
        os.replace(partial, os.path.join(dest, DATA_FILE))
        _settle(dest, backup=True)
        _mark(dest)
        _sync_directory(dest)
    except lmdb.Error as exc:
        raise translate_error(exc, storage.path) from exc
    finally:
        if os.path.exists(partial):
            os.remove(partial)
    return size


def _foreign_readers(env: lmdb.Environment) -> set[int]:
    """Processes other than this one with a slot in LMDB's reader table (dead ones reaped first):
    what the users lock cannot see of a process that opened the store without it."""
    env.reader_check()
    pids = set()
    for line in env.readers().splitlines()[1:]:
        fields = line.split()
        if fields and fields[0].isdigit():
            pids.add(int(fields[0]))
    pids.discard(os.getpid())
    return pids


def in_use_error(path: str, doing: str) -> StoreInUseError:
    return StoreInUseError(f"cannot {doing} {path!r}: another process (or this one) has it open "
                                        "(close it there first)")


def compact(storage: Storage, progress: Progress) -> tuple[int, int]:
    """Replace the data file by a compact copy; (bytes before, bytes after). Refused while another
    process has the store open; this process's other threads wait for it (no write is lost: none
    can start while the copy is taken and swapped in)."""
    lock = storage.users_lock
    if not lock.try_exclusive():
        raise in_use_error(storage.path, "compact")
    work = os.path.join(storage.path, _COMPACTING)
    try:
        env = storage._checked_env()
        if _foreign_readers(env):
            raise in_use_error(storage.path, "compact")
        shutil.rmtree(work, ignore_errors=True)  # left by a compaction that was killed
        os.makedirs(work, mode=DIR_MODE)
        before = storage.file_size()
        with storage._gate.exclusive():  # no transaction of this process is open, none starts
            raw = env.begin()
            try:
                total = _table_pages(env, raw) * storage.page_size
                _copy(env, raw, os.path.join(work, DATA_FILE), True, progress, total)
            finally:
                raw.abort()
            _settle(work, backup=False)
            storage.swapping = True
            try:
                if storage._dbs is None:  # _open_env adds this marker again (tables.py)
                    storage.txn_holders.remove(None)
                storage._close_env()
                os.replace(os.path.join(work, DATA_FILE), os.path.join(storage.path, DATA_FILE))
                _sync_directory(storage.path)
                storage._open_env()
                # the tables for good, as before the swap (a write here waits for no other process):
                # a read that raced the swap then finds handles of the new environment
                dbs = tuple(storage.env.open_db(name.encode(), create=False) for name in TABLES)
                storage._records_db = dbs[0]
                storage._dbs = dbs
                storage.txn_holders.remove(None)
            finally:
                storage.swapping = False
        return before, storage.file_size()
    except lmdb.Error as exc:
        raise translate_error(exc, storage.path) from exc
    finally:
        shutil.rmtree(work, ignore_errors=True)
        lock.share(wait=False)  # a downgrade: always granted


def _open_backup(source: str) -> lmdb.Environment:
    if not os.path.isfile(os.path.join(source, DATA_FILE)):
        raise NotADatabaseDirectoryError(errno.ENOENT, f"{source!r} is not a PersistDict store or backup "
                                                       f"(no {DATA_FILE})")
    try:
        return lmdb.open(source, subdir=True, readonly=True, max_dbs=len(TABLES) + 1, map_size=1 << 20, lock=True)
    except lmdb.ReadonlyError:  # a backup on read-only media: nobody writes it
        return lmdb.open(source, subdir=True, readonly=True, max_dbs=len(TABLES) + 1, map_size=1 << 20, lock=False)


def _open_source(source: str) -> lmdb.Environment:
    """The store or backup at ``source``, opened read-only and checked to be a PersistDict store."""
    try:
        env = _open_backup(source)
    except lmdb.Error as exc:
        raise translate_error(exc, source) from exc
    try:
        with env.begin() as raw:
            if raw.get(b"meta") is None or raw.get(b"records") is None:
                raise NotADatabaseDirectoryError(errno.EINVAL, f"{source!r} is an LMDB store, not a PersistDict one")
    except BaseException:
        env.close()
        raise
    return env


def restore(source: str, path: str, overwrite: bool, progress: Progress) -> None:
    """Put the store or backup at ``source`` in place of the store at ``path``."""
    if os.path.exists(path) and not os.path.isdir(path):
        raise NotADatabaseDirectoryError(errno.ENOTDIR, f"database path {path!r} exists and is not a directory")
    env = _open_source(source)  # first: a source that is no store leaves nothing created at ``path``
    try:
        os.makedirs(path, mode=DIR_MODE, exist_ok=True)
        lock = UsersLock(path)
        work = os.path.join(path, _RESTORING)
        try:
            if not lock.try_exclusive():
                raise in_use_error(path, "restore into")
            if not overwrite and _holds_entries(path):
                raise DestinationNotEmptyError(f"database {path!r} is not empty: pass overwrite=True "
                                               "(--overwrite) to replace it")
            with env.begin() as raw:
                total = _table_pages(env, raw) * env.stat()["psize"]
                shutil.rmtree(work, ignore_errors=True)
                os.makedirs(work, mode=DIR_MODE)
                _copy(env, raw, os.path.join(work, DATA_FILE), True, progress, total)
            env.close()
            _settle(work, backup=True)
            os.replace(os.path.join(work, DATA_FILE), os.path.join(path, DATA_FILE))
            _mark(path)
            _sync_directory(path)
        except lmdb.Error as exc:
            raise translate_error(exc, path) from exc
        finally:
            shutil.rmtree(work, ignore_errors=True)
            lock.close()
    finally:
        env.close()  # closing twice is a no-op in py-lmdb


def _holds_entries(path: str) -> bool:
    if not os.path.exists(os.path.join(path, DATA_FILE)):
        return False
    env = _open_backup(path)  # read-only; nobody else has it open (the caller holds the users lock)
    try:
        with env.begin() as raw:
            if raw.get(b"records") is None:  # not a PersistDict store: empty only if it holds nothing at all
                return bool(env.stat()["entries"])
            return bool(raw.stat(env.open_db(b"records", txn=raw, create=False))["entries"])
    finally:
        env.close()

