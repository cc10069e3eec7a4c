"""Reader slots left by dead processes, reaped when LMDB's reader table is full.

LMDB frees a killed process's slots only when someone calls ``mdb_reader_check``; Storage does at
every open and whenever a read finds the table full. A process that is not open yet cannot: py-lmdb's
``Environment`` begins a read transaction in its constructor, which itself needs a slot, so a table
full of dead slots made the store unopenable for every new process. :func:`reap_dead_readers` runs the
check through LMDB's C API as py-lmdb bundles it (exported as ``mdb09_*`` / ``mdb10_*``), on an
environment handle that never begins a transaction.
"""

from __future__ import annotations

import ctypes
import os

from loguru import logger

_MDB_RDONLY = 0x20000  # lmdb.h: the handle never writes the data file
_FILE_MODE = 0o600


def _bundled_lmdb() -> ctypes.CDLL | None:
    try:
        from lmdb import cpython  # the C extension that links LMDB in

        return ctypes.CDLL(cpython.__file__)
    except (ImportError, OSError):  # the cffi build, or a system LMDB: nothing we can call
        return None


def reap_dead_readers(path: str) -> int:
    """Free the reader slots of dead processes in the store at ``path``, which this process must not
    have open (LMDB's fcntl locks belong to the process: closing a second handle drops the first's).
    Returns how many were freed; 0 when it cannot tell."""
    lib = _bundled_lmdb()
    if lib is None:
        return 0
    for engine in ("mdb09", "mdb10"):  # the data file's format picks the engine; the wrong one refuses it
        try:
            functions = [getattr(lib, f"{engine}_{name}")
                         for name in ("env_create", "env_set_mapsize", "env_open", "reader_check", "env_close")]
        except AttributeError:
            continue
        create, set_mapsize, open_, reader_check, close = functions
        env = ctypes.c_void_p()
        if create(ctypes.byref(env)):
            return 0
        try:
            set_mapsize(env, ctypes.c_size_t(1 << 20))  # LMDB maps at least the data it holds
            if open_(env, os.fsencode(path), ctypes.c_uint(_MDB_RDONLY), ctypes.c_uint(_FILE_MODE)):
                continue
            dead = ctypes.c_int(0)
            if reader_check(env, ctypes.byref(dead)):
                return 0
            logger.info("freed {} reader slots of dead processes in {!r}", dead.value, path)
            return dead.value
        finally:
            close(env)
    return 0
