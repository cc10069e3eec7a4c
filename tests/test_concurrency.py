"""Concurrency and crash tests: many threads, many processes (fork and spawn), SIGKILL.

Correctness never depends on timing: threads and processes are ordered with
Barriers, Events, pipes and exit codes. The only sleeps choose a random
moment for SIGKILL; any moment must be safe.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import pickle
import random
import signal
import subprocess
import sys
import threading
import time
import traceback
from collections import Counter
from collections.abc import Callable
from typing import Any

import _workers as w
import pytest

from PersistDict import PersistDict

CONTEXTS = ("fork", "spawn")
JOIN_TIMEOUT = 120  # generous: only reached if something hangs


# ---------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------

@pytest.fixture
def path(tmp_path) -> str:
    return str(tmp_path / "db")


@pytest.fixture
def opened():
    """Open PersistDict instances through this; they are closed at teardown."""
    instances: list[PersistDict] = []

    def open_(path: str, **kwargs: Any) -> PersistDict:
        kwargs.setdefault("background_thread", "disabled")
        d = PersistDict(path, **kwargs)
        instances.append(d)
        return d

    yield open_
    for d in instances:
        d.close()


def start_process(ctx: Any, target: Callable[..., Any], *args: Any) -> Any:
    process = ctx.Process(target=target, args=args, daemon=True)
    process.start()
    return process


def join_all(processes: list[Any], timeout: float = JOIN_TIMEOUT) -> None:
    """Wait for every process; fail (after killing the rest) on a hang or a non-zero exit code."""
    deadline = time.monotonic() + timeout
    for process in processes:
        process.join(max(0.1, deadline - time.monotonic()))
    hung = [p for p in processes if p.is_alive()]
    for p in hung:
        p.kill()
        p.join()
    assert not hung, f"processes hung: {hung}"
    codes = [p.exitcode for p in processes]
    assert codes == [0] * len(processes), f"worker exit codes: {codes}"


def run_threads(n: int, target: Callable[[int], None], timeout: float = JOIN_TIMEOUT) -> None:
    """Run target(i) in n threads; re-raise the first exception any of them raised."""
    errors: list[BaseException] = []

    def wrapper(i: int) -> None:
        try:
            target(i)
        except BaseException as exc:  # noqa: BLE001
            exc.add_note(traceback.format_exc())
            errors.append(exc)

    threads = [threading.Thread(target=wrapper, args=(i,), daemon=True) for i in range(n)]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + timeout
    for thread in threads:
        thread.join(max(0.1, deadline - time.monotonic()))
    assert not any(t.is_alive() for t in threads), "threads hung"
    if errors:
        raise errors[0]


def bounded(fn: Callable[[], Any], what: str, timeout: float = 60) -> Any:
    """Run fn in a daemon thread; fail instead of hanging the suite if it blocks (e.g. a dead lock holder)."""
    box: dict[str, Any] = {}

    def run() -> None:
        try:
            box["result"] = fn()
        except BaseException as exc:  # noqa: BLE001
            box["error"] = exc

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(timeout)
    if thread.is_alive():
        pytest.fail(f"{what} blocked for {timeout}s (a lock or reader slot left by a killed process?)")
    if "error" in box:
        raise box["error"]
    return box.get("result")


def recv(conn: Any, timeout: float = 60) -> Any:
    assert conn.poll(timeout), f"no message within {timeout}s"
    return conn.recv()


def check_no_torn_entries(d: PersistDict) -> None:
    """In one frozen state: every listed key has a value and metadata, and len agrees with iteration."""
    with d.transaction():
        keys = list(d)
        assert len(d) == len(keys), f"len(d)={len(d)} but iteration lists {len(keys)} keys"
        assert len(set(map(repr, keys))) == len(keys), "a key is listed twice"
        for key in keys:
            meta = d.metadata(key)  # KeyError here: an order row without its record
            assert meta.ctime <= meta.atime
            d[key]
        assert d.get_many(keys).keys() == set(keys)
        report = d.check()
        assert report.ok, f"check() found problems: {report}"


class Remote:
    """Drives a _workers.remote_executor process step by step through a pipe."""

    def __init__(self, ctx: Any, path: str, **open_kwargs: Any) -> None:
        self.conn, child_conn = ctx.Pipe()
        self.process = start_process(ctx, w.remote_executor, path, child_conn, open_kwargs)
        child_conn.close()

    def __call__(self, op: str, *args: Any) -> Any:
        self.conn.send((op, *args))
        status, result = recv(self.conn)
        if status != "ok":
            raise AssertionError(f"remote {op} failed: {result}")
        return result

    def stop(self) -> None:
        if self.process.is_alive():
            try:
                self("stop")
            finally:
                join_all([self.process])


# ---------------------------------------------------------------------------
# Threads on one instance
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("background", ["disabled", True])
def test_every_public_method_is_safe_from_16_threads(path, opened, background):
    """16 threads calling every public method on one instance each see exactly their own writes, and
    the final store equals the merged oracles.
    """
    kwargs: dict[str, Any] = {"background_thread": background}
    if background is True:  # make the maintenance thread run often, concurrently with the workers
        kwargs.update(maintenance_interval=0.05, atime_flush_interval=0.01)
    d = opened(path, **kwargs)
    results: list[Any] = [None] * 16
    barrier = threading.Barrier(16)

    def worker(t: int) -> None:
        barrier.wait()
        results[t] = w.run_mixed_ops(d, (0, t), seed=t, n_ops=150)

    run_threads(16, worker)
    errors = [e for r in results for e in r["errors"]]
    assert not errors, "\n".join(errors[:10])
    expected: dict[Any, Any] = {}
    for r in results:
        expected.update(r["oracle"])
    for name in w.SHARED_COUNTERS:
        total = sum(r["increments"][name] for r in results)
        if total:
            expected[name] = total
    assert d.copy() == expected
    assert len(d) == len(expected)
    check_no_torn_entries(d)


def test_access_times_recorded_by_reader_threads_survive_concurrent_flushes(path, opened):
    """Reads record access times without the lock; flushes running meanwhile lose none of them."""
    d = opened(path, caching=False)
    d.set_many({f"k{i}": i for i in range(8000)})
    d._clock = lambda: 2_000_000_000.0  # every read from now on happens at this time
    stop = threading.Event()

    def flusher() -> None:
        while not stop.is_set():
            d.flush_atimes(batch=50)

    def reader(t: int) -> None:
        for i in range(t, 8000, 4):
            assert d[f"k{i}"] == i

    background = threading.Thread(target=flusher)
    switch_interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # switch threads as often as possible, to hit the narrow windows
    background.start()
    try:
        run_threads(4, reader)
    finally:
        stop.set()
        background.join()
        sys.setswitchinterval(switch_interval)
    d.flush_atimes()
    fresh = opened(path)  # its own pending access times are empty: it sees what was written
    stale = [i for i in range(8000) if fresh.metadata(f"k{i}").atime.timestamp() != 2_000_000_000.0]
    assert not stale, f"{len(stale)} access times lost, e.g. k{stale[0]}"


def test_popitem_from_16_threads_and_a_process_pops_each_entry_once(path, opened):
    """popitem() racing in 16 threads and another process hands out every entry exactly once."""
    d = opened(path)
    d.set_many({f"item{i}": i for i in range(1500)})
    ctx = mp.get_context("fork")
    barrier = ctx.Barrier(2)
    result_path = path + ".popped"
    process = start_process(ctx, w.popitem_worker, path, result_path, barrier)
    popped: list[list[Any]] = [[] for _ in range(16)]
    start = threading.Barrier(16)

    def worker(t: int) -> None:
        start.wait()
        if t == 0:
            barrier.wait()  # release the other process together with the threads
        while True:
            try:
                popped[t].append(d.popitem())
            except KeyError:
                return

    run_threads(16, worker)
    join_all([process])
    everything = [item for items in popped for item in items] + w.load_result(result_path)
    counts = Counter(key for key, _ in everything)
    assert [key for key, n in counts.items() if n > 1] == [], "entries popped twice"
    assert dict(everything) == {f"item{i}": i for i in range(1500)}
    assert len(d) == 0 and list(d) == []


def test_a_thousand_threads_each_doing_a_few_operations(path, opened):
    """1,024 threads started together, each setting, reading, racing setdefault, popping and
    incrementing in transaction(), all succeed and add up.
    """
    n = 1024
    d = opened(path)
    d.set_many({f"tmp{i}": i for i in range(n)})
    barrier = threading.Barrier(n)
    winners: list[Any] = [None] * n

    def worker(i: int) -> None:
        barrier.wait()
        d[f"th{i}"] = [i, "list"]
        assert d[f"th{i}"] == [i, "list"]
        assert f"th{i}" in d
        winners[i] = d.setdefault("winner", i)
        assert d.pop(f"tmp{i}") == i
        assert d.get(f"tmp{i}") is None
        with d.transaction():
            d["count"] = d.get("count", 0) + 1
        got = d.get_many([f"th{i}", f"tmp{i}", "winner"])
        assert got[f"th{i}"] == [i, "list"] and f"tmp{i}" not in got and got["winner"] == winners[i]

    old_stack = threading.stack_size(512 * 1024)  # 1,024 default 8 MiB stacks are a lot of address space
    try:
        run_threads(n, worker)
    finally:
        threading.stack_size(old_stack)
    assert d["count"] == n
    assert len(set(winners)) == 1 and d["winner"] == winners[0]
    assert d.get_many([f"th{i}" for i in range(n)]) == {f"th{i}": [i, "list"] for i in range(n)}
    assert not any(f"tmp{i}" in d for i in range(n))
    assert len(d) == n + 2


def _snapshot_errors(d: PersistDict) -> list[str]:
    """Check every snapshot operation against the group invariant once."""
    errors: list[str] = []
    keys = list(d.keys())
    groups = Counter(w.group_of(k) for k in keys)
    errors += [f"keys(): group {g} has {c} keys" for g, c in groups.items() if c != w.GROUP]
    errors += w.group_snapshot_errors(dict(d.items()))
    errors += w.group_snapshot_errors(d.copy())
    values = Counter(d.values())
    errors += [f"values(): {v} appears {c} times" for v, c in values.items() if c != w.GROUP]
    size = len(d)
    if size % w.GROUP:
        errors.append(f"len(d)={size} is not a whole number of groups")
    if not isinstance(d == {}, bool):
        errors.append("d == {} is not a bool")
    g = random.randrange(8)
    got = d.get_many(w.group_keys(g))
    if got and (len(got) != w.GROUP or len(set(got.values())) != 1):
        errors.append(f"get_many(group {g}) torn: {got}")
    return errors


@pytest.mark.slow
def test_snapshots_are_consistent_while_threads_and_processes_mutate(path, opened):
    """keys/values/items/len/==/copy/get_many never raise and always show whole groups while 2 threads
    and 2 processes (fork, spawn) write and delete groups atomically.
    """
    d = opened(path)
    n_groups, n_ops = 8, 250
    processes = [
        start_process(mp.get_context("fork"), w.group_mutator_process, path, 100, n_groups, n_ops, 100, None),
        start_process(mp.get_context("spawn"), w.group_mutator_process, path, 101, n_groups, n_ops, 101, None),
    ]
    mutators_done = threading.Event()
    errors: list[str] = []
    iterations = [0] * 4

    def reader(i: int) -> None:
        while not (mutators_done.is_set() and iterations[i] >= 20):
            try:
                errors.extend(_snapshot_errors(d))
            except Exception as exc:  # noqa: BLE001 - a snapshot that raises is a failure too
                errors.append(f"snapshot raised {exc!r}\n{traceback.format_exc()}")
            iterations[i] += 1

    def mutator(i: int) -> None:
        w.mutate_groups(d, i, n_groups, n_ops, seed=i)

    readers = threading.Thread(target=run_threads, args=(4, reader))
    readers.start()
    try:
        run_threads(2, mutator)
        join_all(processes)
    finally:
        mutators_done.set()
        readers.join()
    assert not errors, "\n".join(errors[:10])
    assert not _snapshot_errors(d)
    check_no_torn_entries(d)


def test_get_many_returns_one_snapshot(path, opened):
    """get_many over 40 keys that a process rewrites (and deletes) together always returns one version,
    never going back.
    """
    d = opened(path)
    keys = [f"gm{i}" for i in range(20)] + [("gm", i) for i in range(20)]
    ctx = mp.get_context("fork")
    conn, child_conn = ctx.Pipe()
    process = start_process(ctx, _versioned_writer, path, keys, 400, child_conn)
    child_conn.close()
    writer_done = threading.Event()
    errors: list[str] = []

    def reader(i: int) -> None:
        last = -1
        reads = 0
        while not (writer_done.is_set() and reads >= 20):
            try:
                got = d.get_many(keys)
            except Exception as exc:  # noqa: BLE001 - any raise is a failure
                errors.append(f"get_many raised {exc!r}")
                got = {}
            reads += 1
            if not got:
                continue
            versions = set(got.values())
            if len(got) != len(keys) or len(versions) != 1:
                errors.append(f"torn get_many: {len(got)} keys, versions {sorted(versions)}")
                continue
            version = versions.pop()
            if version < last:
                errors.append(f"get_many went back from version {last} to {version}")
            last = version

    readers = threading.Thread(target=run_threads, args=(4, reader))
    readers.start()
    try:
        conn.send("go")
        assert recv(conn) == "done"
        join_all([process])
    finally:
        writer_done.set()
        readers.join()
    assert not errors, "\n".join(errors[:10])
    assert d.get_many(keys) == dict.fromkeys(keys, 399)


def _versioned_writer(path: str, keys: list[Any], n: int, conn: Any) -> None:
    d = w.open_db(path)
    conn.recv()
    for version in range(n):
        if version % 7 == 3:
            with d.transaction():
                for key in keys:
                    d.pop(key, None)
        else:
            d.set_many(dict.fromkeys(keys, version))
    d.close()
    conn.send("done")


# ---------------------------------------------------------------------------
# Processes
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("start_method", CONTEXTS)
def test_concurrent_writers_on_disjoint_keys_lose_no_write(path, opened, start_method):
    """4 processes overwriting and deleting their own keys (single ops, set_many, update) leave exactly
    the expected state.
    """
    ctx = mp.get_context(start_method)
    n_procs, n_keys, rounds = 4, 60, 5
    barrier = ctx.Barrier(n_procs)
    join_all([start_process(ctx, w.disjoint_writer, path, p, n_keys, rounds, barrier) for p in range(n_procs)])
    expected: dict[str, Any] = {}
    for p in range(n_procs):
        expected.update(w.disjoint_plan(p, n_keys, rounds))
    d = opened(path)
    assert d.copy() == expected
    check_no_torn_entries(d)


@pytest.mark.parametrize("start_method", CONTEXTS)
def test_concurrent_writers_on_shared_keys_keep_a_last_write_and_every_append(path, opened, start_method):
    """4 processes overwriting the same keys leave each key at some process's final write, and
    transaction() appends to a shared list lose nothing.
    """
    ctx = mp.get_context(start_method)
    n_procs, rounds = 4, 40
    keys = [f"shared{i}" for i in range(8)]
    barrier = ctx.Barrier(n_procs)
    join_all([start_process(ctx, w.shared_writer, path, p, keys, rounds, barrier) for p in range(n_procs)])
    d = opened(path)
    for key in keys:
        proc, last_round = d[key]
        assert proc in range(n_procs) and last_round == rounds - 1, f"{key} holds a superseded write {d[key]}"
    log = d["log"]
    assert sorted(log) == sorted((p, r) for p in range(n_procs) for r in range(rounds)), "lost or doubled append"
    for p in range(n_procs):
        assert [r for q, r in log if q == p] == list(range(rounds)), "a process's appends are out of order"


@pytest.mark.slow
@pytest.mark.parametrize("start_method", CONTEXTS)
def test_seeded_replay_4_processes_x_4_threads_is_consistent(path, opened, start_method):
    """A seeded mix of every operation by 4 processes x 4 threads (each checking its own key range on
    the fly) ends in exactly the merged expected state, with exact shared counters and no torn entry
    at any moment.
    """
    ctx = mp.get_context(start_method)
    d = opened(path)
    n_procs, n_threads, n_ops = 4, 4, 120
    barrier = ctx.Barrier(n_procs)
    result_paths = [f"{path}.result{p}" for p in range(n_procs)]
    # fork: the children use the inherited instance; spawn: it travels pickled and reopens by path
    processes = [start_process(ctx, w.replay_worker, d, p, n_threads, 7, n_ops, barrier, result_paths[p])
                 for p in range(n_procs)]
    # While they run, repeatedly freeze the store and check that no entry is torn.
    checks = 0
    while checks < 3 or any(p.is_alive() for p in processes):
        check_no_torn_entries(d)
        checks += 1
        if checks > 10_000:
            break
    join_all(processes)
    results = [r for rp in result_paths for r in w.load_result(rp)]
    assert len(results) == n_procs * n_threads
    errors = [e for r in results for e in r["errors"]]
    assert not errors, "\n".join(errors[:10])
    expected: dict[Any, Any] = {}
    for r in results:
        assert not (expected.keys() & r["oracle"].keys()), "key ranges overlap"
        expected.update(r["oracle"])
    for name in w.SHARED_COUNTERS:
        total = sum(r["increments"][name] for r in results)
        if total:
            expected[name] = total
    assert d.copy() == expected
    assert sorted(map(repr, d)) == sorted(map(repr, expected))
    check_no_torn_entries(d)


@pytest.mark.parametrize("start_method", CONTEXTS)
def test_transaction_counters_from_8_threads_x_2_processes_are_exact(path, opened, start_method):
    """Counters incremented inside (nested) transaction() by 8 threads in each of 2 processes end
    exactly right, and rolled-back increments leave no trace.
    """
    ctx = mp.get_context(start_method)
    d = opened(path)
    n_procs, n_threads, n_incr = 2, 8, 25
    barrier = ctx.Barrier(n_procs)
    join_all([start_process(ctx, w.counter_worker, d, p, n_threads, n_incr, barrier) for p in range(n_procs)])
    total = n_procs * n_threads * n_incr
    assert d["count"] == total
    assert d["nested"] == total
    assert all(d[f"seen.{p}.{t}"] == n_incr for p in range(n_procs) for t in range(n_threads))


def test_setdefault_and_pop_race_across_processes_have_one_winner(path, opened):
    """6 processes racing setdefault on one key agree on a single winning value; racing pop hands the
    value to exactly one.
    """
    ctx = mp.get_context("fork")
    n_procs, rounds = 6, 40
    d = opened(path)
    d.set_many({f"pop{r}": ("popped", r) for r in range(rounds)})
    barrier = ctx.Barrier(n_procs)
    result_paths = [f"{path}.sd{p}" for p in range(n_procs)]
    join_all([start_process(ctx, w.setdefault_pop_racer, path, p, rounds, barrier, result_paths[p])
              for p in range(n_procs)])
    results = [w.load_result(rp) for rp in result_paths]
    for r in range(rounds):
        answers = {res["setdefault"][r] for res in results}
        assert len(answers) == 1, f"round {r}: setdefault returned different values {answers}"
        winner = answers.pop()
        assert winner[1] == r and d[f"sd{r}"] == winner
        assert {res["seen_after"][r] for res in results} == {winner}
        pops = [res["pop"][r] for res in results]
        assert sorted(pops, key=repr) == sorted([("popped", r)] + [w.MISSING] * (n_procs - 1), key=repr), \
            f"round {r}: pop results {pops}"
        assert f"pop{r}" not in d


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
    assert d._engine.storage.info()["map_size"] > w.GROWTH_MAP_SIZE, "test precondition: the map grew"


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
    storage = d._engine.storage
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


def _rollbacks_while_two_threads_read(path, conn):
    d = w.open_db(path, caching=False)
    d.update({f"k{i}": i for i in range(100)})
    stop = threading.Event()

    def read() -> None:
        i = 0
        while not stop.is_set():
            d.get(f"k{i % 100}")
            i += 1

    readers = [threading.Thread(target=read) for _ in range(2)]
    for thread in readers:
        thread.start()
    for round_ in range(20):
        try:  # rolls back the whole transaction
            with d.transaction():
                d["k0"] = -round_
                raise KeyError("roll back")
        except KeyError:
            pass
        with d.transaction():  # rolls back a savepoint only
            try:
                with d.transaction():
                    d["k1"] = -round_
                    raise KeyError("roll back")
            except KeyError:
                pass
        try:  # a write that fails inside its transaction
            d.setdefault(f"new{round_}", lambda: None)
        except Exception:
            pass
    stop.set()
    for thread in readers:
        thread.join()
    conn.send("finished" if d["k0"] == 0 and d["k1"] == 1 and "new0" not in d else "wrong state")


def test_rollbacks_finish_while_two_threads_read(path):
    """A rolled-back transaction(), savepoint and failed write finish while two other threads read
    in a loop. py-lmdb 2-3 make a write abort wait until no other thread is inside LMDB, which two
    looping readers never allow: it hung, holding the writer lock of every process."""
    ctx = mp.get_context("fork")
    conn, child_conn = ctx.Pipe()
    process = start_process(ctx, _rollbacks_while_two_threads_read, path, child_conn)
    child_conn.close()
    try:
        assert conn.poll(60), "a rollback hung while two threads read"
        assert conn.recv() == "finished"
        join_all([process])
    finally:
        if process.is_alive():
            process.kill()
            process.join()


# ---------------------------------------------------------------------------
# Never stale
# ---------------------------------------------------------------------------

STALE_KEYS = ("plain", ("tuple", 1), 12345, "L" * 600)
READ_METHODS = ("getitem", "get", "contains", "get_many", "items")


def _read_as_value(read: Callable[..., Any], method: str, key: Any) -> Any:
    """Read ``key`` with one read method; the value, or MISSING (or True for contains)."""
    if method == "get_many":
        return read("get_many", [key]).get(key, w.MISSING)
    if method == "items":
        return read("items").get(key, w.MISSING)
    if method == "contains":
        return True if read("contains", key) else w.MISSING
    return read(method, key)


def drive_never_stale(reader: Callable[..., Any], writer: Callable[..., Any], rounds: int, seed: int,
                      caching: bool) -> None:
    """Reader warms its cache on a key, writer changes it, and the reader's very next read must see the change."""
    rng = random.Random(seed)
    state: dict[Any, Any] = {}
    cached_rounds = 0
    for n in range(rounds):
        key = rng.choice(STALE_KEYS)
        if n % 40 == 39:  # now and then, clear everything from the writer
            for k in STALE_KEYS:
                reader("warm", k)
            writer("clear")
            state.clear()
        else:
            cached = reader("warm", key)
            if key in state and caching:
                cached_rounds += bool(cached)
            value = rng.choice([(n, "new"), [n, "mutable"], {"n": n}, f"s{n}", n])
            present = key in state
            op = rng.choice(["set", "set_many", "update", "txn_set"] +
                            (["del", "pop", "txn_del"] * 2 if present else ["setdefault"]))
            if op in ("set", "txn_set", "setdefault"):
                writer(op, key, value)
                state[key] = value
            elif op in ("set_many", "update"):
                writer(op, {key: value})
                state[key] = value
            else:
                writer(op, key)
                del state[key]
        if n % 3 == 1:  # the reader's own commit must not vouch for the cache after someone else's
            reader("set", "reader.own", n)
        method = READ_METHODS[n % len(READ_METHODS)]
        check_key = key if n % 40 != 39 else rng.choice(STALE_KEYS)
        got = _read_as_value(reader, method, check_key)
        want = state.get(check_key, w.MISSING)
        if method == "contains" and want != w.MISSING:
            want = True
        assert got == want, f"round {n}: stale {method} of {check_key!r:.30}: got {got!r}, want {want!r}"
    if caching:
        assert cached_rounds > rounds // 4, "test precondition: the reader's front cache was rarely used"


