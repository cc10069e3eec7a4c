"""Threads on one instance: every public method from many threads, consistent snapshots, rollbacks beside
readers."""

from __future__ import annotations

import multiprocessing as mp
import random
import threading
import traceback
from collections import Counter
from pathlib import Path
from typing import Any

import _workers as w
import pytest

from _concurrency import check_no_torn_entries, join_all, recv, replay_oracle, run_threads, start_process
from PersistDict import PersistDict

ROOT = str(Path(__file__).resolve().parents[1])


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
    expected = replay_oracle(results)
    assert d.copy() == expected
    assert len(d) == len(expected)
    check_no_torn_entries(d)


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
