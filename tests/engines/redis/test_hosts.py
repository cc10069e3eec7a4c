"""The Redis engine shared by processes standing for hosts: strict reads are never stale, the
notified front cache converges (its freshness window printed), namespaces are isolated, a killed
lock holder's lock passes on after its ttl, and the core never imports redis-py for other paths."""

from __future__ import annotations

import multiprocessing
import os
import signal
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path

from PersistDict import PersistDict

import _redis_workers as workers
from _concurrency import join_all, start_process

CTX = multiprocessing.get_context("spawn")  # each worker a fresh interpreter with its own client: a host


def namespace() -> str:
    return f"hosts-{uuid.uuid4().hex}"


def test_strict_reads_are_never_older_than_an_acknowledged_write(redis_url: str) -> None:
    """3 reader processes with strict_reads and front caches on read 0 values older than a write
    another process had acknowledged before the read began, while it writes 300 times."""
    name = namespace()
    acked, done = CTX.Value("q", 0), CTX.Value("b", 0)
    stamps = CTX.Array("d", 301)
    counters = [(CTX.Value("q", 0), CTX.Value("q", 0)) for _ in range(3)]
    readers = [start_process(CTX, workers.strict_reader, redis_url, name, acked, stale, reads, done)
               for stale, reads in counters]
    time.sleep(0.5)
    join_all([start_process(CTX, workers.writer, redis_url, name, 300, acked, stamps)])
    done.value = 1
    join_all(readers)
    assert all(process.exitcode == 0 for process in readers)
    assert sum(reads.value for _, reads in counters) > 300
    assert [stale.value for stale, _ in counters] == [0, 0, 0]


def test_notified_front_caches_converge_and_the_window_is_measured(redis_url: str) -> None:
    """3 reader processes with notified front caches see each of 200 writes of another process (the
    cache serves hits meanwhile); the freshness window (acknowledged -> first seen) is printed."""
    name = namespace()
    count = 200
    acked = CTX.Value("q", 0)
    stamps = CTX.Array("d", count + 1)
    seen = [CTX.Array("d", count + 1) for _ in range(3)]
    hits = [CTX.Value("q", 0) for _ in range(3)]
    readers = [start_process(CTX, workers.notified_reader, redis_url, name, count, stamps, seen[i], hits[i])
               for i in range(3)]
    time.sleep(0.5)
    join_all([start_process(CTX, workers.writer, redis_url, name, count, acked, stamps)])
    join_all(readers)
    assert all(process.exitcode == 0 for process in readers)
    assert all(counter.value > 0 for counter in hits)  # the front cache answered reads
    windows = sorted(max(0.0, seen[i][value] - stamps[value]) * 1000 for i in range(3)
                     for value in range(1, count + 1))
    print(f"\nfreshness window over {len(windows)} reads: median {statistics.median(windows):.3f} ms, "
          f"p99 {windows[int(len(windows) * 0.99)]:.3f} ms, max {windows[-1]:.3f} ms")


def test_two_namespaces_on_one_server_are_isolated(redis_url: str) -> None:
    """Writes, clear() and locks in one namespace leave another namespace on the same server untouched."""
    first = PersistDict(redis_url, namespace=namespace(), background_thread="disabled")
    second = PersistDict(redis_url, namespace=namespace(), background_thread="disabled")
    try:
        first["k"] = "first"
        second["k"] = "second"
        second["only"] = 2
        with first.lock("job"):
            assert second.lock("job", blocking=False).acquire()
        first.clear()
        assert dict(second.items()) == {"k": "second", "only": 2} and len(first) == 0
    finally:
        first.close()
        second.close()


def test_a_killed_lock_holder_frees_the_lock_after_its_ttl(redis_url: str) -> None:
    """A process SIGKILLed while holding d.lock('job', ttl=1) keeps it from others until the ttl, then
    another host takes it."""
    name = namespace()
    ready = CTX.Value("b", 0)
    holder = start_process(CTX, workers.lock_then_die, redis_url, name, ready)
    deadline = time.monotonic() + 60
    while not ready.value:
        assert time.monotonic() < deadline and holder.is_alive()
        time.sleep(0.01)
    os.kill(holder.pid, signal.SIGKILL)
    holder.join()
    with PersistDict(redis_url, namespace=name, background_thread="disabled") as store:
        assert not store.lock("job", blocking=False).acquire()
        with store.lock("job", timeout=30):  # waits out the dead holder's ttl
            assert not store.lock("job", blocking=False).acquire()


def test_the_core_does_not_import_redis_for_other_stores(tmp_path: Path) -> None:
    """Opening LMDB and ':memory:' stores imports no redis-py (it is an optional extra)."""
    code = ("import sys\nfrom PersistDict import PersistDict\n"
            f"PersistDict({str(tmp_path / 'db')!r})['a'] = 1\nPersistDict(':memory:')['a'] = 1\n"
            "assert 'redis' not in sys.modules, 'redis imported'\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
