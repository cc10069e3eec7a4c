"""Size bounds on every engine: max_items evicts the least recently used, max_bytes keeps the records under
the bound."""

from __future__ import annotations

import pytest

from ._engines import Stores
from _clock import Clock

DAY = 86400.0


def test_max_items_evicts_least_recently_used(stores: Stores) -> None:
    """With max_items, the least recently read or written entries go first; the bound holds after each write."""
    clock = Clock()
    db = stores.open(max_items=10, clock=clock)
    for i in range(10):
        clock.now += 1
        db[i] = i
    for i in range(5):
        clock.now += 1
        assert db[i] == i
    for i in range(10, 15):
        clock.now += 1
        db[i] = i
        assert len(db) == 10
    assert sorted(db) == [0, 1, 2, 3, 4, 10, 11, 12, 13, 14]
    assert db.stats()["evicted"] == 5


def test_reads_served_by_the_front_cache_count_for_eviction_and_metadata(
        stores: Stores) -> None:
    """Hits the front cache served (buffered, not yet flushed) move the entry's access time for
    metadata() and keep it from being the least recently used one."""
    clock = Clock()
    db = stores.open(max_items=3, clock=clock)
    db["a"] = 1
    clock.now += 1
    assert db["a"] == 1 and db["a"] == 1  # the second read caches it
    for key in ("b", "c"):
        clock.now += 1
        db[key] = key
    clock.now += 100
    hits = db.stats()["front_cache_hits"]
    for _ in range(100):
        assert db["a"] == 1
    assert db.stats()["front_cache_hits"] == hits + 100
    assert db.metadata("a").atime.timestamp() == clock.now
    db["d"] = "d"
    assert sorted(db) == ["a", "c", "d"]


def test_batch_larger_than_max_items_keeps_the_new_entries(stores: Stores) -> None:
    """Entries written by the current write are never evicted by it."""
    db = stores.open(max_items=3)
    db.update({f"old{i}": i for i in range(3)})
    db.update({"n1": 1, "n2": 2})
    assert set(db) == {"n1", "n2", "old2"} or len(set(db) & {"n1", "n2"}) == 2
    assert len(db) == 3


def test_max_bytes_bound(stores: Stores) -> None:
    """With max_bytes, old entries are evicted to keep the records under the bound."""
    db = stores.open(max_bytes=256 * 1024)
    for i in range(100):
        db[i] = bytes(10_000)
        assert db.stats()["records_bytes"] <= 256 * 1024
    assert 0 < len(db) < 100 and 99 in db
    with pytest.raises(ValueError, match="max_bytes"):
        db["huge"] = bytes(300 * 1024)
    assert "huge" not in db


def test_setdefault_respects_bounds_and_raw_values(stores: Stores) -> None:
    """setdefault keeps max_items, and in raw mode an unstorable default matters only if the key is missing."""
    bounded = stores.open(max_items=2)
    bounded["a"], bounded["b"] = 1, 2
    assert bounded.setdefault("c", 3) == 3 and len(bounded) == 2 and "c" in bounded
    raw = stores.open(value_serializer=None, value_unserializer=None)
    raw["k"] = "v"
    assert raw.setdefault("k") == "v"
    with pytest.raises(TypeError):
        raw.setdefault("new")
    assert "new" not in raw
