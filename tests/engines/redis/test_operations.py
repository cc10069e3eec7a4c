"""The Redis engine's own structures behind the later protocol: the sorted index of lookups that
prefix lookups read (kept by every write), the settings rows (compare-and-set, kept by clear(),
never lost to another client's transaction), keep_key, export past expired entries, and the
operations a store without files answers (compact, restore refused)."""

from __future__ import annotations

import io
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from PersistDict import PersistDict
from PersistDict.engines.base import Bounds, Item

from _clock import Clock


def open_store(redis_url: str, **options: Any) -> PersistDict:
    options.setdefault("namespace", f"ops-{uuid.uuid4().hex}")
    return PersistDict(redis_url, background_thread="disabled", **options)


def assert_index_matches(db: PersistDict) -> None:
    """The index K holds exactly the stored lookups, in byte order (score 0 everywhere)."""
    engine = db._engine
    lookups = sorted(field for field in engine.client.hkeys(engine.table("E")) if field)
    assert engine.client.zrange(engine.table("K"), 0, -1, withscores=True) == [(lookup, 0.0) for lookup in lookups]


def test_the_sorted_index_follows_every_write(redis_url: str) -> None:
    """After inserts, overwrites, deletes, pops, TTL sweeps, eviction, import, committed and rolled
    back transactions (and savepoints) and clear(), the index names exactly the stored entries."""
    clock = Clock()
    db = open_store(redis_url, clock=clock, max_items=50)
    try:
        db.set_many({f"k:{i:03}": i for i in range(40)})
        db.update({"k:000": "again", 7: "int", b"raw": b"x"})
        del db["k:001"]
        db.pop("k:002")
        db.popitem()
        for i in range(10):
            db.set(f"t:{i}", i, ttl=5)
        assert_index_matches(db)
        db.set_many({f"e:{i}": i for i in range(20)})  # past max_items: the least recently used go
        assert len(db) == 50
        assert_index_matches(db)
        clock.now += 10
        db.expire()
        assert_index_matches(db)
        buffer = io.StringIO()
        db.export(buffer)
        buffer.seek(0)
        other = open_store(redis_url, clock=clock)
        assert other.import_from(buffer) == len(db)
        assert_index_matches(other)
        assert other.keys(prefix="e:") == db.keys(prefix="e:")
        other.close()
        with db.transaction():
            db["x:1"] = 1
            del db[db.keys(prefix="e:")[0]]
            with pytest.raises(RuntimeError):
                with db.transaction():  # a savepoint: rolled back alone
                    db["x:gone"] = 1
                    raise RuntimeError("roll back the savepoint")
        assert db.keys(prefix="x:") == ["x:1"]
        with pytest.raises(RuntimeError):
            with db.transaction():
                db["x:2"] = 2
                db.clear()
                raise RuntimeError("roll back")
        assert db.keys(prefix="x:") == ["x:1"]
        assert_index_matches(db)
        db.clear()
        assert db._engine.client.exists(db._engine.table("K")) == 0
        db["k:1"] = 1
        assert_index_matches(db)
    finally:
        db.close()


def test_settings_are_compare_and_set_rows_kept_by_clear(redis_url: str) -> None:
    """put_setting stores only over the expected value; clear() keeps settings; a setting named
    like a meta row (next, called, format) is no meta row."""
    db = open_store(redis_url)
    engine = db._engine
    try:
        assert engine.setting(b"encryption") is None
        assert engine.put_setting(b"encryption", b"one", None)
        assert not engine.put_setting(b"encryption", b"two", None)
        assert not engine.put_setting(b"encryption", b"two", b"wrong")
        assert engine.put_setting(b"encryption", b"two", b"one")
        for name in (b"next", b"called", b"format", b"bytes"):
            assert engine.put_setting(name, b"x", None)
        db["a"] = 1
        db(b=2)  # the once-only claim is not the setting named "called"
        assert db.metadata("a") and list(db) == ["a", "b"]
        db.clear()
        assert engine.setting(b"encryption") == b"two" and engine.setting(b"called") == b"x"
        db(c=3)
        assert dict(db) == {"c": 3}
    finally:
        db.close()


def test_a_setting_waits_for_another_clients_transaction(redis_url: str) -> None:
    """put_setting while another client's transaction() holds the namespace waits for its commit,
    which would otherwise put back its copy of the meta rows without the setting."""
    name = f"ops-{uuid.uuid4().hex}"
    holder, setter = open_store(redis_url, namespace=name), open_store(redis_url, namespace=name)
    inside, release, stored = threading.Event(), threading.Event(), []

    def block() -> None:
        with holder.transaction():
            holder["a"] = 1
            inside.set()
            release.wait(10)

    thread = threading.Thread(target=block)
    thread.start()
    try:
        assert inside.wait(10)
        putter = threading.Thread(target=lambda: stored.append(setter._engine.put_setting(b"s", b"v", None)))
        putter.start()
        time.sleep(0.3)
        assert stored == []  # still waiting: the namespace is held
        release.set()
        thread.join(10)
        putter.join(10)
        assert stored == [True]
        assert setter._engine.setting(b"s") == b"v" and setter["a"] == 1
    finally:
        release.set()
        thread.join(10)
        holder.close()
        setter.close()


def test_replace_keeps_or_takes_the_exact_key(redis_url: str) -> None:
    """An overwrite keeps the first key object (1 stays 1 after d[True] = ...) unless keep_key=False."""
    db = open_store(redis_url)
    engine = db._engine
    try:
        for keep_key, expected in ((True, [1]), (False, [True])):
            db.clear()
            db[1] = "one"
            lookup, exact = db._keys.encode(True)
            found = engine.find(lookup, time.time())
            assert exact is not None and found is not None
            wrote, _ = engine.replace(Item(lookup, exact, found.kind, found.payload), found, time.time(), 0.0,
                                      Bounds(None, None), keep_key=keep_key)
            assert wrote
            assert list(db) == expected and type(list(db)[0]) is type(expected[0])
    finally:
        db.close()


def test_export_steps_over_a_whole_batch_of_expired_entries(redis_url: str) -> None:
    """1200 expired entries before 3 live ones: export and backup still reach the live ones."""
    clock = Clock()
    db = open_store(redis_url, clock=clock)
    try:
        db.set_many({f"old{i}": i for i in range(1200)}, ttl=5)
        db.update({"live1": 1, "live2": 2, "live3": 3})
        clock.now += 10
        assert db.export(io.StringIO()) == 3
    finally:
        db.close()


def test_compact_info_and_restore_on_a_server(redis_url: str, tmp_path: Path) -> None:
    """compact() has nothing to give back, info() names the engine, and restore() into a redis://
    path is refused without repeating the URL (it may carry a password)."""
    db = open_store(redis_url)
    try:
        db["a"] = 1
        assert db.compact() == {"bytes_before": 0, "bytes_after": 0}
        assert db.info()["engine"] == "redis"
        db.backup(tmp_path / "copy")
        with pytest.raises(ValueError, match="cannot restore into a Redis store") as caught:
            PersistDict.restore(tmp_path / "copy", "redis://:secret@localhost:6379/0")
        assert "secret" not in str(caught.value)
        with PersistDict(tmp_path / "copy", background_thread="disabled") as copy:
            assert dict(copy) == {"a": 1}
    finally:
        db.close()
