"""Which processes have a store open: a shared lock each opener holds on ``persistdict.users``.

Compaction and restore replace the data file, which a process that has it mapped would go on
using (its writes then lost): they need to know that no other process has the store open, and to
keep new openers out while they work. LMDB's own liveness lock (byte 0 of lock.mdb) cannot tell:
it is a POSIX lock, which a process cannot test without opening lock.mdb, and closing that fd drops
the process's own LMDB locks. So every Storage holds a shared open-file-description lock (Linux
``F_OFD_SETLK``) on a file of its own, for as long as its environment is open. Taking it
exclusively (an upgrade, atomic for OFD locks) succeeds only when no other opener holds it; an
opener waits while someone holds it exclusively (a compaction in progress). A killed process's
lock goes with it. A forked child shares its parent's lock until it reopens the store with its own.
"""

from __future__ import annotations

import errno
import fcntl
import os
import struct
import time

from loguru import logger

USERS_FILE = "persistdict.users"
_FILE_MODE = 0o600
_WAIT_LOG_SECONDS = 5.0  # an opener waiting this long for a compaction says so (once)


def _flock(kind: int) -> bytes:
    # struct flock on Linux (x86-64, arm64): l_type, l_whence, l_start, l_len, l_pid (0 for OFD), padding
    return struct.pack("hhqqi4x", kind, os.SEEK_SET, 0, 1, 0)


class UsersLock:
    """This process's lock on a store's users file (one per open Storage)."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.pid = os.getpid()
        self.fd = os.open(os.path.join(path, USERS_FILE), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, _FILE_MODE)
        self.exclusive = False

    def share(self, wait: bool = True) -> None:
        """Hold the lock shared; with ``wait``, while another process holds it exclusively (a
        compaction or a restore), wait for it to end."""
        started = time.monotonic()
        told = False
        while True:
            try:
                fcntl.fcntl(self.fd, fcntl.F_OFD_SETLK, _flock(fcntl.F_RDLCK))
                self.exclusive = False
                return
            except OSError as exc:
                if exc.errno not in (errno.EAGAIN, errno.EACCES) or not wait:
                    raise
            if not told and time.monotonic() - started > _WAIT_LOG_SECONDS:
                told = True
                logger.warning("opening {!r} waits for another process's compaction or restore to end", self.path)
            time.sleep(0.01)

    def try_exclusive(self) -> bool:
        """Take the lock exclusively if no other opener holds it (an atomic upgrade); whether it did."""
        try:
            fcntl.fcntl(self.fd, fcntl.F_OFD_SETLK, _flock(fcntl.F_WRLCK))
        except OSError as exc:
            if exc.errno in (errno.EAGAIN, errno.EACCES):
                return False
            raise
        self.exclusive = True
        return True

    def close(self) -> None:
        os.close(self.fd)  # the lock goes with the last fd of its open file description