@pytest.mark.parametrize("caching", [True, False])
@pytest.mark.parametrize("start_method", CONTEXTS)
def test_never_stale_across_processes(path, opened, start_method, caching):
    """A process that has a key cached sees another process's overwrite, delete, pop, update,
    transaction or clear on its very next read, in both directions.
    """
    ctx = mp.get_context(start_method)
    d = opened(path, caching=caching)
    remote = Remote(ctx, path, caching=caching)
    try:
        def local(op, *args):
            return w.remote_op(d, op, *args)

        drive_never_stale(reader=local, writer=remote, rounds=120, seed=1, caching=caching)  # we read, it writes
        drive_never_stale(reader=remote, writer=local, rounds=120, seed=2, caching=caching)  # it reads, we write
    finally:
        remote.stop()


@pytest.mark.parametrize("caching", [True, False])
def test_never_stale_between_two_instances_in_one_process(path, opened, caching):
    """Two instances on one path in one process (sharing the environment, separate caches) never read
    each other's overwritten values.
    """
    d1 = opened(path, caching=caching)
    d2 = opened(path, caching=caching)
    def one(op, *args):
        return w.remote_op(d1, op, *args)

    def two(op, *args):
        return w.remote_op(d2, op, *args)

    drive_never_stale(reader=one, writer=two, rounds=200, seed=3, caching=caching)
    drive_never_stale(reader=two, writer=one, rounds=200, seed=4, caching=caching)


