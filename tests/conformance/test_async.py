"""The async methods on every engine: results like the sync ones, group commit (counted in commits),
a failing write failing only its own call, cancellation, async iteration in chunks."""

from __future__ import annotations

import asyncio
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from _clock import Clock

from PersistDict import ClosedError, PersistDict

from ._engines import Stores


def commits(db: PersistDict) -> int:
    """The store's commit clock: it moves once per commit (no maintenance runs in these tests)."""
    return db._feed.last_commit()


def test_async_reads_and_writes_match_the_sync_ones(db: PersistDict) -> None:
    """aset/aget/acontains/adelete/apop/asetdefault/aget_many/aclear do what their sync twins do."""

    async def main() -> None:
        await db.aset("a", 1)
        await db.aset_many({"b": 2, "c": 3})
        assert await db.aget("a") == 1 and await db.aget("missing", 0) == 0
        assert await db.acontains("b") and not await db.acontains("missing")
        assert await db.aget_many(["a", "c", "missing"]) == {"a": 1, "c": 3}
        assert await db.adelete("a") is True and await db.adelete("a") is False
        assert await db.apop("b") == 2 and await db.apop("b", None) is None
        with pytest.raises(KeyError):
            await db.apop("b")
        assert await db.asetdefault("d", 4) == 4 and await db.asetdefault("d", 5) == 4
        assert db.copy() == {"c": 3, "d": 4}
        await db.aclear()
        assert len(db) == 0

    asyncio.run(main())


@pytest.fixture(params=["lmdb", "memory"])
def plain_db(request: pytest.FixtureRequest, tmp_path: Any) -> Any:
    """A store on a plain engine: an encrypted store has no lock-free hot read (its front cache is
    keyed by lookup hashes, which take an HMAC to compute; README, Encryption)."""
    factory = Stores(request.param, tmp_path)
    yield factory.open()
    factory.close_all()


def test_aget_serves_a_front_cache_hit_inline(plain_db: PersistDict) -> None:
    """A hot key is answered without a thread: aget returns it with no executor available."""
    db = plain_db
    db["hot"] = "value"
    db["hot"], db["hot"]  # noqa: B018 - the second miss fills the front cache

    async def main() -> Any:
        asyncio.get_running_loop().set_default_executor(_NoExecutor())
        return await db.aget("hot"), await db.acontains("hot")

    assert asyncio.run(main()) == ("value", True)


class _NoExecutor(ThreadPoolExecutor):
    """An executor that refuses work: proves a call ran inline."""

    def submit(self, *args: Any, **kwargs: Any) -> Any:
        raise AssertionError("ran in a thread")


def test_many_concurrent_tasks_land_in_few_commits(db: PersistDict) -> None:
    """100 tasks x 20 sequential asets: all 2000 land, in far fewer commits than writes."""
    before = commits(db)

    async def task(number: int) -> None:
        for index in range(20):
            await db.aset(f"{number}-{index}", [number, index])

    async def main() -> None:
        await asyncio.gather(*(task(number) for number in range(100)))

    asyncio.run(main())
    assert len(db) == 2000 and db["42-7"] == [42, 7]
    assert commits(db) - before <= 200  # one commit per round of waiting tasks (about 20), not 2000


def test_concurrent_writes_to_one_key_keep_call_order(db: PersistDict) -> None:
    """Sets and deletes of one key queued in one batch apply in the order they were called."""

    async def main() -> list[Any]:
        return await asyncio.gather(db.aset("k", 1), db.adelete("k"), db.aset("k", 2), db.aset("j", 0),
                                    db.adelete("j"), db.adelete("j"))

    before = commits(db)
    assert asyncio.run(main()) == [None, True, None, None, True, False]
    assert commits(db) - before == 1
    assert db.copy() == {"k": 2}


def test_an_unserializable_value_fails_only_its_own_call(db: PersistDict) -> None:
    """Among 100 concurrent asets, the one whose value cannot be pickled raises; the 99 others land."""

    async def main() -> list[Any]:
        calls = [db.aset(f"k{index}", (lambda: None) if index == 50 else index) for index in range(100)]
        return await asyncio.gather(*calls, return_exceptions=True)

    results = asyncio.run(main())
    failed = [index for index, result in enumerate(results) if isinstance(result, BaseException)]
    assert failed == [50]
    assert len(db) == 99 and "k50" not in db


def test_a_write_over_the_bounds_fails_only_its_own_call(stores: Stores) -> None:
    """An aset_many larger than max_items raises ValueError; the concurrent writes land."""
    db = stores.open(max_items=10)

    async def main() -> list[Any]:
        calls = [db.aset(f"k{index}", index) for index in range(5)]
        calls.insert(2, db.aset_many({f"big{index}": index for index in range(11)}))
        return await asyncio.gather(*calls, return_exceptions=True)

    results = asyncio.run(main())
    assert isinstance(results[2], ValueError)
    assert sorted(db) == [f"k{index}" for index in range(5)]


def test_a_cancelled_aset_lands_whole(db: PersistDict) -> None:
    """Cancelling asets after they started only stops their wait: after aflush every one has landed."""

    async def main() -> int:
        tasks = [asyncio.create_task(db.aset_many({f"{n}-a": n, f"{n}-b": n})) for n in range(50)]
        await asyncio.sleep(0)  # each task runs to its wait: its write is queued
        for task in tasks:
            task.cancel()
        results = await asyncio.gather(*tasks, return_exceptions=True)
        await db.aflush()
        return sum(isinstance(result, asyncio.CancelledError) for result in results)

    assert asyncio.run(main()) == 50
    assert len(db) == 100 and all(db[f"{n}-a"] == db[f"{n}-b"] == n for n in range(50))


