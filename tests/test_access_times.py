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
