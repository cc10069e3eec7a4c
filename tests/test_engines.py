"""The engine protocol (PersistDict/engines/base.py), held to by both engines, and ":memory:" through the public API."""

from __future__ import annotations

import os
import pickle
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from PersistDict import PersistDict
from PersistDict.engines.base import Bounds, Item
from PersistDict.engines.registry import MEMORY, open_engine

NO_BOUNDS = Bounds(None, None)


def item(name: str, value: bytes = b"v") -> Item:
    """An entry to write: a str key's lookup encoding and a raw bytes value (kind 3)."""
    return Item(b"s" + name.encode(), None, 3, value)


@pytest.fixture(params=["lmdb", "memory"])
def engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Any]:
    """An open engine of each kind, closed at teardown."""
    path = MEMORY if request.param == "memory" else str(tmp_path / "db")
    opened = open_engine(path, "safe", 1 << 24, 511)
    yield opened
    opened.close()


def test_put_get_overwrite_keeps_id_and_moves_the_clock(engine: Any) -> None:
    """A write moves the feed's clock; an overwrite keeps the entry's id; get returns the value and the snapshot clock."""
    before = engine.feed.last_commit()
    commit = engine.put([item("a", b"1")], 100.0, 0.0, NO_BOUNDS)
    assert commit.wrote and commit.tracked and commit.clock == engine.feed.last_commit() > before
    first_id, expires, kind, payload, snapshot = engine.get(b"sa")
    assert (expires, kind, bytes(payload), snapshot) == (0.0, 3, b"1", commit.clock)
    engine.put([item("a", b"2")], 101.0, 0.0, NO_BOUNDS)
    assert engine.get(b"sa")[0] == first_id and bytes(engine.get(b"sa")[3]) == b"2"
    assert engine.get(b"sb")[0] == -1 and engine.expires(b"sb") is None


def test_changes_since_names_the_changed_lookups(engine: Any) -> None:
    """The feed names what each commit changed; a clear() is not named, so readers cannot vouch across it."""
    start = engine.feed.last_commit()
    engine.put([item("a"), item("b")], 100.0, 0.0, NO_BOUNDS)
    engine.remove(b"sa", 100.0)
    assert engine.feed.changes_since(start) == (engine.feed.last_commit(), {b"sa", b"sb"})
    engine.clear()
    assert engine.feed.changes_since(start) is None


def test_expired_entries_are_returned_but_not_live(engine: Any) -> None:
    """get returns an expired entry (the caller compares), find/keys/items skip it, sweep removes it."""
    engine.put([item("ttl")], 100.0, 150.0, NO_BOUNDS)
    engine.put([item("plain")], 100.0, 0.0, NO_BOUNDS)
    assert engine.get(b"sttl")[1] == 150.0 and engine.find(b"sttl", 200.0) is None
    assert engine.keys(200.0, lambda rows: rows, None) == [b"splain"]
    assert [row[0] for row in engine.items(200.0)] == [b"splain"]
    assert engine.sweep(200.0, None, 0, float("inf"), lambda: 0.0, lambda exc: None)[0] == 1
    assert engine.count() == 1


def test_bounds_evict_the_least_recently_used_and_never_the_write(engine: Any) -> None:
    """max_items evicts the entry read longest ago; a write that cannot fit alone raises ValueError and is undone."""
    engine.put([item("old"), item("new")], 100.0, 0.0, NO_BOUNDS)
    new_id = engine.get(b"snew")[0]
    engine.accesses.note(new_id, 150.0)  # "new" was read since: "old" is the least recently used
    commit = engine.put([item("third")], 200.0, 0.0, Bounds(2, None))
    assert commit.evicted == [b"sold"] and engine.count() == 2
    with pytest.raises(ValueError):
        engine.put([item("x"), item("y"), item("z")], 300.0, 0.0, Bounds(2, None))
    assert sorted(engine.keys(300.0, lambda rows: rows, None)) == [b"snew", b"sthird"]


def test_once_claims_until_clear(engine: Any) -> None:
    """put(once=...) claims a name atomically with its write; a second claim fails and writes nothing."""
    from PersistDict import AlreadyCalledError

    engine.put([item("a")], 100.0, 0.0, NO_BOUNDS, once=b"called")
    with pytest.raises(AlreadyCalledError):
        engine.put([item("b")], 100.0, 0.0, NO_BOUNDS, once=b"called")
    assert engine.get(b"sb")[0] == -1
    engine.clear()
    engine.put([item("b")], 100.0, 0.0, NO_BOUNDS, once=b"called")


def test_transaction_rolls_back_and_savepoints_keep_the_outer_writes(engine: Any) -> None:
    """A block that raises undoes its writes; a nested block that raises undoes only its own."""
    with pytest.raises(RuntimeError):
        with engine.transaction():
            engine.put([item("gone")], 100.0, 0.0, NO_BOUNDS)
            raise RuntimeError
    assert engine.get(b"sgone")[0] == -1
    with engine.transaction():
        engine.put([item("kept")], 100.0, 0.0, NO_BOUNDS)
        with pytest.raises(RuntimeError):
            with engine.transaction():
                engine.put([item("inner")], 100.0, 0.0, NO_BOUNDS)
                raise RuntimeError
        assert engine.feed.in_transaction()
    assert engine.get(b"skept")[0] > 0 and engine.get(b"sinner")[0] == -1
    assert not engine.feed.in_transaction() and not engine.feed.txn_holders