def test_never_stale_across_threads_of_one_instance_with_background_thread(path, opened):
    """With the default background thread, a thread reading through the lock-free cache path sees
    another thread's write on its next read.
    """
    d = opened(path, background_thread=True, atime_flush_interval=0.01, maintenance_interval=0.05)
    requests: list[Any] = []
    request_ready, done = threading.Semaphore(0), threading.Semaphore(0)
    answers: list[Any] = []
    stop = object()

    def writer_thread() -> None:  # executes writes requested by the reader, one at a time
        while True:
            request_ready.acquire()
            request = requests.pop()
            if request is stop:
                return
            answers.append(w.remote_op(d, *request))
            done.release()

    thread = threading.Thread(target=writer_thread, daemon=True)
    thread.start()

    def writer(op: str, *args: Any) -> Any:
        requests.append((op, *args))
        request_ready.release()
        assert done.acquire(timeout=60)
        return answers.pop()

    try:
        drive_never_stale(reader=lambda op, *args: w.remote_op(d, op, *args), writer=writer,
                          rounds=200, seed=5, caching=True)
    finally:
        requests.append(stop)
        request_ready.release()
        thread.join(60)


@pytest.mark.parametrize("caching", [True, False])
def test_transaction_reads_its_own_writes_over_a_warm_cache(path, opened, caching):
    """Inside transaction() a thread reads its own uncommitted writes and deletes even for keys its
    cache holds, while another thread still reads the committed values.
    """
    d = opened(path, caching=caching)
    d.set_many({"k": "committed", "gone": "committed", 7: "committed"})
    for _ in range(4):  # warm the cache
        d["k"], d.get("gone"), d[7], "k" in d
    in_txn, release = threading.Event(), threading.Event()
    seen_by_other: list[Any] = []

    def other_thread() -> None:
        assert in_txn.wait(60)
        for _ in range(3):
            seen_by_other.append((d["k"], d.get("gone"), d[7], "new" in d))
        release.set()

    thread = threading.Thread(target=other_thread, daemon=True)
    thread.start()
    with d.transaction():
        d["k"] = "mine"
        del d["gone"]
        d[7] = "mine"
        d["new"] = "mine"
        for _ in range(3):
            assert d["k"] == "mine" and d.get("k") == "mine"
            assert "gone" not in d and d.get("gone") is None
            assert d[7] == "mine" and d.get_many(["k", "gone", 7]) == {"k": "mine", 7: "mine"}
            assert d["new"] == "mine"
        in_txn.set()
        assert release.wait(60)
        assert d["k"] == "mine"
    thread.join(60)
    assert seen_by_other == [("committed", "committed", "committed", False)] * 3
    assert d.copy() == {"k": "mine", 7: "mine", "new": "mine"}