def test_an_aset_cancelled_before_it_ran_writes_nothing(db: PersistDict) -> None:
    """A task cancelled before its first step never queued its write: nothing lands."""

    async def main() -> None:
        task = asyncio.create_task(db.aset("never", 1))
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await db.aflush()

    asyncio.run(main())
    assert "never" not in db


def test_async_writes_from_two_event_loops_share_the_committer(db: PersistDict) -> None:
    """Two threads, each with its own event loop, write concurrently: every write lands."""

    def run(prefix: str) -> None:
        async def main() -> None:
            await asyncio.gather(*(db.aset(f"{prefix}{index}", index) for index in range(200)))

        asyncio.run(main())

    threads = [threading.Thread(target=run, args=(prefix,)) for prefix in "xy"]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(db) == 400


def test_akeys_and_aitems_iterate_in_chunks_in_order(db: PersistDict) -> None:
    """akeys/aitems/avalues yield every entry in insertion order, whatever the chunk size."""
    db.set_many({f"k{index:03}": index for index in range(300)})

    async def main() -> tuple[list[Any], list[Any], list[Any]]:
        keys = [key async for key in db.akeys(chunk=7)]
        items = [pair async for pair in db.aitems(chunk=64)]
        values = [value async for value in db.avalues()]
        return keys, items, values

    keys, items, values = asyncio.run(main())
    assert keys == list(db) and items == list(db.items()) and values == list(range(300))


def test_aset_ttl_and_aexpire(stores: Stores) -> None:
    """aset's ttl expires the entry; aexpire removes it and counts it."""
    clock = Clock()
    db = stores.open(clock=clock)

    async def main() -> int:
        await db.aset("short", 1, ttl=10)
        await db.aset_many({"also": 2}, ttl=10)
        await db.aset("long", 3)
        clock.now += 11
        return await db.aexpire()

    assert asyncio.run(main()) == 2
    assert db.copy() == {"long": 3}


def test_aclose_lands_queued_writes_then_closes(stores: Stores) -> None:
    """aclose waits for the writes queued before it; afterwards writes raise ClosedError."""
    db = stores.open()

    async def main() -> None:
        pending = [asyncio.create_task(db.aset(f"k{index}", index)) for index in range(20)]
        await asyncio.sleep(0)
        await db.aclose()
        assert all(task.done() for task in pending)
        with pytest.raises(ClosedError):
            await db.aset("late", 1)

    asyncio.run(main())
    if stores.persists:
        assert len(stores.reopen(db)) == 20


def test_sync_close_lands_the_queued_writes_and_stops_the_committer_thread(stores: Stores) -> None:
    """close() (sync, on the loop's thread) commits the writes queued before it, refuses later ones
    with ClosedError, and leaves no committer thread behind."""
    db = stores.open()

    def committer_threads() -> list[threading.Thread]:
        return [t for t in threading.enumerate() if t.name.startswith("PersistDict group commit")]

    async def main() -> None:
        await db.aset("first", 0)  # starts the committer thread
        assert committer_threads()
        pending = [asyncio.create_task(db.aset(f"k{index}", index)) for index in range(20)]
        await asyncio.sleep(0)  # queued; their drain is due on the loop's next turn
        db.close()
        assert [await task for task in pending] == [None] * 20
        with pytest.raises(ClosedError):
            await db.aset("late", 1)

    asyncio.run(main())
    assert not committer_threads()
    if stores.persists:
        assert len(stores.reopen(db)) == 21


def test_async_arguments_are_checked(db: PersistDict) -> None:
    """A bad ttl raises ValueError/TypeError at the call and queues nothing."""

    async def main() -> None:
        with pytest.raises((TypeError, ValueError)):
            await db.aset("k", 1, ttl=-1)
        with pytest.raises(TypeError):
            await db.aset("k", 1, ttl="soon")  # type: ignore[arg-type]
        await db.aflush()

    asyncio.run(main())
    assert "k" not in db


def test_concurrent_asets_of_one_key_keep_call_order(db: PersistDict) -> None:
    """Puts of one key written together in one batch: the last call's value wins."""

    async def main() -> None:
        await asyncio.gather(*(db.aset("k", index) for index in range(50)), db.aset_many({"k": "last"}))

    asyncio.run(main())
    assert db["k"] == "last" and len(db) == 1


def test_writes_that_fit_the_bounds_alone_but_not_together_all_land(stores: Stores) -> None:
    """Concurrent aset_many of 4 keys each under max_items=10: the batch cannot hold them in one
    write, so each is written on its own and none fails; the store keeps the 10 newest."""
    db = stores.open(max_items=10)

    async def main() -> list[Any]:
        calls = [db.aset_many({f"{n}-{index}": index for index in range(4)}) for n in range(5)]
        return await asyncio.gather(*calls, return_exceptions=True)

    assert asyncio.run(main()) == [None] * 5
    assert len(db) == 10 and all(f"4-{index}" in db for index in range(4))
    assert db.counters["evicted"] == 10


def test_a_task_reading_hot_keys_lets_other_tasks_run(db: PersistDict) -> None:
    """Hits served inline still yield to the loop now and then: a loop of 1000 hot agets is not a stall."""
    db["hot"] = 1
    db["hot"], db["hot"]  # noqa: B018 - the second miss fills the front cache

    async def main() -> int:
        turns = 0
        done = False

        async def other() -> None:
            nonlocal turns
            while not done:
                turns += 1
                await asyncio.sleep(0)

        ticker = asyncio.create_task(other())
        await asyncio.sleep(0)
        turns = 0
        for _ in range(1000):
            assert await db.aget("hot") == 1
        done = True
        await ticker
        return turns

    assert asyncio.run(main()) >= 10
