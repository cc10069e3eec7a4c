"""Which engine a store's path names.

``":memory:"``: the in-memory engine (a store of its own, in this process). Any other path: the
directory of an LMDB store. Both are imported with this module, before the mapping's lifecycle
hooks: the engines' fork hooks must run first in a forked child (they reopen the environment,
then the mapping renews its locks and front cache).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from .base import Engine
from .lmdb.engine import LmdbEngine
from .memory import MemoryEngine

MEMORY = ":memory:"


def store_path(database_path: str | os.PathLike[str]) -> str:
    """The path as the store keeps it: ``":memory:"`` as it is, a directory made absolute."""
    path = os.fspath(database_path)
    return path if path == MEMORY else os.path.abspath(path)


def open_engine(path: str, durability: str, map_size: int, key_size_limit: int) -> Engine:
    """The engine of the store at ``path`` (from :func:`store_path`)."""
    if path == MEMORY:
        return MemoryEngine()
    return LmdbEngine(path, durability, map_size, key_size_limit)


def restore_store(source: str, path: str, overwrite: bool, progress: Callable[[int, int], Any] | None) -> None:
    """Put the store or backup at ``source`` in place of the store at ``path`` (a directory)."""
    from .lmdb.copies import restore  # only a store on disk can be restored into

    restore(source, path, overwrite, progress)
