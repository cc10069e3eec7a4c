"""LMDB's reader table: a killed reader blocks no writer and its slot is reclaimed."""

from __future__ import annotations

import multiprocessing as mp
import os
import signal
from pathlib import Path

import _workers as w

from _concurrency import JOIN_TIMEOUT, Remote, bounded, recv, start_process

from ._lmdb_access import engine_of

ROOT = str(Path(__file__).resolve().parents[3])


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
        assert str(pid) in engine_of(d).env.readers().split(), "test precondition: the reader holds a slot"
        os.kill(pid, signal.SIGKILL)
        process.join(JOIN_TIMEOUT)

        def write_a_lot() -> None:
            for i in range(300):
                d[f"w{i % 20}"] = "x" * 2000 * (i % 3)

        bounded(write_a_lot, "writing after a reader was killed")
        assert bystander("get", "w19") == "x" * 2000 * (299 % 3)  # the last write to w19
        d.close()
        fresh = opened(path)
        readers = engine_of(fresh).env.readers()
        assert str(pid) not in readers.split(), f"the dead reader {pid} still holds a slot:\n{readers}"
        fresh["after"] = 1
        assert fresh["after"] == 1 and fresh["first"] == 1
        assert bystander("get", "after") == 1
    finally:
        bystander.stop()