@pytest.mark.parametrize("caching", [True, False])
def test_monotonic_reads_while_another_process_writes(path, opened, caching):
    """A value another process has acknowledged writing is never followed by an older one, read after
    read (cache on and off).
    """
    ctx = mp.get_context("fork")
    d = opened(path, caching=caching)
    d["mono"] = -1
    conn, child_conn = ctx.Pipe()
    n = 1500
    process = start_process(ctx, w.monotonic_writer, path, child_conn, n, {"caching": caching})
    child_conn.close()
    conn.send("ready")
    last_read = -1
    acknowledged = -1
    while acknowledged < n - 1:
        for _ in range(3):  # reads between acknowledgements: served from the cache when possible
            value = d["mono"] if acknowledged % 2 else d.get("mono")
            assert value >= last_read, f"read {value} after having read {last_read}"
            assert value >= acknowledged, f"read {value} after the writer acknowledged {acknowledged}"
            last_read = value
        acknowledged = recv(conn)
        value = d["mono"]
        assert value >= acknowledged, f"read {value} right after the writer acknowledged {acknowledged}"
        last_read = max(last_read, value)
    join_all([process])
    assert d["mono"] == n - 1


@pytest.mark.parametrize("caching", [True, False])
def test_uncommitted_transaction_of_another_process_is_invisible(path, opened, caching):
    """While another process holds an open transaction its writes are invisible; after rollback they
    never appear, after commit they appear at once.
    """
    ctx = mp.get_context("fork")
    d = opened(path, caching=caching)
    d.set_many({"a": "old-a", "b": "old-b"})
    remote = Remote(ctx, path, caching=caching)
    try:
        for commit in (False, True, False, True):
            before = d.copy()
            for _ in range(3):
                d["a"], d.get("b")  # cache them
            change = {"a": f"dirty-{commit}", "b": w.MISSING, "c": "new"}
            remote("begin_txn_and_write", change)
            for _ in range(3):
                assert d["a"] == before["a"] and d.get("b") == before.get("b") and "c" not in d
                assert d.copy() == before and d.get_many(["a", "b", "c"]) == before
            remote("end_txn", commit)
            after = dict(before, **{k: v for k, v in change.items() if v != w.MISSING})
            if commit:
                after.pop("b")
            else:
                after = before
            assert d["a"] == after["a"] and d.get("b") == after.get("b") and d.get("c") == after.get("c")
            assert d.copy() == after
            assert remote("items") == after
            d["b"] = "old-b"  # back to a known state for the next round
            d.pop("c", None)
    finally:
        remote.stop()


