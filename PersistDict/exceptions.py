"""The PersistDict exception hierarchy.

Every error raised on purpose by the library derives from :class:`PersistDictError`
and also from the builtin exception a caller would naturally catch, so
``except PermissionError`` and ``except PersistDictError`` both work.
A missing key is always a plain ``KeyError(key)``.
"""

from __future__ import annotations

import pickle


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


class StoreInUseError(PersistDictError, BlockingIOError):
    """The operation needs the store to itself (compaction, restore) and another process has it open."""


class DestinationNotEmptyError(PersistDictError, FileExistsError):
    """A backup or restore would overwrite a directory or store that holds something (see ``overwrite``)."""


class ExportFormatError(PersistDictError, ValueError):
    """A file given to ``import_from`` is not a PersistDict export, or one of its lines is damaged
    (the message names the line)."""


class TransactionError(PersistDictError, RuntimeError):
    """A transaction was used wrongly (for example across threads) or had to be aborted."""


class LockTimeoutError(PersistDictError, TimeoutError):
    """``d.lock(...)`` was not acquired: another holder kept it past ``timeout`` (or ``blocking=False``)."""


class ConflictError(PersistDictError, RuntimeError):
    """``d.track_changes(key)`` found the entry written by someone else since it was read: nothing
    was written; read it again and redo the change."""


class AlreadyCalledError(PersistDictError, RuntimeError, AssertionError):
    """``d(...)`` was called a second time on the same database (see ``clear()``); also an
    AssertionError, which PersistDict 0.2.x raised there."""


class CodecMismatchWarning(UserWarning):
    """The database was written with another value codec than the one it is opened with."""


class InsecureDatabaseWarning(UserWarning):
    """The database directory or data file may be written by another user (group/others write
    permission, or another owner than this process's user or root): with pickle or dill values,
    that user can run code in this process."""


class EncryptionError(PersistDictError, ValueError):
    """Encryption is misconfigured (a missing key source, a damaged key record, a rotation in the way)."""


class WrongEncryptionKeyError(EncryptionError):
    """The encryption key is not one of the store's keys (its key check failed); nothing was changed."""


class KeyNotPicklableError(EncryptionError, pickle.PicklingError):
    """Pickling would write an encryption key in clear (a key given as bytes), or its source cannot be pickled."""


class TamperedRecordError(CorruptedRecordError):
    """An encrypted record failed authentication: altered, or moved from another entry or store."""
