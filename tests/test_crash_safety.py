"""Crash safety: a writer killed with SIGKILL keeps every acknowledged write and nothing of an open
transaction."""

from __future__ import annotations

import multiprocessing as mp
import os
import random
import signal
import time
from pathlib import Path
from typing import Any

import _workers as w
import pytest

from _concurrency import CONTEXTS, JOIN_TIMEOUT, bounded, check_no_torn_entries, recv, start_process
from PersistDict import PersistDict

ROOT = str(Path(__file__).resolve().parents[1])


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
