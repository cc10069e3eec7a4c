"""Group commit for the async writes: the writes that tasks queue while a commit runs go together
into the next one, one engine transaction (and one fsync) for all of them.

A write is encoded, and its bounds checked, by its caller before it is queued; the committer
(one thread per store, started on demand and stopped by the store's ``close()``, which first
commits what was queued) only calls the engine. Each write runs inside the batch's transaction as
the engine's own atomic operation, so one that fails (a bound that cannot hold) undoes only its
own changes and fails only its own call. If the batch's transaction itself fails, each write is
committed again on its own and gets its own outcome. Writes land in the order they were queued.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from ..engines.base import Bounds, Item
from ..exceptions import ClosedError, StorageFullError

GROWTH_RETRIES = 3  # a batch that outgrows the map is run again after the engine grew it


class QueuedWrite:
    """One queued write: ``apply(engine, now)`` returns its outcome; ``after`` does the mapping's
    bookkeeping once its commit is final; the caller awaits ``future`` on ``loop``. A put also
    carries ``put`` = (items, expires, bounds), so that neighbouring puts go in one engine call."""

    __slots__ = ("after", "apply", "future", "loop", "put")

    def __init__(self, apply: Callable[[Any, float], Any], after: Callable[[Any], Any],
                 loop: asyncio.AbstractEventLoop, put: tuple[list[Item], float, Bounds] | None = None) -> None:
        self.apply = apply
        self.after = after
        self.loop = loop
        self.put = put
        self.future: asyncio.Future[Any] = loop.create_future()


class GroupCommitter:
    """The queue of one store's async writes and the thread that commits them in groups."""

    def __init__(self, store: Any) -> None:
        self._store = store
        self._lock = threading.Lock()
        self._queued: list[QueuedWrite] = []
        self._draining = False
        self._closed = False
        self._executor: ThreadPoolExecutor | None = None

    def queue(self, write: QueuedWrite) -> asyncio.Future[Any]:
        """Queue ``write`` (from its loop's thread); from here on it lands whatever its caller does."""
        with self._lock:
            if self._closed:
                write.future.set_exception(ClosedError(f"PersistDict {self._store.path!r} is closed"))
                return write.future
            self._queued.append(write)
            if self._draining:
                return write.future
            self._draining = True
        # Started on the loop's next turn: the tasks woken with this one queue their writes first.
        write.loop.call_soon(self._start)
        return write.future

    def _start(self) -> None:
        with self._lock:
            if self._closed:  # close() committed what was queued, in its own thread
                return
            if self._executor is None:
                self._executor = ThreadPoolExecutor(1, thread_name_prefix="PersistDict group commit")
            self._executor.submit(self._drain)

    def _drain(self) -> None:
        while True:
            with self._lock:
                batch, self._queued = self._queued, []
                if not batch:
                    self._draining = False
                    return
            outcomes = self._commit(batch)
            settled: dict[asyncio.AbstractEventLoop, list[tuple[QueuedWrite, bool, Any]]] = {}
            for write, (ok, outcome) in zip(batch, outcomes):
                if ok:
                    try:
                        outcome = write.after(outcome)
                    except Exception as exc:  # noqa: BLE001 - reaches its caller
                        ok, outcome = False, exc
                settled.setdefault(write.loop, []).append((write, ok, outcome))
            for loop, results in settled.items():
                try:
                    loop.call_soon_threadsafe(_settle, results)
                except RuntimeError:  # that loop is closed: nobody waits any more
                    pass

    def _commit(self, batch: list[QueuedWrite]) -> list[tuple[bool, Any]]:
        """Each write's (succeeded, outcome or exception), once the batch's commit is final."""
        store = self._store
        if store._closed:
            error = ClosedError(f"PersistDict {store.path!r} is closed")
            return [(False, error)] * len(batch)
        engine = store._engine
        store._write_bounds()  # hands this process's reads to the engine first when bounded (eviction)
        for _ in range(GROWTH_RETRIES):
            outcomes: list[tuple[bool, Any]] = []
            try:
                with engine.transaction():
                    now = store._clock()
                    start = 0
                    while start < len(batch):
                        end = _run_end(batch, start)
                        if end - start < 2 or not _put_together(engine, batch[start:end], now, outcomes):
                            for write in batch[start:end]:
                                try:
                                    outcomes.append((True, write.apply(engine, now)))
                                except Exception as exc:  # noqa: BLE001 - that write alone fails (it wrote nothing)
                                    outcomes.append((False, exc))
                        start = end
                return outcomes
            except StorageFullError:
                continue  # rolled back and grown: run the batch again
            except Exception:  # noqa: BLE001 - the batch failed as a whole: each write on its own below
                break
        return [self._commit_alone(write) for write in batch]

    def _commit_alone(self, write: QueuedWrite) -> tuple[bool, Any]:
        try:
            return True, write.apply(self._store._engine, self._store._clock())
        except Exception as exc:  # noqa: BLE001 - reaches its caller
            return False, exc

    def close(self) -> None:
        """Commit every write queued so far, refuse later ones (``ClosedError``), stop the thread.
        Called by the store's ``close()`` from any thread, before the store is released."""
        with self._lock:
            self._closed = True
            executor, self._executor = self._executor, None
        if executor is not None:
            executor.shutdown(wait=True)  # the drain running now takes what is queued
        with self._lock:
            if not self._queued:
                return
            self._draining = True  # queued, but its drain was not started yet
        self._drain()


def _run_end(batch: list[QueuedWrite], start: int) -> int:
    """The end of the run of puts from ``start`` that share an expiry and bounds (``start + 1`` if none)."""
    first = batch[start].put
    end = start + 1
    if first is None:
        return end
    while end < len(batch):
        put = batch[end].put
        if put is None or put[1] != first[1] or put[2] != first[2]:
            break
        end += 1
    return end


def _put_together(engine: Any, run: list[QueuedWrite], now: float, outcomes: list[tuple[bool, Any]]) -> bool:
    """Write a run of puts in one engine call (their items in call order: a later value of a key
    wins); False, nothing written, if it fails (bounds the run cannot hold together): the caller
    then writes them one by one, so that only the writes that fail alone fail."""
    _, expires, bounds = run[0].put  # type: ignore[misc]
    items = [item for write in run for item in write.put[0]]  # type: ignore[index]
    try:
        commit = engine.put(items, now, expires, bounds)
    except Exception:  # noqa: BLE001 - undone (the engine's put is atomic): one by one instead
        return False
    outcomes.append((True, commit))
    outcomes.extend([(True, commit._replace(evicted=[]))] * (len(run) - 1))  # evictions counted once
    return True


def _settle(results: list[tuple[QueuedWrite, bool, Any]]) -> None:
    for write, ok, outcome in results:
        future = write.future
        if future.done():  # its caller was cancelled: the write landed (or failed) all the same
            continue
        if ok:
            future.set_result(outcome)
        else:
            future.set_exception(outcome)
