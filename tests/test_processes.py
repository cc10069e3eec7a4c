"""Processes writing one store: no write lost, exact counters, one winner of a race."""

from __future__ import annotations

import multiprocessing as mp
from pathlib import Path
from typing import Any

import _workers as w
import pytest

from _concurrency import CONTEXTS, check_no_torn_entries, join_all, replay_oracle, start_process

ROOT = str(Path(__file__).resolve().parents[1])


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
    expected = replay_oracle(results)
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


_HOLD_WRITER = """
import sys, time
from PersistDict import PersistDict
d = PersistDict(sys.argv[1], background_thread="disabled")
with d.transaction():
    d["held"] = 1
    print("inside", flush=True)
    time.sleep(float(sys.argv[2]))
d.close()
"""


def test_close_waiting_for_another_process_writer_lock_returns_and_writes_later(path: Path) -> None:
    """close() of a reader returns although another process holds the writer lock; its access
    times are written, and the store released, once the lock is free."""
    import subprocess
    import sys
    import time

    from PersistDict import PersistDict
    from PersistDict._core import CLOSE_WAIT_SECONDS

    with PersistDict(path, background_thread="disabled") as d:
        d["k"] = "v"
        created = d.metadata("k").atime
    holder = subprocess.Popen([sys.executable, "-c", _HOLD_WRITER, str(path), str(CLOSE_WAIT_SECONDS + 3)],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "inside"
        reader = PersistDict(path, background_thread="disabled")
        time.sleep(0.01)  # a later access time than the one stored
        assert reader["k"] == "v"
        reader.close()  # returns after CLOSE_WAIT_SECONDS, leaving its access time to a thread
        assert holder.poll() is None, "the holder was to keep the writer lock past close()"
        assert holder.wait(60) == 0
    finally:
        holder.kill()
    for _ in range(600):  # the thread writes once the lock is free, then releases the store
        with PersistDict(path, background_thread="disabled") as d:
            if d.metadata("k").atime > created:
                break
        time.sleep(0.05)
    else:
        raise AssertionError("the access time left to close()'s thread was never written")
