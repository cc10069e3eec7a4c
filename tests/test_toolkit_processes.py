"""The toolkit across processes (LMDB): counters, compare-and-set loops and track_changes with exact
totals, versions, locks, memoize."""

from __future__ import annotations

import multiprocessing as mp
import threading
import time

import _toolkit_workers as tw
import pytest

from _concurrency import CONTEXTS, join_all, start_process


@pytest.mark.parametrize("start_method", CONTEXTS)
def test_incr_from_4_processes_x_500_is_exact(path, opened, start_method):
    """4 processes each calling incr 500 times (int and float counters) leave exact totals."""
    ctx = mp.get_context(start_method)
    barrier = ctx.Barrier(8)
    workers = [start_process(ctx, tw.incr_worker, path, "ints", 500, 1, barrier) for _ in range(4)]
    workers += [start_process(ctx, tw.incr_worker, path, "floats", 500, 0.5, barrier) for _ in range(4)]
    join_all(workers)
    d = opened(path)
    assert d["ints"] == 2000
    assert d["floats"] == 1000.0


@pytest.mark.parametrize("start_method", CONTEXTS)
def test_compare_and_set_loops_from_4_processes_count_exactly(path, opened, start_method):
    """4 processes x 100 increments through version/compare_and_set retry loops lose none."""
    opened(path)["n"] = 0
    ctx = mp.get_context(start_method)
    barrier = ctx.Barrier(4)
    join_all([start_process(ctx, tw.cas_worker, path, "n", 100, barrier) for _ in range(4)])
    assert opened(path)["n"] == 400


@pytest.mark.parametrize("start_method", CONTEXTS)
def test_track_changes_from_4_processes_loses_no_change(path, opened, start_method):
    """4 processes x 50 appends to one list through track_changes (retrying on ConflictError) lose none."""
    ctx = mp.get_context(start_method)
    barrier = ctx.Barrier(4)
    join_all([start_process(ctx, tw.tracked_appender, path, "marks", 50, barrier) for _ in range(4)])
    assert sorted(opened(path)["marks"]) == sorted(list(range(50)) * 4)


def test_version_changes_when_another_process_rewrites_the_same_value_at_the_same_instant(path, opened):
    """Another process writing the same bytes at the same clock reading changes the version seen here."""
    d = opened(path, clock=lambda: 1000.0)
    d["k"] = "v"
    before = d.version("k")
    ctx = mp.get_context("spawn")
    join_all([start_process(ctx, tw.write_same_value, path, "k", "v")])
    assert d.version("k") != before
    assert not d.compare_and_set("k", "w", before)
    assert d["k"] == "v"


@pytest.mark.parametrize("start_method", CONTEXTS)
def test_lock_gives_mutual_exclusion_across_4_processes(path, opened, start_method):
    """4 processes x 25 rounds appending "in" then "out" under d.lock: no lost append, no interleaving."""
    opened(path)["log"] = []
    ctx = mp.get_context(start_method)
    barrier = ctx.Barrier(4)
    join_all([start_process(ctx, tw.locked_appender, path, 25, barrier) for _ in range(4)])
    log = opened(path)["log"]
    assert len(log) == 4 * 25 * 2
    for first, second in zip(log[::2], log[1::2]):
        assert first[:2] == second[:2] and (first[2], second[2]) == ("in", "out"), "two holders interleaved"


def test_lock_of_a_sigkilled_holder_is_taken_after_its_ttl(path, opened):
    """A holder SIGKILLed inside the lock keeps it until its ttl runs out; then another process takes it."""
    ctx = mp.get_context("spawn")
    held = ctx.Event()
    holder = start_process(ctx, tw.hold_lock_forever, path, "job", 30, held)
    try:
        assert held.wait(60)
    finally:
        holder.kill()  # SIGKILL: no release
        holder.join()
    assert holder.exitcode == -9
    offset = [0.0]
    d = opened(path, clock=lambda: time.time() + offset[0])
    assert not d.lock("job", blocking=False).acquire()  # its ttl has not run out
    offset[0] = 31.0
    with d.lock("job", blocking=False) as lock:
        assert lock.held


@pytest.mark.parametrize("start_method", CONTEXTS)
def test_memoize_from_8_processes_at_once_runs_the_slow_function_once(path, opened, start_method):
    """8 processes calling one slow (0.5 s) memoized function with the same arguments at once run it exactly once."""
    opened(path)
    ctx = mp.get_context(start_method)
    barrier = ctx.Barrier(8)
    join_all([start_process(ctx, tw.memoize_caller, path, barrier, True) for _ in range(8)])
    assert opened(path)["runs"] == 1


def test_get_or_set_takes_over_from_a_sigkilled_computation_after_its_lock_ttl(path, opened):
    """A process SIGKILLed inside get_or_set's factory holds the key until lock_ttl; then a waiter computes."""
    ctx = mp.get_context("spawn")
    computing = ctx.Event()
    worker = start_process(ctx, tw.compute_forever, path, "k", computing)
    try:
        assert computing.wait(60)
    finally:
        worker.kill()
        worker.join()
    offset = [0.0]
    d = opened(path, clock=lambda: time.time() + offset[0])
    result: list[str] = []
    waiter = threading.Thread(target=lambda: result.append(d.get_or_set("k", lambda: "mine", lock_ttl=30)),
                              daemon=True)
    waiter.start()
    waiter.join(0.3)
    assert waiter.is_alive() and not result, "the waiter did not wait for the dead computation's lock"
    offset[0] = 31.0
    waiter.join(60)
    assert result == ["mine"] and d["k"] == "mine"


def test_async_memoize_from_4_processes_x_4_tasks_runs_the_slow_function_once(path, opened):
    """4 processes, each with 4 tasks calling one slow async memoized function at once, run it exactly once."""
    opened(path)
    ctx = mp.get_context("spawn")
    barrier = ctx.Barrier(4)
    join_all([start_process(ctx, tw.amemoize_caller, path, barrier) for _ in range(4)])
    assert opened(path)["runs"] == 1
