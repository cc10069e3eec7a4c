"""The async twins of the toolkit on every engine: aincr/adecr, aget_or_set, async memoize, alock."""

from __future__ import annotations

import asyncio

import pytest

from PersistDict import LockTimeoutError, PersistDict


def test_aincr_from_50_tasks_is_exact(db: PersistDict) -> None:
    """50 concurrent aincr(1) and 10 adecr(2) leave exactly 30, after the asets queued before them."""

    async def main() -> None:
        await db.aset("n", 0)
        await asyncio.gather(*(db.aincr("n") for _ in range(50)), *(db.adecr("n", 2) for _ in range(10)))

    asyncio.run(main())
    assert db["n"] == 30


def test_aget_or_set_computes_once_for_20_tasks(db: PersistDict) -> None:
    """20 tasks asking for one missing key run the async factory once and all get its value."""
    runs = []

    async def factory() -> str:
        runs.append(1)
        await asyncio.sleep(0.05)
        return "value"

    async def main() -> list[str]:
        return await asyncio.gather(*(db.aget_or_set("k", factory) for _ in range(20)))

    assert asyncio.run(main()) == ["value"] * 20
    assert runs == [1] and db["k"] == "value"


def test_aget_or_set_stores_nothing_when_the_factory_raises(db: PersistDict) -> None:
    """A factory that raises stores nothing; the error reaches that caller; a sync factory works too."""

    async def main() -> None:
        with pytest.raises(RuntimeError):
            await db.aget_or_set("k", lambda: (_ for _ in ()).throw(RuntimeError("no")))
        assert "k" not in db
        assert await db.aget_or_set("k", lambda: 7, ttl=60) == 7

    asyncio.run(main())
    assert db["k"] == 7


def test_async_memoize_runs_once_and_invalidates(db: PersistDict) -> None:
    """An async function memoized by d.memoize() runs once for concurrent equal calls; invalidate() forgets it."""
    runs = []

    @db.memoize()
    async def double(x: int) -> int:
        runs.append(x)
        await asyncio.sleep(0.02)
        return 2 * x

    async def main() -> list[int]:
        return await asyncio.gather(*(double(x=4) for _ in range(8)), double(4))

    assert asyncio.run(main()) == [8] * 9 and runs == [4]
    assert double.invalidate(4) is True
    assert asyncio.run(double(4)) == 8 and runs == [4, 4]


def test_alock_excludes_other_tasks_and_times_out(db: PersistDict) -> None:
    """async with d.alock(name): tasks take turns (no interleaving); a timeout raises LockTimeoutError."""
    events: list[str] = []

    async def worker(i: int) -> None:
        async with db.alock("job", ttl=30):
            events.append(f"in{i}")
            await asyncio.sleep(0.01)
            events.append(f"out{i}")

    async def main() -> None:
        await asyncio.gather(*(worker(i) for i in range(5)))
        async with db.alock("held", ttl=30):
            with pytest.raises(LockTimeoutError):
                async with db.alock("held", timeout=0.05):
                    pass

    asyncio.run(main())
    assert len(events) == 10
    assert all(events[i][2:] == events[i + 1][3:] and events[i].startswith("in") for i in range(0, 10, 2))
