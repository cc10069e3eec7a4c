"""The one place where LMDB's and the OS's errors become PersistDict's (engines/lmdb only)."""

from __future__ import annotations

import errno

import lmdb

from ...exceptions import (
    ClosedError,
    CorruptedDatabaseError,
    DatabasePermissionError,
    StorageError,
    StorageFullError,
)


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


def outgrew_map(path: str) -> StorageFullError:
    return StorageFullError(
        errno.ENOSPC,
        f"database {path!r}: the transaction outgrew the map; it was rolled back and the map grown, "
        "run the transaction again",
    )
