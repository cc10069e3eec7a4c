"""LangChain adapters (``pip install 'PersistDict[langchain]'``, on langchain-core):

* :class:`PersistDictCache`, an LLM cache (``set_llm_cache(PersistDictCache(path))``) for LLMs and
  chat models: a prompt answered once is answered from the store by every process, also after a
  restart;
* :class:`PersistDictByteStore`, a ``ByteStore`` (``BaseStore[str, bytes]``), e.g. for
  ``CacheBackedEmbeddings.from_bytes_store``.

Their async methods are the store's own (``aget``, ``aset``, grouped commits...), not LangChain's
default of the sync method in a thread.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import AsyncIterator, Iterator, Sequence
from typing import Any

from langchain_core.caches import RETURN_VAL_TYPE, BaseCache
from langchain_core.load import Serializable, dumps, loads
from langchain_core.messages import (
    AIMessage,
    AIMessageChunk,
    ChatMessage,
    ChatMessageChunk,
    FunctionMessage,
    FunctionMessageChunk,
    HumanMessage,
    HumanMessageChunk,
    SystemMessage,
    SystemMessageChunk,
    ToolMessage,
    ToolMessageChunk,
)
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, Generation, GenerationChunk
from langchain_core.stores import ByteStore
from loguru import logger

from .._api.options import ttl_seconds
from .._core import PersistDict
from ._stores import check_namespace, open_store

try:  # a context variable in current releases, not the process-wide warnings filter
    from langchain_core._api import suppress_langchain_beta_warning
except ImportError:  # pragma: no cover - older langchain-core
    from contextlib import nullcontext as suppress_langchain_beta_warning  # type: ignore[assignment]

__all__ = ["PersistDictByteStore", "PersistDictCache"]

# What a cached value may revive: generations and the messages inside them, nothing that takes
# an endpoint, a model or code (langchain_core.load's allowlist; see its threat model).
REVIVABLE: list[type[Serializable]] = [Generation, GenerationChunk, ChatGeneration, ChatGenerationChunk,
             AIMessage, AIMessageChunk, HumanMessage, HumanMessageChunk, SystemMessage, SystemMessageChunk,
             ToolMessage, ToolMessageChunk, ChatMessage, ChatMessageChunk, FunctionMessage, FunctionMessageChunk]


def _close(store: PersistDict[Any, Any], owned: bool) -> None:
    if owned:
        store.close()


class PersistDictCache(BaseCache):
    """LangChain's LLM cache on a PersistDict: ``set_llm_cache(PersistDictCache(path))``.

    ``path_or_store``: a database path (opened with raw str/bytes values, closed by
    :meth:`close`), or an open PersistDict (left open). ``ttl``: seconds an answer is kept (None:
    until evicted or cleared). ``namespace``: a prefix of this cache's keys, so that one store
    holds several caches (or other data): ``clear()`` then removes this namespace's entries only;
    without one, ``clear()`` empties the whole store.

    An entry's key is the namespace and a BLAKE2b digest of (prompt, llm_string); its value is
    LangChain's own JSON serialization of the generations (``langchain_core.load.dumps``), read
    back by ``loads`` allowing only generation and message classes: it survives LangChain and
    Python upgrades that a pickle may not, and reading it runs no code. An entry that no longer
    decodes is a miss (the model is called again and the entry replaced).
    """

    def __init__(self, path_or_store: Any, *, ttl: int | float | None = None, namespace: str | None = None) -> None:
        self.ttl = ttl_seconds(ttl)
        self.namespace = check_namespace(namespace, "PersistDictCache")
        self.store, self._owned = open_store(path_or_store, "PersistDictCache")

    def _key(self, prompt: str, llm_string: str) -> str:
        text = json.dumps([prompt, llm_string])  # ASCII: lone surrogates are escaped
        return self.namespace + hashlib.blake2b(text.encode(), digest_size=32).hexdigest()

    @staticmethod
    def _encode(return_val: RETURN_VAL_TYPE) -> str:
        return dumps(list(return_val))

    @staticmethod
    def _decode(text: Any) -> RETURN_VAL_TYPE | None:
        if not isinstance(text, str):
            return None
        try:
            with suppress_langchain_beta_warning():
                generations = loads(text, allowed_objects=REVIVABLE)
        except Exception as exc:  # noqa: BLE001 - written by another LangChain, or damaged: a miss
            logger.warning("PersistDictCache: a cached answer does not decode ({}): treated as a miss",
                           type(exc).__name__)
            return None
        if not isinstance(generations, list) or not all(isinstance(g, Generation) for g in generations):
            return None
        return generations

    def lookup(self, prompt: str, llm_string: str) -> RETURN_VAL_TYPE | None:
        """The cached generations for ``prompt`` on ``llm_string``'s model and settings, or None."""
        return self._decode(self.store.get(self._key(prompt, llm_string)))

    def update(self, prompt: str, llm_string: str, return_val: RETURN_VAL_TYPE) -> None:
        """Store the generations for ``prompt`` on ``llm_string``'s model and settings."""
        self.store.set(self._key(prompt, llm_string), self._encode(return_val), ttl=self.ttl)

    def clear(self, **kwargs: Any) -> None:
        """Remove this namespace's entries (one transaction), or every entry without a namespace."""
        if not self.namespace:
            self.store.clear()
            return
        with self.store.transaction():
            for key in self.store.keys(prefix=self.namespace):
                self.store.pop(key, None)

    async def alookup(self, prompt: str, llm_string: str) -> RETURN_VAL_TYPE | None:
        """``lookup`` on the store's ``aget`` (a front-cache hit answers without a thread)."""
        return self._decode(await self.store.aget(self._key(prompt, llm_string)))

    async def aupdate(self, prompt: str, llm_string: str, return_val: RETURN_VAL_TYPE) -> None:
        """``update`` on the store's ``aset``: committed together with other tasks' writes."""
        await self.store.aset(self._key(prompt, llm_string), self._encode(return_val), ttl=self.ttl)

    async def aclear(self, **kwargs: Any) -> None:
        """``clear`` after the async writes queued before it, off the event loop."""
        if not self.namespace:
            await self.store.aclear()
            return
        await self.store.aflush()
        await asyncio.get_running_loop().run_in_executor(None, self.clear)

    def close(self) -> None:
        """Close the store if this cache opened it (from a path)."""
        _close(self.store, self._owned)


