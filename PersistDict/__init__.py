"""PersistDict: a dict on disk, shared safely by every thread and process on a host."""

from loguru import logger

from . import serializers
from ._core import Metadata, PersistDict
from .engines.base import CheckReport
from ._codec.keys import canonical_key_serializer, canonical_key_unserializer
from ._readable import DamagedEntry, ReadableItems
from ._codec.record import SPEEDUPS
from .exceptions import (
    AlreadyCalledError,
    ClosedError,
    ConflictError,
    CodecError,
    CodecMismatchError,
    CodecMismatchWarning,
    CorruptedDatabaseError,
    CorruptedRecordError,
    DatabasePermissionError,
    DestinationNotEmptyError,
    ExportFormatError,
    EncryptionError,
    InsecureDatabaseWarning,
    KeyEncodingError,
    KeyNotPicklableError,
    LockTimeoutError,
    NotADatabaseDirectoryError,
    PersistDictError,
    ServerUnavailableError,
    StorageError,
    StorageFullError,
    StoreInUseError,
    TamperedRecordError,
    TransactionError,
    WrongEncryptionKeyError,
)

# A library logs under its own name and stays quiet unless the user opts in.
logger.disable("PersistDict")

__version__ = "1.0.0"

__all__ = [
    "AlreadyCalledError",
    "CheckReport",
    "ClosedError",
    "ConflictError",
    "CodecError",
    "CodecMismatchError",
    "CodecMismatchWarning",
    "CorruptedDatabaseError",
    "CorruptedRecordError",
    "DamagedEntry",
    "DatabasePermissionError",
    "DestinationNotEmptyError",
    "ExportFormatError",
    "EncryptionError",
    "InsecureDatabaseWarning",
    "KeyEncodingError",
    "KeyNotPicklableError",
    "LockTimeoutError",
    "Metadata",
    "NotADatabaseDirectoryError",
    "PersistDict",
    "PersistDictError",
    "ReadableItems",
    "SPEEDUPS",
    "ServerUnavailableError",
    "StorageError",
    "StorageFullError",
    "StoreInUseError",
    "TamperedRecordError",
    "TransactionError",
    "WrongEncryptionKeyError",
    "canonical_key_serializer",
    "canonical_key_unserializer",
    "serializers",
]
