"""What the adapters share: opening the store they were given a path to, and checking names."""

from __future__ import annotations

import os
from typing import Any

from .._core import PersistDict


def open_store(path_or_store: Any, adapter: str) -> tuple[PersistDict[Any, Any], bool]:
    """(the store, whether the adapter opened it and so closes it). A path opens a store of raw
    str/bytes values (``value_serializer=None``): the adapters store JSON text or bytes, so no
    pickle runs when a value is read."""
    if isinstance(path_or_store, PersistDict):
        return path_or_store, False
    if isinstance(path_or_store, (str, os.PathLike)):
        return PersistDict(path_or_store, value_serializer=None, value_unserializer=None), True
    raise TypeError(f"{adapter} takes a PersistDict or a database path, not {type(path_or_store).__name__!r}")


def check_namespace(namespace: Any, adapter: str) -> str:
    """The namespace as the prefix of the adapter's keys ("" for None)."""
    if namespace is None:
        return ""
    if not isinstance(namespace, str):
        raise TypeError(f"{adapter}'s namespace must be a str or None, not {type(namespace).__name__!r}")
    return namespace