# ---------------------------------------------------------------------------
# Crash safety (SIGKILL)
# ---------------------------------------------------------------------------

def _expected_after(seed: int, n_ops: int) -> dict[str, Any]:
    state: dict[str, Any] = {}
    plan = w.crash_plan(seed)
    for _ in range(n_ops):
        w.apply_crash_op(state, next(plan))
    return state


def _check_reopens_and_writes(path: str, durability: str) -> dict[str, Any]:
    """Open the database fresh, check it, write to it; return its contents as found."""
    def check() -> dict[str, Any]:
        d = PersistDict(path, background_thread="disabled", durability=durability)
        try:
            found = d.copy()
            check_no_torn_entries(d)
            d["after.crash"] = "written"
            with d.transaction():
                d["after.crash.txn"] = d.get("after.crash.txn", 0) + 1
            assert d["after.crash"] == "written" and d.get("after.crash.txn") >= 1
            del d["after.crash"]
            del d["after.crash.txn"]
            return found
        finally:
            d.close()

    return bounded(check, "reopening and writing after SIGKILL")


@pytest.mark.slow
@pytest.mark.parametrize("run", range(40))
def test_sigkill_writer_keeps_every_acknowledged_write(path, run):
    """A writer SIGKILLed at a random moment leaves exactly the state after its acknowledged operations
    (or one more), and the database reopens and accepts writes.
    """
    ctx = mp.get_context("spawn" if run % 6 == 5 else "fork")
    durability = ("safe", "full", "fast")[run % 3]
    seed = 1000 + run
    rng = random.Random(seed)
    conn, child_conn = ctx.Pipe(duplex=False)
    process = start_process(ctx, w.crash_writer, path, seed, child_conn, durability)
    child_conn.close()
    acknowledged = -1
    wanted = rng.choice((1, 3, 10, 40, 150))
    while acknowledged < wanted - 1:
        acknowledged = recv(conn)
    time.sleep(rng.uniform(0, 0.02))  # a random kill moment; any moment must be safe
    os.kill(process.pid, signal.SIGKILL)
    process.join(JOIN_TIMEOUT)
    assert process.exitcode == -signal.SIGKILL
    try:
        while conn.poll():
            acknowledged = conn.recv()
    except EOFError:
        pass
    n_done = acknowledged + 1
    found = _check_reopens_and_writes(path, durability)
    with_acked, with_next = _expected_after(seed, n_done), _expected_after(seed, n_done + 1)
    assert found in (with_acked, with_next), (
        f"after {n_done} acknowledged operations the store holds neither their result nor the result of "
        f"one more: missing {sorted(with_acked.keys() - found.keys())}, "
        f"unexpected {sorted(found.keys() - with_next.keys())}"
    )


