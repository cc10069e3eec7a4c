"""The PersistDict exception hierarchy.

Every error raised on purpose by the library derives from :class:`PersistDictError`
and also from the builtin exception a caller would naturally catch, so
``except PermissionError`` and ``except PersistDictError`` both work.
A missing key is always a plain ``KeyError(key)``.
"""

from __future__ import annotations


class PersistDictError(Exception):
    """Root of every error raised on purpose by PersistDict."""


class ClosedError(PersistDictError, ValueError):
    """The instance was closed; open a new one to keep using the database."""


class KeyEncodingError(PersistDictError, TypeError):
    """A key cannot be encoded (unhashable, unpicklable, wrong type for the key codec)."""


class CodecError(PersistDictError, ValueError):
    """A value could not be serialized or deserialized by the configured codec."""


class CodecMismatchError(CodecError):
    """The database was written with different key or value codecs than the ones given."""


class CorruptedRecordError(PersistDictError, ValueError):
    """A record failed its checksum or could not be parsed; the key is named, never the value."""


class StorageError(PersistDictError, OSError):
    """The storage engine (LMDB) failed; the message names the database path."""


class StorageFullError(StorageError):
    """The disk (or the file size limit) is full; free space and retry."""


class ServerUnavailableError(StorageError, ConnectionError):
    """The store's server (Redis) cannot be reached: refused, timed out or lost; retry when it is back."""


class CorruptedDatabaseError(StorageError):
    """The database files are damaged (truncated, overwritten, not LMDB)."""


class DatabasePermissionError(StorageError, PermissionError):
    """The process may not read or write the database directory or its files."""


class NotADatabaseDirectoryError(StorageError, NotADirectoryError):
    """The database path exists and is not a directory."""


class TransactionError(PersistDictError, RuntimeError):
    """A transaction was used wrongly (for example across threads) or had to be aborted."""


class LockTimeoutError(PersistDictError, TimeoutError):
    """``d.lock(...)`` was not acquired: another holder kept it past ``timeout`` (or ``blocking=False``)."""


class AlreadyCalledError(PersistDictError, RuntimeError, AssertionError):
    """``d(...)`` was called a second time on the same database (see ``clear()``); also an
    AssertionError, which PersistDict 0.2.x raised there."""


class CodecMismatchWarning(UserWarning):
    """The database was written with another value codec than the one it is opened with."""


class InsecureDatabaseWarning(UserWarning):
    """The database directory or data file may be written by another user (group/others write
    permission, or another owner than this process's user or root): with pickle or dill values,
    that user can run code in this process."""
