"""Fork with an open instance: children get their own environment and front cache; the parent's readers,
locks and snapshots survive."""

from __future__ import annotations

import multiprocessing as mp
import os
import pickle
import signal
import subprocess
import sys
import threading
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from _concurrency import check_no_torn_entries, join_all, start_process
from PersistDict import PersistDict

from ._lmdb_access import STORAGE_MODULE, engine_of

ROOT = str(Path(__file__).resolve().parents[3])


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
        readers_seen.append(engine_of(d).info()["readers_in_use"])
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
    result = subprocess.run([sys.executable, "-c", PARENT_AFTER_CHILDREN_SCRIPT, path, child_exit],
                            capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert result.returncode == 0 and result.stdout.strip() == "ok", result.stderr[-3000:]


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
    assert _reader_slots_of(engine_of(d), os.getpid()) <= 2, engine_of(d).env.readers()


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


FORK_DEADLOCK_SCRIPT = f"""
import importlib, os, sys, threading, time
from PersistDict import PersistDict
_storage = importlib.import_module({STORAGE_MODULE!r})
_storage.FORK_WAIT_SECONDS = 1.0
root = sys.argv[1]
d = PersistDict(os.path.join(root, "d"), background_thread="disabled")
d["k"] = 0
gate = d._engine.storage._gate
inside, go = threading.Event(), threading.Event()
results = {{}}

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
assert results == {{"a": True, "b": True, "f": 0}}, results
assert d["k"] == 1
print("ok")
"""


def test_fork_is_not_deadlocked_by_a_transaction_that_opens_a_store(tmp_path):
    """Thread A, inside d.transaction(), opens another store (which takes the registry lock); thread B
    grows d's map (holding its gate, waiting for A's transaction); thread F forks (holding the
    registry lock, waiting for d's gate). Each waits for the next: fork() must give up waiting at
    its deadline, fork, and let all three finish. (In a process of its own: a deadlock there
    leaves locks held.)"""
    try:
        result = subprocess.run([sys.executable, "-c", FORK_DEADLOCK_SCRIPT, str(tmp_path)],
                                capture_output=True, text=True, timeout=90, cwd=ROOT)
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
        readers_after_child = engine_of(d).env.readers()
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