@pytest.mark.parametrize("start_method", CONTEXTS)
def test_sigkill_inside_transaction_leaves_nothing_of_it(path, opened, start_method):
    """A process killed while its transaction() is open leaves none of its changes, and both a live
    instance and a fresh one can write afterwards.
    """
    ctx = mp.get_context(start_method)
    d = opened(path)
    base = {f"base.{i}": i for i in range(10)}
    d.set_many(base)
    for key in base:
        d[key], d[key]  # cached in this (surviving) process
    conn, child_conn = ctx.Pipe()
    process = start_process(ctx, w.txn_holder, path, child_conn, "safe")
    child_conn.close()
    assert recv(conn) == "inside"
    assert d.copy() == base  # not visible while open either
    os.kill(process.pid, signal.SIGKILL)
    process.join(JOIN_TIMEOUT)
    assert process.exitcode == -signal.SIGKILL

    def live_instance_checks() -> None:
        assert d.copy() == base
        assert d["base.0"] == 0 and d["base.1"] == 1 and "new.in.txn" not in d
        d["live.write"] = 1  # must get the write lock the dead process held
        with d.transaction():
            d["base.0"] = d["base.0"] + 100
        assert d["base.0"] == 100

    bounded(live_instance_checks, "writing through an instance that was open during the kill")
    d.close()
    found = _check_reopens_and_writes(path, "safe")
    assert found == dict(base, **{"base.0": 100, "live.write": 1})


def test_sigkill_reader_leaves_no_blocking_reader(path, opened):
    """A process killed while holding a read snapshot blocks no writer, and its reader slot is
    reclaimed when the database is next opened (while other processes still have it open).
    """
    d = opened(path)
    d.set_many({"first": 1, "block-here": "block-here", "last": 2})
    ctx = mp.get_context("fork")
    # Another process keeps the environment open, so a reopen cannot just reset the reader table.
    bystander = Remote(ctx, path)
    try:
        conn, child_conn = ctx.Pipe()
        process = start_process(ctx, w.reader_holder, path, child_conn)
        child_conn.close()
        assert recv(conn) == "inside"
        pid = process.pid
        assert str(pid) in d._engine.storage.env.readers().split(), "test precondition: the reader holds a slot"
        os.kill(pid, signal.SIGKILL)
        process.join(JOIN_TIMEOUT)

        def write_a_lot() -> None:
            for i in range(300):
                d[f"w{i % 20}"] = "x" * 2000 * (i % 3)

        bounded(write_a_lot, "writing after a reader was killed")
        assert bystander("get", "w19") == "x" * 2000 * (299 % 3)  # the last write to w19
        d.close()
        fresh = opened(path)
        readers = fresh._engine.storage.env.readers()
        assert str(pid) not in readers.split(), f"the dead reader {pid} still holds a slot:\n{readers}"
        fresh["after"] = 1
        assert fresh["after"] == 1 and fresh["first"] == 1
        assert bystander("get", "after") == 1
    finally:
        bystander.stop()


# ---------------------------------------------------------------------------
# Fork with an open instance
# ---------------------------------------------------------------------------

def _child_uses_inherited(d: PersistDict, i: int) -> None:
    assert d["generation"] == i // 5  # written by the parent just before the fork
    assert d["parent.list"] == [1, 2, 3]  # cached in the parent before the fork
    d[f"child{i}"] = {"i": i, "pid": os.getpid()}
    with d.transaction():
        d["forks"] = d.get("forks", 0) + 1
    assert d[f"child{i}"]["i"] == i
    assert len(d.get_many([f"child{i}", "forks"])) == 2
    d.setdefault("first.child", i)


def _raw_fork(target: Callable[..., None], *args: Any) -> int:
    pid = os.fork()
    if pid == 0:  # child: never return into pytest
        code = 1
        try:
            target(*args)
            code = 0
        except BaseException:  # noqa: BLE001
            traceback.print_exc()
        finally:
            os._exit(code)
    return pid


def _child_exit_code(pid: int, timeout: float = 60) -> int:
    """Wait for a forked child; kill it and fail if it hangs."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return os.waitstatus_to_exitcode(status)
        time.sleep(0.005)
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    pytest.fail(f"forked child {pid} hung for {timeout}s")


def _reader_slots_of(storage: Any, pid: int) -> int:
    """Rows of LMDB's reader table held by process ``pid``."""
    rows = storage.env.readers().splitlines()[1:]
    return sum(1 for row in rows if row.split()[:1] == [str(pid)])


def _child_front_cache_serves_reads(d: PersistDict) -> None:
    d["child.key"] = {"from": "child"}
    for _ in range(3):  # the child's own front cache takes the key...
        d["child.key"]
    hits = d.stats()["front_cache_hits"]
    # ...and serves d[k], get and `in` from it
    assert d["child.key"] == {"from": "child"} and d.get("child.key") == {"from": "child"} and "child.key" in d
    assert d.stats()["front_cache_hits"] == hits + 3, "the child's front cache does not serve reads"


