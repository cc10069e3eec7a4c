"""Async writes with group commit, and the event loop's worst stall under a mixed load.

    python benchmarks/async_group_commit.py [--rounds 3] [--tasks 100] [--keys 100] [--durability safe]

1. Throughput: ``--tasks`` concurrent tasks each setting ``--keys`` keys one after the other (a
   100-byte value), at the default durability of each library: PersistDict's ``aset`` (group
   commit) against diskcache's ``Cache.set`` called through ``asyncio.to_thread``. Fresh stores
   per round; prints writes/s per round and the ratio of the medians (target: >= 10x), and the
   commit floor: each task's writes are ``--keys`` dependent rounds, each at least one commit of
   ``--tasks`` entries (one fsync at 'safe'), so no group commit beats ``--keys`` sync
   ``set_many`` calls of ``--tasks`` entries each; and the event loop alone (the same tasks awaiting
   futures that a thread settles in batches, nothing stored). The two cannot overlap (each round
   waits for the last commit), so together they bound any async group commit.
2. Loop stall: a ticker task sleeps 1 ms and records how late it wakes, while 40 tasks read
   (``aget`` of 2,000 stored 1536-float32 embeddings and 2 KB LLM responses), 10 write new
   ones (``aset``) and one iterates ``aitems``; for 3 s. Prints the worst and the 99th percentile
   lateness; the same load calling the sync methods directly on the loop, for contrast.

Needs diskcache and numpy (``pip install -e .[bench]``).
"""

from __future__ import annotations

import argparse
import asyncio
import random
import shutil
import statistics
import tempfile
import threading
import time
from typing import Any

import diskcache
import numpy as np

from PersistDict import PersistDict

VALUE = "x" * 100


async def _writers(write: Any, tasks: int, keys: int) -> float:
    async def task(number: int) -> None:
        for index in range(keys):
            await write(f"{number}-{index}", VALUE)

    start = time.perf_counter()
    await asyncio.gather(*(task(number) for number in range(tasks)))
    return tasks * keys / (time.perf_counter() - start)


def persistdict_rate(tasks: int, keys: int, durability: str) -> tuple[float, int]:
    """PersistDict's aset: writes/s and the commits it took."""
    directory = tempfile.mkdtemp()
    d = PersistDict(directory, background_thread="disabled", durability=durability)
    try:
        before = d._feed.last_commit()
        rate = asyncio.run(_writers(d.aset, tasks, keys))
        return rate, d._feed.last_commit() - before
    finally:
        d.close()
        shutil.rmtree(directory)


def diskcache_rate(tasks: int, keys: int) -> float:
    """diskcache's Cache.set through asyncio.to_thread: writes/s."""
    directory = tempfile.mkdtemp()
    cache = diskcache.Cache(directory)  # its defaults: SQLite WAL, synchronous=NORMAL

    async def write(key: str, value: str) -> None:
        await asyncio.to_thread(cache.set, key, value)

    try:
        return asyncio.run(_writers(write, tasks, keys))
    finally:
        cache.close()
        shutil.rmtree(directory)


def commit_floor(tasks: int, keys: int, durability: str) -> float:
    """The best any group commit can do here: each task's ``keys`` writes are ``keys`` dependent
    rounds, each at least one commit of ``tasks`` entries. Measured as ``keys`` calls of the sync
    ``set_many`` with ``tasks`` entries each, from one thread (no event loop, keys and values made
    beforehand): writes/s if the async layer cost nothing."""
    directory = tempfile.mkdtemp()
    d = PersistDict(directory, background_thread="disabled", durability=durability)
    rounds = [{f"{number}-{index}": VALUE for number in range(tasks)} for index in range(keys)]
    try:
        d["warm"] = VALUE
        start = time.perf_counter()
        for batch in rounds:
            d.set_many(batch)
        return tasks * keys / (time.perf_counter() - start)
    finally:
        d.close()
        shutil.rmtree(directory)


def asyncio_floor(tasks: int, keys: int) -> float:
    """What the event loop alone costs the same workload: each task awaits ``keys`` futures one
    after the other, a thread settles each batch of waiting futures with one
    ``call_soon_threadsafe`` (as the group commit does), and nothing is stored: writes/s."""

    async def run() -> float:
        loop = asyncio.get_running_loop()
        waiting: list[asyncio.Future[None]] = []
        wake = threading.Event()
        stop = False

        def settle(batch: list[asyncio.Future[None]]) -> None:
            for future in batch:
                future.set_result(None)

        def committer() -> None:
            while not stop:
                wake.wait(0.1)
                wake.clear()
                batch = waiting[:]
                del waiting[:len(batch)]
                if batch:
                    loop.call_soon_threadsafe(settle, batch)

        async def write(key: str, value: str) -> None:
            future = loop.create_future()
            waiting.append(future)
            wake.set()
            await future

        thread = threading.Thread(target=committer, daemon=True)
        thread.start()
        try:
            return await _writers(write, tasks, keys)
        finally:
            stop = True
            wake.set()

    return asyncio.run(run())


