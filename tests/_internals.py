"""The mapping side's private modules that its unit tests reach into (key codec, record codec and its
compiled twin, front cache), gathered in one place: when those modules move, only this file changes.
The LMDB engine's internals have their own such module, tests/engines/lmdb/_lmdb_access.py."""

from __future__ import annotations

import importlib
from types import ModuleType

from PersistDict._codec import record as records
from PersistDict._codec.keys import KeyCodec
from PersistDict._codec.record import HEADER_SIZE, KIND_STR, pack_record, py_record_expires, py_unpack_value
from PersistDict._frontcache.cache import FrontCache

# the modules that child-process scripts import by name
KEYS_MODULE = "PersistDict._codec.keys"
RECORDS_MODULE = "PersistDict._codec.record"
SPEEDUPS_MODULE = "PersistDict._speedups"

__all__ = ["HEADER_SIZE", "KEYS_MODULE", "KIND_STR", "RECORDS_MODULE", "SPEEDUPS_MODULE", "FrontCache", "KeyCodec",
           "compiled_records", "pack_record", "py_record_expires", "py_unpack_value", "records"]


def compiled_records() -> ModuleType | None:
    """The compiled record parsers, or None when they were not built."""
    try:
        return importlib.import_module(SPEEDUPS_MODULE)
    except ImportError:
        return None
