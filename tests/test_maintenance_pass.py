"""The maintenance pass: at open, in the background thread, resumed after running out of time; the thread
stops on close."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from PersistDict import PersistDict
from _clock import Clock

ROOT = str(Path(__file__).resolve().parents[1])

DAY = 86400.0


def test_expiry_at_open_without_thread(db_path: Path) -> None:
    """background_thread=False runs the maintenance pass in the constructor."""
    clock = Clock()
    with PersistDict(db_path, background_thread="disabled", clock=clock) as db:
        db["old"] = 1
    clock.now += 10 * DAY
    with PersistDict(db_path, background_thread=False, expiration_days=7, clock=clock) as db:
        assert "old" not in db and db.stats()["expired"] == 1


def test_expiry_by_background_thread(db_path: Path) -> None:
    """With the background thread, the pass at open removes expired entries."""
    clock = Clock()
    with PersistDict(db_path, background_thread="disabled", clock=clock) as db:
        db["old"] = 1
        db["new"] = 2
    clock.now += 10 * DAY
    with PersistDict(db_path, expiration_days=7, clock=clock) as db:
        db["new"] = 3
        assert db._maintenance.pass_done.wait(30)
        assert list(db) == ["new"]


def test_interrupted_sweep_resumes(make_db: Callable[..., PersistDict]) -> None:
    """A pass that runs out of time stops cleanly and the next one continues where it stopped."""
    clock = Clock()
    db = make_db(clock=clock)
    db.set_many({i: i for i in range(2500)}, ttl=10)
    clock.now += 11
    removed, resume = db._sweep(start_after=0, deadline=0.0)  # out of time at once
    assert removed == 0 and resume == 0
    total = 0
    while resume is not None:
        removed, resume = db._sweep(start_after=resume or 0, deadline=float("inf"))
        total += removed
    assert total == 2500 and len(db) == 0


def test_background_thread_stops_on_close_and_exit(db_path: Path) -> None:
    """The daemon thread stops on close() and never keeps the interpreter alive."""
    db = PersistDict(db_path, maintenance_interval=0.05, atime_flush_interval=0.05)
    thread = db._maintenance._thread
    assert thread is not None and thread.is_alive()
    db.close()
    assert not thread.is_alive()
    code = f"""
import sys
sys.path.insert(0, {ROOT!r})
from PersistDict import PersistDict
d = PersistDict({str(db_path)!r}, maintenance_interval=0.05, atime_flush_interval=0.05)
d["k"] = 1
d["k"]
print("done")
"""
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and result.stdout.strip() == "done", result.stderr
