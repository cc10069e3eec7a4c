"""Worker functions of the toolkit process tests (tests/test_toolkit_processes.py): importable by name
so that the "spawn" start method finds them."""

from __future__ import annotations

from typing import Any

from _workers import open_db


def incr_worker(path: str, key: str, times: int, delta: Any, barrier: Any) -> None:
    """Increment ``key`` by ``delta`` ``times`` times, after every worker is ready."""
    d = open_db(path)
    barrier.wait()
    for _ in range(times):
        d.incr(key, delta)
    d.close()


def cas_worker(path: str, key: str, times: int, barrier: Any) -> None:
    """Add 1 to ``key`` ``times`` times through version/compare_and_set retry loops."""
    d = open_db(path)
    barrier.wait()
    for _ in range(times):
        while True:
            version = d.version(key)  # first: a value read before it could be older than it
            if d.compare_and_set(key, d[key] + 1, version):
                break
    d.close()


def tracked_appender(path: str, key: str, times: int, barrier: Any) -> None:
    """Append ``times`` marks to the list at ``key`` through track_changes, retrying on ConflictError."""
    from PersistDict import ConflictError

    d = open_db(path)
    barrier.wait()
    for n in range(times):
        while True:
            try:
                with d.track_changes(key, default=[]) as marks:
                    marks.append(n)
                break
            except ConflictError:
                continue
    d.close()


def write_same_value(path: str, key: str, value: Any) -> None:
    """Write ``value`` at ``key`` once, at a fixed clock reading."""
    d = open_db(path, clock=lambda: 1000.0)
    d[key] = value
    d.close()


def locked_appender(path: str, rounds: int, barrier: Any) -> None:
    """``rounds`` times: inside d.lock("log"), append an "in" and then an "out" mark to the shared list."""
    import os

    d = open_db(path)
    barrier.wait()
    me = os.getpid()
    for i in range(rounds):
        with d.lock("log", ttl=60):
            d["log"] = d["log"] + [(me, i, "in")]
            d["log"] = d["log"] + [(me, i, "out")]
    d.close()


def hold_lock_forever(path: str, name: str, ttl: float, held: Any) -> None:
    """Take the lock ``name`` and hold it until killed."""
    import time

    d = open_db(path)
    d.lock(name, ttl=ttl).acquire()
    held.set()
    while True:
        time.sleep(1)


def slow_double(x: int) -> int:
    """The memoized function of memoize_caller: counts its runs in the store, takes half a second."""
    import time

    d = open_db(_STORE[0])
    d.incr("runs")
    d.close()
    time.sleep(0.5)
    return x * 2


_STORE: list[str] = []


def memoize_caller(path: str, barrier: Any, lock: bool) -> None:
    """Call the memoized slow_double(21) once, at the same moment as the other callers."""
    _STORE[:] = [path]
    d = open_db(path)
    memoized = d.memoize(name="slow_double", lock=lock)(slow_double)
    barrier.wait()
    if memoized(21) != 42:
        raise SystemExit(3)
    d.close()


def compute_forever(path: str, key: str, computing: Any) -> None:
    """get_or_set(key) with a factory that never returns (the process is killed inside it)."""
    import time

    d = open_db(path)

    def factory() -> None:
        computing.set()
        while True:
            time.sleep(1)

    d.get_or_set(key, factory, lock_ttl=30)


def amemoize_caller(path: str, barrier: Any) -> None:
    """An event loop whose 4 tasks call the memoized async slow_double(21) at the moment the other
    processes do."""
    import asyncio

    _STORE[:] = [path]
    d = open_db(path)

    async def aslow_double(x: int) -> int:
        await asyncio.to_thread(slow_double, x)
        return x * 2

    memoized = d.memoize(name="aslow_double")(aslow_double)

    async def main() -> list[int]:
        return await asyncio.gather(*(memoized(21) for _ in range(4)))

    barrier.wait()
    if asyncio.run(main()) != [42] * 4:
        raise SystemExit(3)
    d.close()
