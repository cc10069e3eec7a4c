"""The async methods: written once above the engine, so they work on every engine.

Storage and fsync run off the event loop: reads in the loop's default executor, writes in the
store's group-commit thread (group_commit.py), which commits the writes of all waiting tasks
together. Keys and values are encoded on the caller's side, before a write is queued: a value
that cannot be serialized fails its call at once and queues nothing. A front-cache hit is served
inline (it costs less than a thread hop).

Cancellation: ``aset``, ``aset_many`` and ``adelete`` queue their write when their coroutine
first runs, before they wait. From then on the write lands whole (or fails alone) whatever
happens to the caller: cancelling only stops the wait. A task cancelled before it ever ran
queued nothing. ``await d.aflush()`` returns once every write queued before it has landed.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any, Generic, TypeVar, overload

from ..engines.base import Item
from ..exceptions import CorruptedRecordError
from .group_commit import GroupCommitter, QueuedWrite
from .options import ttl_seconds
from .state import MISSING, K, T, V, StoreState, corrupted, typechecked

R = TypeVar("R")
CHUNK = 256  # entries decoded per hop to a thread when iterating
# A hit served inline does not suspend its task: a task reading hot keys in a loop would never
# let the others run. Every this many inline answers, the caller yields to the loop once.
YIELD_EVERY = 32


class AsyncMethods(StoreState, Generic[K, V]):
    """aget, aset, adelete, ... and async iteration in chunks."""

    _committer: GroupCommitter | None = None
    _inline_answers = 0

    if TYPE_CHECKING:  # what this part calls of the others (writes.py)
        def _prepare(self, key: Any, value: Any) -> Item: ...
        def _check_fits(self, first_key: Any, items: list[Item]) -> None: ...
        def _note_evictions(self, evicted: list[bytes]) -> None: ...
        def _key_snapshot(self) -> list[Any]: ...  # reads.py
        def _prefix_lookup(self, prefix: Any) -> bytes: ...
        def _prefix_snapshot(self, lookup_prefix: bytes) -> list[Any]: ...

    async def _off_loop(self, function: Callable[..., R], *args: Any) -> R:
        """Run ``function(*args)`` in the loop's default executor."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(None, functools.partial(function, *args))

    async def _yield_now_and_then(self) -> None:
        """Let the loop run other tasks once every YIELD_EVERY inline answers."""
        self._inline_answers += 1
        if self._inline_answers % YIELD_EVERY == 0:
            await asyncio.sleep(0)

    def _queue(self, apply: Callable[[Any, float], Any], after: Callable[[Any], Any],
               put: tuple[list[Item], float, Any] | None = None) -> asyncio.Future[Any]:
        committer = self._committer
        if committer is None:
            with self._lock:
                committer = self._committer
                if committer is None:
                    committer = self._committer = GroupCommitter(self)
        return committer.queue(QueuedWrite(apply, after, asyncio.get_running_loop(), put))

    # -- reads --------------------------------------------------------------------------------

    @overload
    async def aget(self, key: K, default: None = None) -> V | None: ...
    @overload
    async def aget(self, key: K, default: V | T) -> V | T: ...

    async def aget(self, key: Any, default: Any = None) -> Any:
        """``get`` off the event loop; a front-cache hit is returned inline."""
        front = self._front
        entry = self._hot_entry(key) if front is not None and front.hot else None
        if entry is not None:
            await self._yield_now_and_then()
            return entry.value(self._decode_cached)
        return await self._off_loop(self.get, key, default)  # type: ignore[attr-defined]

    async def acontains(self, key: K) -> bool:
        """``key in d`` off the event loop; a front-cache hit is answered inline."""
        front = self._front
        if front is not None and front.hot and self._hot_entry(key) is not None:
            await self._yield_now_and_then()
            return True
        return await self._off_loop(self.__contains__, key)  # type: ignore[attr-defined]

    async def aget_many(self, keys: Iterable[K]) -> dict[K, V]:
        """``get_many`` (one snapshot) off the event loop."""
        return await self._off_loop(self.get_many, list(keys))  # type: ignore[attr-defined]

    async def akeys(self, chunk: int = CHUNK, *, prefix: str | bytes | None = None) -> AsyncIterator[K]:
        """Every live key, in insertion order, from one snapshot read off the loop; the loop
        gets a turn every ``chunk`` keys. ``prefix``: as ``keys(prefix=...)`` (ordered by key)."""
        if prefix is None:
            keys = await self._off_loop(self._key_snapshot)
        else:
            keys = await self._off_loop(self._prefix_snapshot, self._prefix_lookup(prefix))
        for start in range(0, len(keys), chunk):
            for key in keys[start:start + chunk]:
                yield key
            await asyncio.sleep(0)

    async def aitems(self, chunk: int = CHUNK) -> AsyncIterator[tuple[K, V]]:
        """Every live (key, value), in insertion order, from one snapshot read off the loop;
        decoded ``chunk`` entries at a time off the loop."""
        raw = await self._off_loop(lambda: self._check_open().items(self._clock()))
        for start in range(0, len(raw), chunk):
            for pair in await self._off_loop(self._decode_items, raw[start:start + chunk]):
                yield pair

    async def avalues(self, chunk: int = CHUNK) -> AsyncIterator[V]:
        """Every live value, in insertion order (see :meth:`aitems`)."""
        async for _, value in self.aitems(chunk):
            yield value

    def _decode_items(self, raw: list[tuple[bytes, bytes | None, int, Any]]) -> list[tuple[Any, Any]]:
        decode_key, decode_value = self._keys.decode, self._decode_value
        out = []
        for lookup, exact, kind, payload in raw:
            key = decode_key(lookup, exact)
            out.append((key, decode_value(kind, payload, key)))
        return out

    # -- grouped writes -----------------------------------------------------------------------

    @typechecked
    async def aset(self, key: K, value: V, *, ttl: int | float | None = None) -> None:
        """``set``, committed together with the other tasks' waiting writes; returns once it is
        durable (at the store's durability). Cancelled after it started, it still lands."""
        await self._queue_put(key, [self._prepare(key, value)], ttl)

    @typechecked
    async def aset_many(self, mapping: Mapping[K, V] | Iterable[tuple[K, V]], *,
                        ttl: int | float | None = None) -> None:
        """``set_many`` (all or nothing), committed together with the other tasks' waiting writes."""
        pairs = list(mapping.items() if isinstance(mapping, Mapping) else mapping)
        items = [self._prepare(key, value) for key, value in pairs]
        if items:
            await self._queue_put(pairs[0][0], items, ttl)

    def _queue_put(self, first_key: Any, items: list[Item], ttl: int | float | None) -> asyncio.Future[Any]:
        """Check, then queue a put (synchronously: the write is queued before the caller waits)."""
        ttl = ttl_seconds(ttl)
        self._check_open()
        expires = 0.0 if ttl is None else self._clock() + ttl
        bounds = self._bounds  # type: ignore[attr-defined]
        if bounds.max_items is not None or bounds.max_bytes is not None:
            self._check_fits(first_key, items)

        def apply(engine: Any, now: float) -> Any:
            return engine.put(items, now, expires, bounds)

        def after(commit: Any) -> None:
            self.counters["sets"] += len(items)
            self._note_evictions(commit.evicted)

        return self._queue(apply, after, (items, expires, bounds))

    async def adelete(self, key: K) -> bool:
        """Remove ``key``; whether it was there. Grouped like :meth:`aset`."""
        lookup = self._keys.encode(key)[0]
        self._check_open()

        def apply(engine: Any, now: float) -> Any:
            return engine.remove(lookup, now)[0]

        def after(record: Any) -> bool:
            if record is None:
                return False
            self.counters["deletes"] += 1
            self._touched.discard(record.seq)
            return True

        try:
            return bool(await self._queue(apply, after))
        except CorruptedRecordError as exc:
            raise corrupted(key, exc) from exc

    async def aflush(self) -> None:
        """Wait until every async write queued before this call has landed (or failed)."""
        self._check_open()
        await self._queue(lambda engine, now: None, lambda outcome: None)

    # -- other writes, off the loop --------------------------------------------------------------

    @overload
    async def apop(self, key: K) -> V: ...
    @overload
    async def apop(self, key: K, default: V | T) -> V | T: ...

    async def apop(self, key: Any, default: Any = MISSING) -> Any:
        """``pop`` off the event loop, after the async writes queued before it."""
        await self.aflush()
        if default is MISSING:
            return await self._off_loop(self.pop, key)  # type: ignore[attr-defined]
        return await self._off_loop(self.pop, key, default)  # type: ignore[attr-defined]

    async def asetdefault(self, key: K, default: V) -> V:
        """``setdefault`` off the event loop, after the async writes queued before it."""
        await self.aflush()
        return await self._off_loop(self.setdefault, key, default)  # type: ignore[attr-defined]

    async def aincr(self, key: K, delta: int | float = 1, *, default: int | float = 0) -> int | float:
        """``incr`` off the event loop, after the async writes queued before it."""
        await self.aflush()
        return await self._off_loop(functools.partial(self.incr, key, delta, default=default))  # type: ignore[attr-defined]

    async def adecr(self, key: K, delta: int | float = 1, *, default: int | float = 0) -> int | float:
        """``decr`` off the event loop, after the async writes queued before it."""
        await self.aflush()
        return await self._off_loop(functools.partial(self.decr, key, delta, default=default))  # type: ignore[attr-defined]

    async def aclear(self) -> None:
        """``clear`` off the event loop, after the async writes queued before it."""
        await self.aflush()
        await self._off_loop(self.clear)  # type: ignore[attr-defined]

    async def aexpire(self) -> int:
        """``expire`` off the event loop: removes expired and idle entries; how many."""
        return await self._off_loop(self.expire)  # type: ignore[attr-defined]

    async def aclose(self) -> None:
        """Let the queued async writes land, then ``close`` off the event loop."""
        if self._closed:
            return
        await self.aflush()
        await self._off_loop(self.close)  # type: ignore[attr-defined]

    def _close_committer(self) -> None:
        """Commit the async writes queued so far and stop the committer thread (from ``close()``)."""
        committer = self._committer
        if committer is not None:
            committer.close()
