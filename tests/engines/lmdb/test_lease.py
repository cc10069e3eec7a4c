"""The maintenance lease in the LMDB meta table: one holder across processes, taken over from the dead,
bounded in time."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from PersistDict import PersistDict
from _clock import Clock

from ._lmdb_access import CLOCK_SLACK, LEASE, LONGEST_LEASE, MAINTENANCE_MODULE, engine_of, lease_holder, try_take_lease

ROOT = str(Path(__file__).resolve().parents[3])

DAY = 86400.0


def test_maintenance_lease_is_shared_between_processes(db_path: Path, make_db: Callable[..., PersistDict]) -> None:
    """Only one process holds the maintenance lease at a time; it expires if not renewed."""
    db = make_db()
    assert try_take_lease(engine_of(db), "me", 1000.0, 60)
    code = f"""
import sys
sys.path.insert(0, {ROOT!r})
from PersistDict import PersistDict
from {MAINTENANCE_MODULE} import try_take_lease
d = PersistDict({str(db_path)!r}, background_thread="disabled")
print(try_take_lease(d._engine.storage, "other", 1030.0, 60), try_take_lease(d._engine.storage, "other", 1061.0, 60))
"""
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.stdout.split() == ["False", "True"], result.stderr
    assert not try_take_lease(engine_of(db), "me", 1062.0, 60)


def test_the_strictest_expiration_days_sweeps_and_close_gives_the_lease_up(
        db_path: Path, make_db: Callable[..., PersistDict]) -> None:
    """An instance without expiry holding the lease does not stop one with expiration_days from
    sweeping (it takes the lease over); one with a laxer setting cannot take it back; a closed
    instance gives the lease up, so the next one sweeps at open with its own setting."""
    then = Clock(time.time() - 10 * 86400)
    writer = make_db(clock=then)
    writer.update({"stale": 1, "stale2": 2})
    writer.close()
    lax = make_db(background_thread=False)  # its pass at open takes the lease: no expiry
    assert "stale" in lax
    strict = make_db(expiration_days=1)
    strict.run_maintenance()
    assert "stale" not in strict and "stale2" not in strict
    with engine_of(strict).reading() as txn:
        assert txn.meta(LEASE).startswith(lease_holder(strict).encode() + b"#1.0|")
    assert not try_take_lease(engine_of(lax), lease_holder(lax), time.time(), 60)
    assert not try_take_lease(engine_of(lax), "laxer", time.time(), 60, expiration_days=2)
    old_format = f"old|{time.time() + 60}".encode()  # an older version's lease: its setting unknown
    engine_of(strict).write(lambda txn: txn.put_meta(LEASE, old_format))
    assert not try_take_lease(engine_of(strict), lease_holder(strict), time.time(), 60, expiration_days=1)
    engine_of(strict).write(lambda txn: txn.delete_meta(LEASE))
    strict.close()
    lax.close()
    with engine_of(make_db()).reading() as txn:
        assert txn.meta(LEASE) is None  # both gave it up
    writer = make_db(clock=then)
    writer["stale3"] = 3
    writer.close()
    make_db(background_thread=False).close()  # takes the lease at open, gives it up at close
    assert "stale3" not in make_db(expiration_days=1, background_thread=False)


def _lease_holder(db_path: Path, clock_ahead: float) -> subprocess.Popen[str]:
    """A process whose clock runs ``clock_ahead`` seconds ahead, holding the lease (its pass at
    open takes it) until it is killed."""
    code = f"""
import sys, time
sys.path.insert(0, {ROOT!r})
from PersistDict import PersistDict
d = PersistDict({str(db_path)!r}, background_thread=False, expiration_days=1,
                clock=lambda: time.time() + {clock_ahead!r})
print(d._maintenance.holder, flush=True)
time.sleep(120)
"""
    holder = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert holder.stdout is not None and holder.stdout.readline().strip()
    return holder


@pytest.mark.parametrize("clock_ahead", [10 * 365 * DAY, 2 * LONGEST_LEASE])
def test_a_lease_from_a_clock_far_ahead_is_taken_over_after_its_holder_died(
        db_path: Path, make_db: Callable[..., PersistDict], clock_ahead: float) -> None:
    """A process whose clock ran ahead took the lease and was killed: its lease, which ends later
    than any lease taken now could, is taken over, so expiry goes on for everyone."""
    stale = make_db(clock=Clock(time.time() - 10 * DAY))
    stale["old"] = 1
    stale.close()
    holder = _lease_holder(db_path, clock_ahead)
    holder.send_signal(signal.SIGKILL)
    holder.wait(timeout=60)
    db = make_db(expiration_days=1)
    db.run_maintenance()
    assert "old" not in db
    with engine_of(db).reading() as txn:
        assert txn.meta(LEASE).startswith(lease_holder(db).encode() + b"#")


def test_a_valid_lease_is_not_taken_over_and_no_lease_lasts_longer_than_the_bound(
        db_path: Path, make_db: Callable[..., PersistDict]) -> None:
    """A live holder's lease (its clock a little ahead, within CLOCK_SLACK) stays with it; a lease
    ending exactly at now + LONGEST_LEASE + CLOCK_SLACK is still valid; the lease an instance takes
    never exceeds LONGEST_LEASE, whatever its settings."""
    holder = _lease_holder(db_path, CLOCK_SLACK / 2)
    try:
        stale = make_db(clock=Clock(time.time() - 10 * DAY))
        stale["old"] = 1
        stale.close()
        db = make_db(expiration_days=1)
        db.run_maintenance()
        assert "old" in db  # the holder sweeps, not us
    finally:
        holder.kill()
        holder.wait(timeout=60)
    now = 1_000_000.0
    assert try_take_lease(engine_of(db), "a", now, LONGEST_LEASE)  # the longest valid lease
    assert not try_take_lease(engine_of(db), "b", now - CLOCK_SLACK, 60)  # b's clock a little behind
    assert try_take_lease(engine_of(db), "b", now - CLOCK_SLACK - 1, 60)  # a's lease cannot be from now
    long_passes = make_db(maintenance_interval=10 * LONGEST_LEASE, background_timeout=LONGEST_LEASE)
    assert long_passes._maintenance.lease_seconds == LONGEST_LEASE
