"""The named locks' rows (LMDB meta rows ``mutex:<name>``): a pass of maintenance drops those whose
time ran out, so crashed holders and per-key locks (get_or_set, memoize) do not pile up."""

from __future__ import annotations

import multiprocessing as mp
import time
from pathlib import Path

from _clock import Clock
from _concurrency import start_process
from _toolkit_workers import hold_lock_forever

from PersistDict import PersistDict
from PersistDict.engines.lmdb.mutex import PREFIX

from ._lmdb_access import engine_of


def lock_rows(store: PersistDict) -> list[bytes]:
    with engine_of(store).reading() as txn:
        return txn.meta_names_under(PREFIX)


def test_expire_drops_the_rows_of_locks_whose_time_ran_out(tmp_path: Path) -> None:
    """Rows of locks past their ttl go at the next expire(); a lock still held stays, and its holder
    releases it normally."""
    clock = Clock()
    d = PersistDict(tmp_path / "db", clock=clock, background_thread="disabled")
    abandoned = d.lock("abandoned", ttl=10)
    abandoned.acquire()  # never released: as if its process had died
    for key in range(5):
        d.get_or_set(("job", key), lambda: "done")  # each took and freed its own per-key lock
    clock.now += 5
    held = d.lock("held", ttl=60)
    held.acquire()
    assert len(lock_rows(d)) == 2
    clock.now += 6  # "abandoned" ran out, "held" did not
    d.expire()
    assert lock_rows(d) == [PREFIX + b"user:held"]
    assert held.release()
    assert not abandoned.release()  # its time ran out: it had lost the lock anyway
    assert lock_rows(d) == []
    d.close()


def test_the_row_of_a_sigkilled_holder_is_dropped_after_its_ttl(tmp_path: Path) -> None:
    """A process SIGKILLed while holding a lock leaves its row; maintenance past the ttl removes it."""
    path = str(tmp_path / "db")
    ctx = mp.get_context("spawn")
    held = ctx.Event()
    worker = start_process(ctx, hold_lock_forever, path, "job", 1.0, held)
    assert held.wait(60)
    worker.kill()
    worker.join(60)
    assert worker.exitcode == -9
    clock = Clock(time.time())  # the worker's lock runs on the real clock
    d = PersistDict(path, clock=clock, background_thread="disabled")
    assert lock_rows(d) == [PREFIX + b"user:job"]
    clock.now += 2
    d.run_maintenance()
    assert lock_rows(d) == []
    d.close()
