"""Which engine a store's path names.

``":memory:"``: the in-memory engine (a store of its own, in this process). A ``redis://``,
``rediss://`` or ``unix://`` URL: a namespace on a Redis server (engines/redis, imported only then:
redis-py is an optional extra). Any other path: the directory of an LMDB store. Both are imported with this module, before the mapping's lifecycle
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
from .redis import SCHEMES as REDIS_SCHEMES

MEMORY = ":memory:"


def store_path(database_path: str | os.PathLike[str]) -> str:
    """The path as the store keeps it: ``":memory:"`` as it is, a directory made absolute."""
    path = os.fspath(database_path)
    return path if path == MEMORY or is_redis(path) else os.path.abspath(path)


def is_redis(path: str) -> bool:
    return path.startswith(REDIS_SCHEMES)


def open_engine(path: str, durability: str, map_size: int, key_size_limit: int, namespace: str | None = None,
                client: object = None, strict_reads: bool = False) -> Engine:
    """The engine of the store at ``path`` (from :func:`store_path`); ``namespace``, ``client`` and
    ``strict_reads`` are the Redis engine's."""
    if is_redis(path):
        try:
            from .redis.engine import RedisEngine
        except ImportError as exc:
            raise ImportError(f"{path.split('://')[0]}:// stores need redis-py: pip install 'PersistDict[redis]' "
                              f"({exc})") from exc
        return RedisEngine(path, namespace, client, strict_reads)  # type: ignore[return-value]
    if namespace is not None or client is not None or strict_reads:
        raise ValueError("namespace, client and strict_reads are options of Redis stores (a redis:// path), "
                         f"not of {path!r}")
    if path == MEMORY:
        return MemoryEngine()
    return LmdbEngine(path, durability, map_size, key_size_limit)


def restore_store(source: str, path: str, overwrite: bool, progress: Callable[[int, int], Any] | None) -> None:
    """Put the store or backup at ``source`` in place of the store at ``path`` (a directory)."""
    from .lmdb.copies import restore  # only a store on disk can be restored into

    restore(source, path, overwrite, progress)
