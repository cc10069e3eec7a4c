"""Access times shared by instances: flushes skip deleted entries and never lower a later access time."""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable
from pathlib import Path

from _concurrency import run_threads
from PersistDict import PersistDict
from _clock import Clock

ROOT = str(Path(__file__).resolve().parents[1])

DAY = 86400.0


def test_flush_skips_deleted_entries_and_never_lowers_a_later_access_time(
        make_db: Callable[..., PersistDict]) -> None:
    """flush_atimes writes the reads noted since the last flush, except for an entry deleted
    meanwhile (it would leave an orphan access time) and one that another instance saw read later."""
    early, late = Clock(), Clock(1_700_000_100.0)
    first, second = make_db(clock=early), make_db(clock=late)
    first.set_many({"kept": 1, "deleted": 2, "read_later": 3})
    for key in ("kept", "deleted", "read_later"):
        assert first[key]
    del second["deleted"]
    assert second["read_later"] == 3
    assert second.flush_atimes() == 1
    assert first.flush_atimes() == 1  # "kept" only
    assert first.metadata("kept").atime.timestamp() == early.now
    assert first.metadata("read_later").atime.timestamp() == late.now
    assert first.check().ok  # no orphan access time


def test_access_times_recorded_by_reader_threads_survive_concurrent_flushes(path, opened):
    """Reads record access times without the lock; flushes running meanwhile lose none of them."""
    d = opened(path, caching=False)
    d.set_many({f"k{i}": i for i in range(8000)})
    d._clock = lambda: 2_000_000_000.0  # every read from now on happens at this time
    stop = threading.Event()

    def flusher() -> None:
        while not stop.is_set():
            d.flush_atimes(batch=50)

    def reader(t: int) -> None:
        for i in range(t, 8000, 4):
            assert d[f"k{i}"] == i

    background = threading.Thread(target=flusher)
    switch_interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # switch threads as often as possible, to hit the narrow windows
    background.start()
    try:
        run_threads(4, reader)
    finally:
        stop.set()
        background.join()
        sys.setswitchinterval(switch_interval)
    d.flush_atimes()
    fresh = opened(path)  # its own pending access times are empty: it sees what was written
    stale = [i for i in range(8000) if fresh.metadata(f"k{i}").atime.timestamp() != 2_000_000_000.0]
    assert not stale, f"{len(stale)} access times lost, e.g. k{stale[0]}"


def test_the_access_times_of_a_process_that_exits_without_close_are_written_at_exit(db_path: Path) -> None:
    """A process that reads and exits without close() writes its access times at exit (Python 3.12
    starts no thread at exit: close() writes in the exiting thread then)."""
    import subprocess

    with PersistDict(db_path, background_thread="disabled") as d:
        d["k"] = 1
        before = d.metadata("k").atime
    code = f"""
import sys, time
sys.path.insert(0, {ROOT!r})
from PersistDict import PersistDict
d = PersistDict({str(db_path)!r}, background_thread="disabled")
time.sleep(0.05)
assert d["k"] == 1
"""
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    with PersistDict(db_path, background_thread="disabled") as d:
        assert d.metadata("k").atime > before