@pytest.mark.parametrize("parent_cache", ["empty", "warm"])
def test_forked_child_has_a_working_front_cache(path, opened, parent_cache):
    """A child forked from a parent whose front cache is empty or warm gets a front cache of its own
    that serves d[k], get and `in` (no other process writes meanwhile: the counts are exact)."""
    d = opened(path)
    d["parent.key"] = 1
    if parent_cache == "warm":
        for _ in range(3):
            d["parent.key"]
        assert d.stats()["front_cache_entries"] >= 1
    assert _child_exit_code(_raw_fork(_child_front_cache_serves_reads, d)) == 0
    assert d["child.key"] == {"from": "child"}


def test_twenty_forked_children_use_the_inherited_instance(path, opened):
    """20 children forked (multiprocessing and raw os.fork, 5 at a time) read and write through the
    instance they inherited; the parent sees every write at once and the readers table stays small.
    """
    d = opened(path)
    d["parent.list"] = [1, 2, 3]
    ctx = mp.get_context("fork")
    readers_seen = []
    for batch in range(4):
        d["generation"] = batch
        for _ in range(3):
            d["parent.list"], d["generation"]  # warm the parent's cache before forking
        processes, pids = [], []
        for i in range(batch * 5, batch * 5 + 5):
            if i % 2:
                pids.append(_raw_fork(_child_uses_inherited, d, i))
            else:
                processes.append(start_process(ctx, _child_uses_inherited, d, i))
        join_all(processes)
        for pid in pids:
            assert _child_exit_code(pid) == 0, f"forked child {pid} failed"
        # the parent's (cached) view shows the children's writes immediately
        assert d["forks"] == batch * 5 + 5
        for i in range(batch * 5 + 5):
            assert d[f"child{i}"]["i"] == i
        readers_seen.append(d._engine.storage.info()["readers_in_use"])
    assert d["first.child"] in range(5)
    d["parent.after"] = 1
    assert d["parent.after"] == 1
    assert max(readers_seen) <= 8, f"readers table grows with forks: {readers_seen}"
    check_no_torn_entries(d)


PARENT_AFTER_CHILDREN_SCRIPT = """
import os, sys
from PersistDict import PersistDict
d = PersistDict(sys.argv[1], caching=False, background_thread="disabled")  # every read goes to LMDB
d["k"] = 1
for i in range(3):
    assert d["k"] == 1  # between two reads the parent holds a spare read transaction
    pid = os.fork()
    if pid == 0:  # the child reopens the store, uses it, and ends as the exit mode says
        d[f"child{i}"] = i
        assert d["k"] == 1
        if sys.argv[2] == "close":
            d.close()
        if sys.argv[2] == "os._exit":
            os._exit(0)
        sys.exit(0)  # the interpreter's own shutdown
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0, status
    for _ in range(3):
        assert d["k"] == 1 and f"child{i}" in d and d.get(f"child{i}") == i
slots = d._engine.storage.env.readers().split().count(str(os.getpid()))
assert slots <= 2, d._engine.storage.env.readers()
print("ok")
"""


@pytest.mark.parametrize("child_exit", ["close", "os._exit", "interpreter exit"])
def test_parent_reads_after_children_reopened_the_store(path, child_exit):
    """The parent's reads keep working after forked children reopened the store and exited (closing
    it, with os._exit, or through the interpreter's shutdown). Between two reads the parent holds a
    reader slot for its next one (py-lmdb's spare transaction): a child that closed an inherited copy
    of it would free that slot under the parent (its next read: MDB_BAD_RSLOT)."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    result = subprocess.run([sys.executable, "-c", PARENT_AFTER_CHILDREN_SCRIPT, path, child_exit],
                            capture_output=True, text=True, timeout=60, cwd=root)
    assert result.returncode == 0 and result.stdout.strip() == "ok", result.stderr[-3000:]


# ---------------------------------------------------------------------------
# Fork while other threads of the parent are busy with the instance
# ---------------------------------------------------------------------------

def _fork_children_while(busy: Callable[[threading.Event, list[BaseException]], None],
                         child: Callable[[], None], forks: int = 12) -> None:
    """Run ``busy`` in a thread (until its event is set), fork ``forks`` children running ``child``
    meanwhile, and fail if a child or the thread failed."""
    stop, errors = threading.Event(), []
    thread = threading.Thread(target=busy, args=(stop, errors), daemon=True)
    thread.start()
    try:
        for _ in range(forks):
            time.sleep(0.01)
            assert _child_exit_code(_raw_fork(child)) == 0, "a forked child failed (see its traceback above)"
    finally:
        stop.set()
        thread.join(60)
    assert not thread.is_alive(), "the busy thread hangs"
    assert not errors, f"the busy thread failed: {errors[0]!r}"


def test_fork_while_another_thread_reads_in_a_loop(path, opened):
    """A parent thread reading without pause (so py-lmdb's spare read transaction is in use or idle
    at any moment) keeps reading correct values while children are forked, reopen the store and exit;
    the parent holds no more reader slots than it has threads reading."""
    d = opened(path, caching=False, background_thread="disabled")  # every read goes to LMDB
    d.set_many({f"k{i}": i for i in range(100)})

    def read(stop: threading.Event, errors: list[BaseException]) -> None:
        try:
            while not stop.is_set():
                for i in range(100):
                    assert d[f"k{i}"] == i and f"k{i}" in d
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    def child() -> None:
        d[f"child{os.getpid()}"] = 1
        assert d["k7"] == 7

    _fork_children_while(read, child)
    assert d["k99"] == 99 and sum(1 for k in d if k.startswith("child")) == 12
    assert _reader_slots_of(d._engine.storage, os.getpid()) <= 2, d._engine.storage.env.readers()


def test_fork_while_another_thread_opens_and_closes_stores(tmp_path, opened):
    """Children forked while another parent thread opens, uses and closes stores run, and every
    store keeps working: fork() and a concurrent close of a store's last instance take turns."""
    d = opened(str(tmp_path / "kept"), caching=False)
    d["k"] = 1
    churn_paths = [str(tmp_path / f"churn{i}") for i in range(3)]
    rounds = [0]

    def churn(stop: threading.Event, errors: list[BaseException]) -> None:
        try:
            while not stop.is_set():
                for p in churn_paths:
                    with PersistDict(p, caching=False, background_thread="disabled") as other:
                        other["n"] = other.get("n", 0) + 1
                rounds[0] += 1
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    def child() -> None:
        assert d["k"] == 1
        d["k"] = 1

    _fork_children_while(churn, child)
    assert d["k"] == 1 and rounds[0] > 0
    for p in churn_paths:
        with PersistDict(p, background_thread="disabled") as other:
            assert other["n"] >= rounds[0]