def throughput(rounds: int, tasks: int, keys: int, durability: str) -> None:
    print(f"== {tasks} tasks x {keys} sets each; PersistDict durability={durability!r}, diskcache's default ==")
    ours, theirs, floors, loops = [], [], [], []
    for number in range(rounds):
        rate, commits = persistdict_rate(tasks, keys, durability)
        other = diskcache_rate(tasks, keys)
        floor = commit_floor(tasks, keys, durability)
        loop_only = asyncio_floor(tasks, keys)
        ours.append(rate)
        theirs.append(other)
        floors.append(floor)
        loops.append(loop_only)
        print(f"round {number + 1}: PersistDict aset {rate:,.0f}/s ({commits} commits for {tasks * keys} writes), "
              f"diskcache via to_thread {other:,.0f}/s, commit floor {floor:,.0f}/s, event loop alone "
              f"{loop_only:,.0f}/s")
    ours_m, theirs_m, floor_m, loop_m = (statistics.median(x) for x in (ours, theirs, floors, loops))
    # the commits and the loop's turns cannot overlap: each round's writes wait for the last commit
    bound = 1 / (1 / floor_m + 1 / loop_m)
    print(f"median: PersistDict {ours_m:,.0f}/s, diskcache {theirs_m:,.0f}/s, ratio {ours_m / theirs_m:.1f}x "
          f"(target >= 10x); the commit floor ({keys} set_many of {tasks}) {floor_m:,.0f}/s and the event loop "
          f"alone {loop_m:,.0f}/s bound any async group commit to {bound:,.0f}/s = {bound / theirs_m:.1f}x "
          f"diskcache; PersistDict reaches {ours_m / bound:.0%} of that bound")


async def _mixed_load(d: PersistDict, direct: bool, seconds: float) -> list[float]:
    rng = random.Random(7)
    lateness: list[float] = []
    stop = time.perf_counter() + seconds

    async def ticker() -> None:
        while time.perf_counter() < stop:
            before = time.perf_counter()
            await asyncio.sleep(0.001)
            lateness.append(time.perf_counter() - before - 0.001)

    async def reader() -> None:
        while time.perf_counter() < stop:
            key = f"emb{rng.randrange(2000)}" if rng.random() < 0.7 else f"llm{rng.randrange(2000)}"
            if direct:
                d.get(key)
                await asyncio.sleep(0)
            else:
                await d.aget(key)

    async def writer(number: int) -> None:
        index = 0
        while time.perf_counter() < stop:
            key, value = f"new{number}-{index}", np.random.rand(1536).astype(np.float32)
            if direct:
                d.set(key, value)
                await asyncio.sleep(0)
            else:
                await d.aset(key, value)
            index += 1

    async def iterator() -> None:
        while time.perf_counter() < stop:
            if direct:
                for _ in d.items():
                    pass
                await asyncio.sleep(0)
            else:
                async for _ in d.aitems(chunk=256):
                    pass

    await asyncio.gather(ticker(), *(reader() for _ in range(40)), *(writer(n) for n in range(10)), iterator())
    return lateness


def loop_stall(seconds: float) -> None:
    print("== event loop lateness under a mixed load (40 readers, 10 writers, 1 iterator; 1536-float32 "
          "embeddings and 2 KB responses) ==")
    for direct in (False, True):
        directory = tempfile.mkdtemp()
        d = PersistDict(directory, background_thread="disabled")
        d.set_many({f"emb{i}": np.random.rand(1536).astype(np.float32) for i in range(2000)})
        d.set_many({f"llm{i}": "response " * 228 for i in range(2000)})
        try:
            lateness = sorted(asyncio.run(_mixed_load(d, direct, seconds)))
        finally:
            d.close()
            shutil.rmtree(directory)
        worst, p99 = lateness[-1] * 1000, lateness[int(len(lateness) * 0.99)] * 1000
        how = "sync methods called on the loop" if direct else "async methods"
        print(f"{how}: worst {worst:.1f} ms, p99 {p99:.1f} ms over {len(lateness)} ticks")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--tasks", type=int, default=100)
    parser.add_argument("--keys", type=int, default=100)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--durability", default="safe", help="PersistDict's (default 'safe': an fsync per commit)")
    args = parser.parse_args()
    throughput(args.rounds, args.tasks, args.keys, args.durability)
    loop_stall(args.seconds)


if __name__ == "__main__":
    main()
