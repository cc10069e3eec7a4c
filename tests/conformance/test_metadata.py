"""metadata() and stats() on every engine: creation and access times, and the counters."""

from __future__ import annotations

from datetime import timezone

import pytest

from ._engines import Stores


def test_metadata_times(stores: Stores) -> None:
    """metadata() gives tz-aware UTC ctime/atime; overwrite keeps ctime; reads move atime."""
    clock = [1_000_000.0]
    db = stores.open(clock=lambda: clock[0])
    db["k"] = "v1"
    first = db.metadata("k")
    assert first.ctime.tzinfo is timezone.utc and first.ctime.timestamp() == 1_000_000.0
    clock[0] += 100
    db["k"] = "v2"
    second = db.metadata("k")
    assert second.ctime == first.ctime and second.atime.timestamp() == 1_000_100.0
    clock[0] += 100
    assert db["k"] == "v2"
    assert db.metadata("k").atime.timestamp() == 1_000_200.0
    db.flush_atimes()
    assert db.metadata("k").atime.timestamp() == 1_000_200.0
    with pytest.raises(KeyError):
        db.metadata("missing")


def test_reads_from_front_cache_also_move_atime(stores: Stores) -> None:
    """Hot reads served by the front cache still refresh atime once flushed."""
    clock = [5_000.0]
    db = stores.open(clock=lambda: clock[0])
    db["k"] = "v"
    for _ in range(5):
        assert db["k"] == "v"  # admitted on the second miss, then served from the cache
    clock[0] = 9_000.0
    assert db["k"] == "v"
    db.flush_atimes()
    assert db.metadata("k").atime.timestamp() == 9_000.0


def test_stats_counters(stores: Stores) -> None:
    """stats() counts hits, misses, front-cache hits, sets and deletes, and the entries."""
    db = stores.open()
    db["a"] = 1
    for _ in range(4):
        db["a"]
    db.get("missing")
    del db["a"]
    stats = db.stats()
    assert stats["sets"] == 1 and stats["deletes"] == 1 and stats["misses"] == 1
    assert stats["hits"] == 4 and stats["front_cache_hits"] >= 1
    assert stats["entries"] == 0
