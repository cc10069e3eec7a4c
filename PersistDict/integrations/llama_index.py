"""LlamaIndex adapter (``pip install 'PersistDict[llama-index]'``, on llama-index-core):
:class:`PersistDictKVStore`, a ``BaseKVStore`` for LlamaIndex's KV document store, index store and
ingestion cache, shared by every process that opens the same path."""

from __future__ import annotations

import json
from typing import Any

from llama_index.core.storage.kvstore.types import DEFAULT_BATCH_SIZE, DEFAULT_COLLECTION, BaseKVStore

from .._api.options import ttl_seconds
from ._stores import check_namespace, open_store

__all__ = ["PersistDictKVStore"]

_ABSENT: Any = object()
_SEPARATOR = "\x00"  # between a collection's name and a key: no collection name holds it


class PersistDictKVStore(BaseKVStore):
    """LlamaIndex's key-value store on a PersistDict: ``collection`` -> ``key`` -> a JSON dict.

    ``path_or_store``: a database path (opened with raw str/bytes values, closed by
    :meth:`close`), or an open PersistDict (left open). ``ttl``: seconds an entry is kept (None:
    until deleted). ``namespace``: a prefix of every key in the store, so that it holds other
    data too.

    An entry's key is ``namespace + collection + "\\x00" + key``, and ``get_all(collection)``
    finds a collection's keys by prefix (``PersistDict.keys(prefix=...)``) without reading the
    other collections. Values are stored as JSON text (LlamaIndex's values are JSON dicts): any
    process and any Python reads them, and reading one runs no code; each ``get`` returns a new dict.
    ``put_all`` writes all its pairs in one commit, whatever ``batch_size``.
    """

    def __init__(self, path_or_store: Any, *, ttl: int | float | None = None, namespace: str | None = None) -> None:
        self.ttl = ttl_seconds(ttl)
        self.namespace = check_namespace(namespace, "PersistDictKVStore")
        self.store, self._owned = open_store(path_or_store, "PersistDictKVStore")

    # -- keys and values --------------------------------------------------------------------------

    def _prefix(self, collection: Any) -> str:
        if not isinstance(collection, str):
            raise TypeError(f"a collection name must be a str, not {type(collection).__name__!r}")
        if _SEPARATOR in collection:
            raise ValueError("a collection name cannot contain NUL ('\\x00'): it separates names from keys")
        return self.namespace + collection + _SEPARATOR

    def _key(self, key: Any, collection: Any) -> str:
        if not isinstance(key, str):
            raise TypeError(f"PersistDictKVStore keys must be str, not {type(key).__name__!r}")
        return self._prefix(collection) + key

    @staticmethod
    def _encode(val: Any) -> str:
        if not isinstance(val, dict):
            raise TypeError(f"PersistDictKVStore values must be dicts, not {type(val).__name__!r}")
        try:
            return json.dumps(val)
        except (TypeError, ValueError) as exc:
            raise TypeError(f"PersistDictKVStore values must be JSON dicts: {exc}") from None

    @staticmethod
    def _decode(text: Any) -> dict[str, Any] | None:
        return None if text is None else json.loads(text)

    def _items(self, kv_pairs: list[tuple[str, dict[str, Any]]], collection: str, batch_size: int
               ) -> dict[str, str]:
        if not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be an int >= 1, not {batch_size!r}")
        return {self._key(key, collection): self._encode(val) for key, val in kv_pairs}

    # -- sync -------------------------------------------------------------------------------------

    def put(self, key: str, val: dict[str, Any], collection: str = DEFAULT_COLLECTION) -> None:
        """Store ``val`` under ``key`` in ``collection``."""
        self.store.set(self._key(key, collection), self._encode(val), ttl=self.ttl)

    def put_all(self, kv_pairs: list[tuple[str, dict[str, Any]]], collection: str = DEFAULT_COLLECTION,
                batch_size: int = DEFAULT_BATCH_SIZE) -> None:
        """Store every pair, all or nothing, in one commit."""
        items = self._items(kv_pairs, collection, batch_size)
        if items:
            self.store.set_many(items, ttl=self.ttl)

    def get(self, key: str, collection: str = DEFAULT_COLLECTION) -> dict[str, Any] | None:
        """The dict under ``key`` in ``collection``, or None."""
        return self._decode(self.store.get(self._key(key, collection)))

    def get_all(self, collection: str = DEFAULT_COLLECTION) -> dict[str, dict[str, Any]]:
        """Every key of ``collection`` and its dict (keys found by prefix, values read in one snapshot)."""
        prefix = self._prefix(collection)
        found = self.store.get_many(self.store.keys(prefix=prefix))
        cut = len(prefix)
        return {key[cut:]: json.loads(text) for key, text in found.items()}

    def delete(self, key: str, collection: str = DEFAULT_COLLECTION) -> bool:
        """Remove ``key`` from ``collection``; whether it was there."""
        return self.store.pop(self._key(key, collection), _ABSENT) is not _ABSENT

    # -- async: the store's own async methods -----------------------------------------------------

    async def aput(self, key: str, val: dict[str, Any], collection: str = DEFAULT_COLLECTION) -> None:
        """``put`` on the store's ``aset``: committed together with other tasks' writes."""
        await self.store.aset(self._key(key, collection), self._encode(val), ttl=self.ttl)

    async def aput_all(self, kv_pairs: list[tuple[str, dict[str, Any]]], collection: str = DEFAULT_COLLECTION,
                       batch_size: int = DEFAULT_BATCH_SIZE) -> None:
        """``put_all`` on the store's ``aset_many``."""
        items = self._items(kv_pairs, collection, batch_size)
        if items:
            await self.store.aset_many(items, ttl=self.ttl)

    async def aget(self, key: str, collection: str = DEFAULT_COLLECTION) -> dict[str, Any] | None:
        """``get`` on the store's ``aget`` (a front-cache hit answers without a thread)."""
        return self._decode(await self.store.aget(self._key(key, collection)))

    async def aget_all(self, collection: str = DEFAULT_COLLECTION) -> dict[str, dict[str, Any]]:
        """``get_all`` on the store's ``akeys`` and ``aget_many``."""
        prefix = self._prefix(collection)
        keys = [key async for key in self.store.akeys(prefix=prefix)]
        found = await self.store.aget_many(keys)
        cut = len(prefix)
        return {key[cut:]: json.loads(text) for key, text in found.items()}

    async def adelete(self, key: str, collection: str = DEFAULT_COLLECTION) -> bool:
        """``delete`` on the store's ``adelete``."""
        return await self.store.adelete(self._key(key, collection))

    def close(self) -> None:
        """Close the store if this KV store opened it (from a path)."""
        if self._owned:
            self.store.close()
