"""The one place where redis-py's errors become PersistDict's (engines/redis only).

Messages name the server as ``redis://host:port/db`` (or the socket path): never the password or
user name a URL may carry.
"""

from __future__ import annotations

import errno
from typing import Any
from urllib.parse import urlsplit

import redis

from ...exceptions import DatabasePermissionError, ServerUnavailableError, StorageError, StorageFullError


def server_name(url: str | None, client: Any) -> str:
    """``redis://host:port/db`` of ``url`` or of ``client``'s connection settings, without credentials."""
    if url and url.split("://", 1)[-1].strip("/"):
        parts = urlsplit(url)
        if parts.scheme == "unix":
            return f"unix://{parts.path}"
        host = parts.hostname or "localhost"
        try:
            port: Any = parts.port or 6379
        except ValueError:  # not a number: named as given (the netloc's credentials stay out)
            port = parts.netloc.rpartition("@")[2].rpartition(":")[2]
        database = parts.path.strip("/") or "0"
        return f"{parts.scheme}://{host}:{port}/{database}"
    kwargs = getattr(getattr(client, "connection_pool", None), "connection_kwargs", None) or {}
    if "path" in kwargs:
        return f"unix://{kwargs['path']}"
    if not kwargs and hasattr(client, "get_default_node"):  # a cluster client
        node = client.get_default_node()
        return f"redis://{node.host}:{node.port}/0"
    return f"redis://{kwargs.get('host', 'localhost')}:{kwargs.get('port', 6379)}/{kwargs.get('db', 0)}"


def translate_error(exc: BaseException, server: str) -> BaseException:
    """A PersistDictError (also the matching builtin) for a redis-py error, naming ``server``."""
    text = str(exc)
    if isinstance(exc, (redis.ConnectionError, redis.TimeoutError)):
        what = "timed out" if isinstance(exc, redis.TimeoutError) else "cannot be reached"
        return ServerUnavailableError(errno.ECONNREFUSED, f"redis server {server} {what} ({_scrub(text)})")
    if isinstance(exc, redis.ReadOnlyError) or text.startswith("READONLY"):
        return DatabasePermissionError(errno.EROFS, f"redis server {server} is a read-only replica: "
                                                    "connect to the primary to write")
    if isinstance(exc, redis.OutOfMemoryError) or text.startswith("OOM"):
        return StorageFullError(errno.ENOSPC, f"redis server {server} is out of memory (maxmemory): "
                                              "free memory or raise maxmemory")
    if isinstance(exc, redis.AuthenticationError) or "NOAUTH" in text or "WRONGPASS" in text:
        return DatabasePermissionError(errno.EACCES, f"redis server {server} refused the credentials")
    return StorageError(errno.EIO, f"redis server {server}: {_scrub(text)}")


def _scrub(text: str) -> str:
    """redis-py's message without any URL it quotes (which could carry a password)."""
    return " ".join(word for word in text.split() if "://" not in word and "@" not in word)
