"""Never stale: a read after another process's, instance's or thread's write sees it, and never an older
value after a newer one."""

from __future__ import annotations

import multiprocessing as mp
import random
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import _workers as w
import pytest

from _concurrency import CONTEXTS, Remote, join_all, recv, start_process

ROOT = str(Path(__file__).resolve().parents[1])


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