FORK_DEADLOCK_SCRIPT = """
import os, sys, threading, time
from PersistDict import PersistDict
from PersistDict.engines.lmdb import env as _storage
_storage.FORK_WAIT_SECONDS = 1.0
root = sys.argv[1]
d = PersistDict(os.path.join(root, "d"), background_thread="disabled")
d["k"] = 0
gate = d._engine.storage._gate
inside, go = threading.Event(), threading.Event()
results = {}

def wait_for(condition, what):
    deadline = time.monotonic() + 30
    while not condition():
        assert time.monotonic() < deadline, "never happened: " + what
        time.sleep(0.001)

def a():  # in a transaction of d, opens another store (takes the registry lock)
    with d.transaction():
        d["k"] = 1
        inside.set()
        go.wait(60)
        with PersistDict(os.path.join(root, "other"), background_thread="disabled") as other:
            other["x"] = 1
    results["a"] = True

def b():  # grows d's map: holds d's gate, waits for a's transaction
    d._engine.storage._grow_map()
    results["b"] = True

def f():  # forks: holds the registry lock, waits for d's gate
    pid = os.fork()
    if pid == 0:
        os._exit(0)
    results["f"] = os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])

threads = [threading.Thread(target=t, daemon=True) for t in (a, b, f)]
threads[0].start()
assert inside.wait(30)
threads[1].start()
wait_for(lambda: gate.resizing, "b holds the gate")
threads[2].start()
wait_for(_storage._registry_lock.locked, "f holds the registry lock")
go.set()  # a now waits for the registry lock f holds
for thread in threads:
    thread.join(30)
assert results == {"a": True, "b": True, "f": 0}, results
assert d["k"] == 1
print("ok")
"""


def test_fork_is_not_deadlocked_by_a_transaction_that_opens_a_store(tmp_path):
    """Thread A, inside d.transaction(), opens another store (which takes the registry lock); thread B
    grows d's map (holding its gate, waiting for A's transaction); thread F forks (holding the
    registry lock, waiting for d's gate). Each waits for the next: fork() must give up waiting at
    its deadline, fork, and let all three finish. (In a process of its own: a deadlock there
    leaves locks held.)"""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    try:
        result = subprocess.run([sys.executable, "-c", FORK_DEADLOCK_SCRIPT, str(tmp_path)],
                                capture_output=True, text=True, timeout=90, cwd=root)
    except subprocess.TimeoutExpired:
        pytest.fail("deadlock: the three threads never finished")
    assert result.returncode == 0 and result.stdout.strip() == "ok", result.stderr[-3000:]


@pytest.mark.parametrize("child_action", ["use", "close"])
def test_forked_child_does_not_take_away_a_parent_threads_read_snapshot(path, opened, child_action):
    """A child forked while a parent thread is inside items() (blocked in its value codec), then using
    or closing the inherited instance, leaves that thread's snapshot intact.
    """
    inside, go = threading.Event(), threading.Event()

    def loads(data: bytes) -> Any:
        value = pickle.loads(data)
        if value == "block-here":  # hold the parent's items() snapshot open, deterministically
            inside.set()
            go.wait(60)
        return value

    d = opened(path, value_unserializer=loads)
    d.set_many({f"a{i}": ("old", i, "x" * 3000) for i in range(100)})
    d["block-here"] = "block-here"
    d.set_many({f"z{i}": ("old", i, "y" * 3000) for i in range(100)})
    expected = {**{f"a{i}": ("old", i, "x" * 3000) for i in range(100)}, "block-here": "block-here",
                **{f"z{i}": ("old", i, "y" * 3000) for i in range(100)}}
    result: dict[str, Any] = {}

    def reader() -> None:
        try:
            result["items"] = dict(d.items())
        except Exception as exc:  # noqa: BLE001
            result["error"] = exc

    thread = threading.Thread(target=reader, daemon=True)
    thread.start()
    assert inside.wait(60)
    # The snapshot stays open across the fork for as long as the child runs, like a long
    # iteration would: however long fork() may wait for open transactions, it must not
    # end up releasing this one.
    try:
        def child() -> None:
            if child_action == "use":
                d["child"] = 1
            else:
                d.close()

        assert _child_exit_code(_raw_fork(child)) == 0
        readers_after_child = d._engine.storage.env.readers()
        for r in range(20):  # commits that recycle pages no snapshot protects any more
            d.set_many({f"z{i}": ("new", r, i, "w" * 3000) for i in range(100)})
    finally:
        go.set()
        thread.join(60)
    slot_kept = str(os.getpid()) in readers_after_child.split()
    detail = f"parent reader slot after the child ran: {'kept' if slot_kept else 'RELEASED'}\n{readers_after_child}"
    assert "error" not in result, f"the parent's snapshot read failed: {result.get('error')!r}; {detail}"
    assert result["items"] == expected, f"the parent's snapshot changed under it; {detail}"


def test_child_forked_while_another_thread_holds_the_instance_lock_can_use_it(path, opened):
    """A child forked while another parent thread is inside a locked section of the instance can still
    use the inherited instance (it does not deadlock).
    """
    inside, go = threading.Event(), threading.Event()
    blocking = threading.local()

    def clock() -> float:  # called by reads inside the instance lock: lets a thread hold it deterministically
        if getattr(blocking, "on", False):
            inside.set()
            go.wait(60)
        return time.time()

    d = opened(path, clock=clock)
    d["k"] = 1

    def reader() -> None:
        blocking.on = True
        d["k"]

    thread = threading.Thread(target=reader, daemon=True)
    thread.start()
    assert inside.wait(60)
    ctx = mp.get_context("fork")
    conn, child_conn = ctx.Pipe()
    process = start_process(ctx, _use_and_report, d, child_conn)
    child_conn.close()
    try:
        answered = conn.poll(30)  # a hang detector, not synchronisation: the child needs milliseconds
        assert answered, "the forked child deadlocked on the inherited instance's lock"
        assert conn.recv() == ("ok", 1)
        join_all([process])
    finally:
        if process.is_alive():
            process.kill()
            process.join()
        go.set()
        thread.join(60)


def _use_and_report(d: PersistDict, conn: Any) -> None:
    d["child"] = 1
    conn.send(("ok", d["k"]))