class PersistDictByteStore(ByteStore):
    """A LangChain ``ByteStore`` on a PersistDict: str keys, bytes values.

    ``path_or_store``, ``ttl``: as :class:`PersistDictCache`. ``namespace``: a prefix added to
    every key in the store (and taken off the keys it gives back), so that several byte stores
    share one store. Values are stored as the bytes given (with a store opened from a path, or
    with ``value_serializer=None``: no pickle round trip). ``yield_keys(prefix=...)`` reads the
    matching keys only (``PersistDict.keys(prefix=...)``), in key order.
    """

    def __init__(self, path_or_store: Any, *, ttl: int | float | None = None, namespace: str | None = None) -> None:
        self.ttl = ttl_seconds(ttl)
        self.namespace = check_namespace(namespace, "PersistDictByteStore")
        self.store, self._owned = open_store(path_or_store, "PersistDictByteStore")

    def _key(self, key: Any) -> str:
        if not isinstance(key, str):
            raise TypeError(f"PersistDictByteStore keys must be str, not {type(key).__name__!r}")
        return self.namespace + key

    def _items(self, key_value_pairs: Sequence[tuple[str, bytes]]) -> dict[str, bytes]:
        items = {}
        for key, value in key_value_pairs:
            if not isinstance(value, (bytes, bytearray, memoryview)):
                raise TypeError(f"PersistDictByteStore values must be bytes, not {type(value).__name__!r}")
            items[self._key(key)] = bytes(value)
        return items

    def mget(self, keys: Sequence[str]) -> list[bytes | None]:
        """The values of ``keys`` (None where absent), read in one snapshot."""
        stored = [self._key(key) for key in keys]
        found = self.store.get_many(stored)
        return [found.get(key) for key in stored]

    def mset(self, key_value_pairs: Sequence[tuple[str, bytes]]) -> None:
        """Store every pair, all or nothing, in one commit."""
        items = self._items(key_value_pairs)
        if items:
            self.store.set_many(items, ttl=self.ttl)

    def mdelete(self, keys: Sequence[str]) -> None:
        """Remove ``keys`` (absent ones are ignored), in one transaction."""
        stored = [self._key(key) for key in keys]
        with self.store.transaction():
            for key in stored:
                self.store.pop(key, None)

    def yield_keys(self, *, prefix: str | None = None) -> Iterator[str]:
        """The keys (starting with ``prefix``), in key order, from one snapshot."""
        cut = len(self.namespace)
        for key in self.store.keys(prefix=self.namespace + self._prefix(prefix)):
            yield key[cut:]

    @staticmethod
    def _prefix(prefix: Any) -> str:
        if prefix is None:
            return ""
        if not isinstance(prefix, str):
            raise TypeError(f"prefix must be a str or None, not {type(prefix).__name__!r}")
        return prefix

    async def amget(self, keys: Sequence[str]) -> list[bytes | None]:
        """``mget`` on the store's ``aget_many``."""
        stored = [self._key(key) for key in keys]
        found = await self.store.aget_many(stored)
        return [found.get(key) for key in stored]

    async def amset(self, key_value_pairs: Sequence[tuple[str, bytes]]) -> None:
        """``mset`` on the store's ``aset_many``: committed together with other tasks' writes."""
        items = self._items(key_value_pairs)
        if items:
            await self.store.aset_many(items, ttl=self.ttl)

    async def amdelete(self, keys: Sequence[str]) -> None:
        """``mdelete`` on the store's ``adelete``: the deletes land in the same group commits."""
        stored = [self._key(key) for key in keys]
        await asyncio.gather(*(self.store.adelete(key) for key in stored))

    async def ayield_keys(self, *, prefix: str | None = None) -> AsyncIterator[str]:
        """``yield_keys`` on the store's ``akeys``: read off the loop."""
        cut = len(self.namespace)
        async for key in self.store.akeys(prefix=self.namespace + self._prefix(prefix)):
            yield key[cut:]

    def close(self) -> None:
        """Close the store if this byte store opened it (from a path)."""
        _close(self.store, self._owned)
