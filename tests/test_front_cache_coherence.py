"""The front cache kept coherent: own and other processes' writes evict exactly what they changed,
maintenance writes evict nothing."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from PersistDict import PersistDict
from _concurrency import in_another_process

ROOT = str(Path(__file__).resolve().parents[1])


def _read_all_twice(db: PersistDict, n: int = 50) -> None:
    """Read k0..k{n-1} twice, checking values (the second miss admits an entry to the front cache)."""
    for _ in range(2):
        for i in range(n):
            assert db[f"k{i}"] == i


def test_own_maintenance_writes_keep_the_front_cache(make_db: Callable[..., PersistDict]) -> None:
    """Flushing access times and renewing the lease do not empty this instance's front cache."""
    db = make_db()
    db.set_many({f"k{i}": i for i in range(50)})
    _read_all_twice(db)
    assert len(db._front) == 50
    assert db.flush_atimes() == 50
    db.run_maintenance()
    db.run_maintenance()
    assert len(db._front) == 50
    _read_all_twice(db)
    # the lease commit is not reported to the cache: one read checks the gap
    assert db.stats()["front_cache_hits"] >= 99


def test_evictions_leave_the_rest_of_the_own_front_cache(make_db: Callable[..., PersistDict]) -> None:
    """Writes that evict entries to stay within max_items evict exactly those from the front cache:
    the survivors are still served from it, the evicted ones are gone."""
    db = make_db(max_items=50)
    db.set_many({f"k{i}": i for i in range(50)})
    _read_all_twice(db)
    for i in range(50, 60):  # each evicts one entry
        db[f"k{i}"] = i
    present = set(db.keys())
    assert len(present) == 50
    hits = db.stats()["front_cache_hits"]
    for i in range(60):
        assert db.get(f"k{i}") == (i if f"k{i}" in present else None)
    assert db.stats()["front_cache_hits"] >= hits + 40  # the 40 cached survivors



def test_another_process_s_maintenance_writes_keep_the_front_cache(
        db_path: Path, make_db: Callable[..., PersistDict]) -> None:
    """Another process flushing access times and taking the lease leaves this front cache serving hits."""
    db = make_db()
    db.set_many({f"k{i}": i for i in range(50)})
    _read_all_twice(db)
    assert len(db._front) == 50
    in_another_process(db_path, "[d[f'k{i}'] for i in range(50)]; assert d.flush_atimes() == 50; d.run_maintenance()")
    hits = db.stats()["front_cache_hits"]
    _read_all_twice(db)
    assert db.stats()["front_cache_hits"] >= hits + 99  # the first read may find the gap: one LMDB read


@pytest.mark.parametrize(("body", "changed"), [
    ("d['k7'] = 'new'", {"k7": "new"}),
    ("del d['k7']; d['k8'] = 'eight'", {"k7": None, "k8": "eight"}),
    ("d.touch('k7', ttl=0.001); import time; time.sleep(0.01); d.expire()", {"k7": None}),
    ("d.set_many({'k7': 7.5, 'k60': 60})", {"k7": 7.5, "k60": 60}),
    ("with d.transaction():\n    d['k7'] = 'in txn'\n    try:\n        with d.transaction():\n"
     "            d['k8'] = 'rolled back'\n            raise KeyError\n    except KeyError:\n        pass",
     {"k7": "in txn"}),
])
def test_another_process_s_write_evicts_only_the_entries_it_changed(
        db_path: Path, make_db: Callable[..., PersistDict], body: str, changed: dict[str, object]) -> None:
    """A write in another process logs the keys it changed: this front cache evicts those and keeps
    serving the rest as hits; the changed keys read their new state."""
    db = make_db()
    db.set_many({f"k{i}": i for i in range(50)})
    _read_all_twice(db)
    in_another_process(db_path, body)
    for key, value in changed.items():
        assert db.get(key) == value
    hits = db.stats()["front_cache_hits"]
    kept = [f"k{i}" for i in range(50) if f"k{i}" not in changed]
    assert all(db[key] == int(key[1:]) for key in kept)
    # a read that misses LMDB does not bring the cache up to date: then the first kept key is read there
    assert db.stats()["front_cache_hits"] >= hits + len(kept) - 1
    for key, value in changed.items():  # now from a cache brought up to date: evicted, read again
        assert db.get(key) == value


def test_another_process_s_write_evicts_keys_of_every_kind(db_path: Path, make_db: Callable[..., PersistDict]) -> None:
    """The log names entries by their lookup encoding: int, float, tuple, bytes and long (hashed-slot)
    keys cached here are evicted when another process overwrites them."""
    keys = ["L" * 600, 5, 2.5, ("t", 1), b"raw", "short"]
    db = make_db()
    for key in keys:
        db[key] = "old"
    for _ in range(2):
        assert all(db[key] == "old" for key in keys)
    assert len(db._front) == len(keys)
    in_another_process(db_path, f"d.update(dict.fromkeys({keys[:-1]!r}, 'new'))")
    for _ in range(2):
        assert [db[key] for key in keys] == ["new"] * (len(keys) - 1) + ["old"]


@pytest.mark.parametrize("body", [
    "d.clear(); d.update({f'k{i}': i for i in range(50)})",  # clear() names no key
    "d.set_many({f'key-{i:040d}': i for i in range(1000)})",  # too many keys to log
])
def test_another_process_s_unlogged_write_empties_the_front_cache(
        db_path: Path, make_db: Callable[..., PersistDict], body: str) -> None:
    """A commit that is not in the change log empties the cache, so nothing stale is served."""
    db = make_db()
    db.set_many({f"k{i}": i for i in range(50)})
    _read_all_twice(db)
    in_another_process(db_path, body)
    assert db["k0"] == 0
    assert len(db._front) == 0