def test_put_if_absent_remove_retime_and_times(engine: Any) -> None:
    """setdefault's, pop's, touch's and metadata's operations, at the engine."""
    found, _ = engine.put_if_absent(item("k", b"first"), 100.0, NO_BOUNDS)
    assert found is None
    found, _ = engine.put_if_absent(item("k", b"second"), 101.0, NO_BOUNDS)
    assert found is not None and bytes(found[1]) == b"first"
    ok, _ = engine.retime(b"sk", 120.0, 500.0)
    assert ok and engine.expires(b"sk") == 500.0 and engine.times(b"sk", 130.0) == (100.0, 120.0)
    record = engine.find(b"sk", 130.0)
    removed, _ = engine.remove(b"sk", 130.0, expected=record._replace(payload=b"other"))
    assert removed is None  # not the version read
    removed, _ = engine.remove(b"sk", 130.0, expected=record)
    assert removed is not None and engine.count() == 0


def test_newest_and_remove_at(engine: Any) -> None:
    """popitem's operations: the newest live entry, removed only while it is that version."""
    engine.put([item("a"), item("b")], 100.0, 0.0, NO_BOUNDS)
    record, where = engine.newest(100.0)
    assert record.lookup == b"sb"
    removed, lookup, _ = engine.remove_at(where, record)
    assert removed is not None and lookup == b"sb" and engine.newest(100.0)[0].lookup == b"sa"


def test_write_atimes_only_raises_access_times_of_live_entries(engine: Any) -> None:
    """Stored access times only go up, and none is stored for an entry that is gone."""
    engine.put([item("a")], 100.0, 0.0, NO_BOUNDS)
    seq = engine.get(b"sa")[0]
    assert engine.write_atimes([(seq, 150.0), (seq + 1000, 150.0)])[0] == 1
    assert engine.write_atimes([(seq, 120.0)])[0] == 0
    assert engine.times(b"sa", 160.0) == (100.0, 150.0)


def test_memory_store_keeps_nothing_on_disk_and_each_is_its_own(tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """PersistDict(":memory:") writes no file, two of them are two stores, and close() drops the data."""
    monkeypatch.chdir(tmp_path)
    first, second = PersistDict(":memory:"), PersistDict(":memory:")
    first["k"] = [1, 2]
    assert first["k"] == [1, 2] and "k" not in second and first.path == ":memory:"
    assert os.listdir(tmp_path) == []
    first.close()
    second.close()
    assert PersistDict(":memory:", background_thread="disabled").get("k") is None


def test_memory_store_semantics_through_the_mapping() -> None:
    """TTL, max_items eviction, metadata, transaction() and check() behave on ':memory:' as on disk."""
    now = [1_000.0]
    d = PersistDict(":memory:", background_thread="disabled", max_items=2, clock=lambda: now[0])
    d.set("ttl", 1, ttl=10)
    d["a"] = "a"
    now[0] += 20
    assert "ttl" not in d and d.expire() == 1
    d["b"] = "b"
    now[0] += 1
    d["a"]  # read: "b" is now the least recently used
    d["c"] = "c"
    assert sorted(d) == ["a", "c"] and d.stats()["evicted"] == 1
    assert d.metadata("c").ctime.timestamp() == now[0]
    with pytest.raises(KeyError):
        with d.transaction():
            d["x"] = 1
            raise KeyError("undo")
    assert "x" not in d and d.check().ok
    d.close()


def test_memory_transaction_is_isolated_from_other_threads() -> None:
    """Another thread never sees a transaction's uncommitted writes (it waits for the block)."""
    d = PersistDict(":memory:", background_thread="disabled")
    d["k"] = "old"
    seen: list[Any] = []
    inside = threading.Event()

    def reader() -> None:
        inside.wait()
        seen.append(d["k"])

    thread = threading.Thread(target=reader)
    thread.start()
    with d.transaction():
        d["k"] = "uncommitted"
        inside.set()
        thread.join(0.2)  # the reader is blocked: it must not have read "uncommitted"
        assert seen == []
        d["k"] = "new"
    thread.join()
    assert seen == ["new"]
    d.close()


def test_a_pickled_memory_store_opens_empty() -> None:
    """An instance travels as its path and settings: a ':memory:' store arrives as a new, empty one."""
    d = PersistDict(":memory:", background_thread="disabled")
    d["k"] = 1
    copy: Callable[..., Any] = pickle.loads
    other = copy(pickle.dumps(d))
    assert len(other) == 0 and len(d) == 1
    d.close()
    other.close()


def test_a_sweep_pass_drops_the_mutexes_whose_time_ran_out(engine: Any) -> None:
    """A claim past its end is dropped by a sweep pass (its holder's unclaim then finds nothing, as
    after a takeover); a claim still running stays its holder's."""
    assert engine.claim(b"old", b"h1", 100.0, 110.0)
    assert engine.claim(b"live", b"h2", 100.0, 500.0)
    engine.sweep(200.0, None, 0, float("inf"), time.monotonic, lambda exc: None)
    assert not engine.unclaim(b"old", b"h1")
    assert engine.unclaim(b"live", b"h2")
