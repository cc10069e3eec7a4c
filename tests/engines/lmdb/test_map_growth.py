"""Map growth under threads and processes: the map grows without deadlocking readers, writers or
transactions."""

from __future__ import annotations

import multiprocessing as mp
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import _workers as w
import pytest

from _concurrency import CONTEXTS, join_all, start_process

from ._lmdb_access import engine_of

ROOT = str(Path(__file__).resolve().parents[3])


@pytest.mark.slow
@pytest.mark.parametrize("start_method", CONTEXTS)
def test_map_growth_under_threads_and_processes_does_not_deadlock(path, opened, start_method):
    """3 processes x 4 threads writing large values into a 1 MiB map (which must grow many times, and
    be adopted by the other processes) while reading and running transactions finish, with every
    value and the counter exact.
    """
    ctx = mp.get_context(start_method)
    n_procs, n_threads, n_writes = 3, 4, 40
    barrier = ctx.Barrier(n_procs)
    processes = [start_process(ctx, w.growth_worker, path, p, n_threads, n_writes, barrier) for p in range(n_procs)]
    # a hang detector only: the workers need 1-2 s (and dump their stacks at 25 s)
    deadline = time.monotonic() + 30
    for process in processes:
        process.join(max(0.1, deadline - time.monotonic()))
    hung = [p.pid for p in processes if p.is_alive()]
    for process in processes:
        if process.is_alive():
            process.kill()
            process.join()
    assert not hung, f"processes {hung} deadlocked while the map grew (stacks printed to stderr)"
    assert [p.exitcode for p in processes] == [0] * n_procs
    d = opened(path, map_size=w.GROWTH_MAP_SIZE)
    assert d["count"] == n_procs * n_threads * len(range(0, n_writes, 4))
    for p in range(n_procs):
        for t in range(n_threads):
            for j in range(n_writes):
                assert d[f"g{p}.{t}.{j}"] == w.growth_value(p, t, j)
    assert engine_of(d).info()["map_size"] > w.GROWTH_MAP_SIZE, "test precondition: the map grew"


def _spin_until(condition: Callable[[], bool], seconds: float = 2.0) -> None:
    """Spin until ``condition`` holds or ``seconds`` pass.

    Used only to line threads up so that a bug is triggered: a correct
    implementation passes whether or not the condition ever holds.
    """
    deadline = time.monotonic() + seconds
    while not condition() and time.monotonic() < deadline:
        pass


def _growth_deadlock_scenario(path: str, conn: Any) -> None:
    """Line up: A in transaction() about to read, D growing the map (waiting for A), B reading.

    Peeks at three internals only to know when each thread has reached its
    spot (the gate's open-transaction count and resize flag, the instance lock).
    """
    d = w.open_db(path, map_size=w.GROWTH_MAP_SIZE)
    storage = engine_of(d)
    gate = storage._gate
    d["x"] = 1
    c_inside, c_commit, a_inside, a_read = (threading.Event() for _ in range(4))

    def c() -> None:  # fills the map past half, commits once A is queued behind it
        with d.transaction():
            i = 0
            while (storage.info()["bytes_used"] + i * 20_000) * 2 <= storage.info()["map_size"]:
                d[f"big{i}"] = b"x" * 20_000
                i += 1
            c_inside.set()
            c_commit.wait()

    def a() -> None:  # a transaction that reads
        with d.transaction():
            a_inside.set()
            a_read.wait()
            d.get("x")

    def grower() -> None:  # finds the map half full at transaction() start
        with d.transaction():
            pass

    def lock_is_held() -> bool:
        if d._lock.acquire(blocking=False):
            d._lock.release()
            return False
        return True

    threads = [threading.Thread(target=c, daemon=True)]
    threads[0].start()
    c_inside.wait()
    threads.append(threading.Thread(target=a, daemon=True))
    threads[1].start()
    _spin_until(lambda: len(gate.open_txns) >= 2)  # A passed its half-full check, queued for the write lock
    c_commit.set()
    a_inside.wait()
    threads.append(threading.Thread(target=grower, daemon=True))
    threads[2].start()
    _spin_until(lambda: gate.resizing)  # D waits for A's transaction to end
    reader = threading.Thread(target=d.get, args=("x",), daemon=True)
    threads.append(reader)
    reader.start()
    _spin_until(lambda: lock_is_held() or not reader.is_alive())  # B holds the instance lock
    a_read.set()
    for thread in threads:
        thread.join()
    conn.send("finished")


def test_map_growth_does_not_deadlock_a_transaction_that_reads(path):
    """Growing the map while one thread is inside transaction() and about to read, and another thread
    reads, finishes (no lock-order deadlock).
    """
    ctx = mp.get_context("fork")
    conn, child_conn = ctx.Pipe()
    process = start_process(ctx, _growth_deadlock_scenario, path, child_conn)
    child_conn.close()
    try:
        finished = conn.poll(20)  # a hang detector only: the scenario needs a few milliseconds
        assert finished and conn.recv() == "finished", (
            "deadlock: a reader holding the instance lock waits for a map resize, the resize waits for an open "
            "transaction, and that transaction waits for the instance lock")
        join_all([process])
    finally:
        if process.is_alive():
            process.kill()
            process.join()
