"""Expiry on every engine: entries unused for expiration_days, TTLs, touch, and the reads that keep entries
alive."""

from __future__ import annotations

import pytest

from ._engines import Stores
from _clock import Clock

DAY = 86400.0


def test_entries_unused_for_expiration_days_are_removed(stores: Stores) -> None:
    """Written 30 days ago expires with expiration_days=7; read 3 days ago survives."""
    clock = Clock()
    db = stores.open(expiration_days=7, clock=clock)
    db.update(old="o", read_recently="r", written_recently="w")
    clock.now += 27 * DAY
    assert db["read_recently"] == "r"
    clock.now += 0.5 * DAY
    db["written_recently"] = "w2"
    clock.now += 2.5 * DAY
    assert db.expire() == 1
    assert "old" not in db
    assert list(db) == ["read_recently", "written_recently"]


def test_hot_reads_keep_entries_alive(stores: Stores) -> None:
    """A value read regularly (from the front cache) never expires."""
    clock = Clock()
    db = stores.open(expiration_days=1, clock=clock)
    db["hot"] = 1
    db["cold"] = 2
    for _ in range(10):
        clock.now += 0.5 * DAY
        assert db["hot"] == 1
        db.expire()
    assert "hot" in db and "cold" not in db


def test_fractional_expiration_days(stores: Stores) -> None:
    """expiration_days accepts fractions (here: one hour)."""
    clock = Clock()
    db = stores.open(expiration_days=1 / 24, clock=clock)
    db["k"] = 1
    clock.now += 3599
    assert db.expire() == 0
    clock.now += 2
    assert db.expire() == 1


def test_ttl_entries_vanish_at_expiry_and_are_swept(stores: Stores) -> None:
    """An entry past its TTL is invisible to every read path, then removed by the sweep."""
    clock = Clock()
    db = stores.open(clock=clock)
    db.set("session", {"user": 1}, ttl=60)
    db["forever"] = 0
    for _ in range(3):
        assert db["session"] == {"user": 1}  # also warms the front cache
    clock.now += 61
    assert "session" not in db and db.get("session") is None
    with pytest.raises(KeyError):
        db["session"]
    assert list(db) == ["forever"] and dict(db.items()) == {"forever": 0}
    assert db.get_many(["session"]) == {}
    with pytest.raises(KeyError):
        db.touch("session", ttl=60)  # too late
    assert len(db) == 2  # len may lag until the sweep (documented)
    assert db.expire() == 1 and len(db) == 1
    db.set("session", "new", ttl=60)  # rewriting an expired key creates a fresh entry
    assert list(db) == ["forever", "session"]


@pytest.mark.parametrize("ttl", [0, -1, float("nan"), float("inf"), 10**400])
def test_a_ttl_that_is_not_positive_finite_seconds_is_refused(stores: Stores, ttl: object) -> None:
    """set, set_many and touch refuse the ttl with ValueError and change nothing (a NaN expiry was
    live for get and iteration and expired for `in`)."""
    db = stores.open()
    db["k"] = 1
    for write in (lambda: db.set("k", 2, ttl=ttl), lambda: db.set_many({"k": 2}, ttl=ttl),
                  lambda: db.touch("k", ttl=ttl)):
        with pytest.raises(ValueError, match="ttl must be positive, finite seconds"):
            write()
    assert db["k"] == 1 and "k" in db and list(db) == ["k"]


def test_touch_extends_or_removes_ttl(stores: Stores) -> None:
    """touch(key, ttl=...) moves the expiry; touch(key) makes the entry permanent."""
    clock = Clock()
    db = stores.open(clock=clock)
    db.set("a", 1, ttl=10)
    db.set("b", 2, ttl=10)
    clock.now += 5
    db.touch("a", ttl=100)
    db.touch("b")
    clock.now += 50
    assert db["a"] == 1 and db["b"] == 2
    clock.now += 1000
    assert "a" not in db and db["b"] == 2
    with pytest.raises(KeyError):
        db.touch("missing")
    with pytest.raises(ValueError):
        db.set("c", 3, ttl=0)


@pytest.mark.parametrize("undone", ["clear", "del", "pop", "popitem"])
def test_a_rolled_back_delete_keeps_the_reads_noted_in_memory(stores: Stores, undone: str) -> None:
    """A clear()/del/pop/popitem inside a transaction that rolls back leaves the unflushed access
    times: an entry read just now does not expire as unused."""
    clock = Clock()
    db = stores.open(expiration_days=1, clock=clock)
    db["k"] = 1
    clock.now += 2 * 86400
    assert db["k"] == 1  # read now; noted in memory
    with pytest.raises(RuntimeError), db.transaction():
        {"clear": db.clear, "del": lambda: db.__delitem__("k"), "pop": lambda: db.pop("k"),
         "popitem": db.popitem}[undone]()
        raise RuntimeError("roll back")
    assert db.expire() == 0 and db["k"] == 1


def test_many_front_cache_hits_all_count_as_reads(stores: Stores) -> None:
    """More distinct cached keys than the hit buffer holds: every one read recently survives expiry."""
    clock = Clock()
    db = stores.open(expiration_days=1, clock=clock)
    keys = [("k", i) for i in range(5000)]  # tuple keys take the locked cache path
    db.set_many({key: i for i, key in enumerate(keys)})
    for _ in range(2):  # two misses: admitted to the front cache
        for key in keys:
            db[key]
    clock.now += 0.8 * DAY
    for key in keys:
        db[key]  # served by the front cache
    assert db.stats()["front_cache_hits"] >= 5000
    clock.now += 0.5 * DAY
    db.run_maintenance()
    assert len(db) == 5000
