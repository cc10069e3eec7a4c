"""The public API beyond the mapping contract: d(...), metadata, lifecycle, validation,
value codecs, transactions, batch operations, logging."""

from __future__ import annotations

import io
import pickle
from collections.abc import Callable
from datetime import timezone
from pathlib import Path
from typing import Any

import dill
import pytest
from loguru import logger

from PersistDict import AlreadyCalledError, ClosedError, CodecError, PersistDict


def test_call_initialises_once(db_path: Path, make_db: Callable[..., PersistDict]) -> None:
    """d(...) fills the store like dict(...), once per database, even after reopening; clear() resets it."""
    d = make_db()
    d = d(a=1, b="string", c=[1, 2, 3])
    assert dict(d.items()) == {"a": 1, "b": "string", "c": [1, 2, 3]}
    with pytest.raises(AlreadyCalledError, match="can only be called once. Just like a regular dict."):
        d(x=1)
    assert "x" not in d
    d.close()
    reopened = make_db()
    with pytest.raises(AlreadyCalledError):
        reopened([("y", 2)])
    reopened.clear()
    reopened([("y", 2)], self=3)  # any keyword is a key, as in dict(self=3)
    assert dict(reopened.items()) == {"y": 2, "self": 3}


def test_spellings_persistdict_0_2_accepted_still_work(make_db: Callable[..., PersistDict]) -> None:
    """expiration_days=None (no expiry), background_thread in any case, and a second d(...)
    caught as the AssertionError 0.2.x raised."""
    d = make_db(expiration_days=None, background_thread="DISABLED")
    assert d.expiration_days == 0 and d._maintenance.mode == "disabled"
    d(a=1)
    with pytest.raises(AssertionError):
        d(b=2)
    assert dict(d.items()) == {"a": 1}


def test_metadata_times(db: PersistDict) -> None:
    """metadata() gives tz-aware UTC ctime/atime; overwrite keeps ctime; reads move atime."""
    clock = [1_000_000.0]
    db._clock = lambda: clock[0]
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


def test_reads_from_front_cache_also_move_atime(db: PersistDict) -> None:
    """Hot reads served by the front cache still refresh atime once flushed."""
    clock = [5_000.0]
    db._clock = lambda: clock[0]
    db["k"] = "v"
    for _ in range(5):
        assert db["k"] == "v"  # admitted on the second miss, then served from the cache
    clock[0] = 9_000.0
    assert db["k"] == "v"
    db.flush_atimes()
    assert db.metadata("k").atime.timestamp() == 9_000.0


def test_close_is_idempotent_and_closed_use_raises(db_path: Path) -> None:
    """close() may be called twice; any use afterwards raises ClosedError (a ValueError)."""
    d = PersistDict(db_path, background_thread="disabled")
    d["k"] = 1
    d.close()
    d.close()
    assert d.closed
    for action in (lambda: d["k"], lambda: d.__setitem__("k", 2), lambda: len(d), lambda: list(d),
                   lambda: "k" in d, lambda: d.get("k")):
        with pytest.raises(ClosedError):
            action()
    assert "closed" in repr(d)


def test_context_manager_closes(db_path: Path) -> None:
    """with PersistDict(...) as d closes d at the end of the block."""
    with PersistDict(db_path, background_thread="disabled") as d:
        d["k"] = 1
    assert d.closed


def test_repr_shows_path_and_size_not_contents(db_path: Path, db: PersistDict) -> None:
    """repr names the path and entry count and never dumps values."""
    db["secret-key"] = "secret-value"
    text = repr(db)
    assert str(db_path) in text and "entries=1" in text
    assert "secret" not in text


def test_copy_returns_plain_dict(db: PersistDict) -> None:
    """copy() returns a plain dict snapshot."""
    db.update(a=1)
    snapshot = db.copy()
    assert type(snapshot) is dict and snapshot == {"a": 1}
    snapshot["b"] = 2
    assert "b" not in db


@pytest.mark.parametrize("kwargs", [
    {"database_path": 123},
    {"database_path": "x", "expiration_days": "7"},
    {"database_path": "x", "key_size_limit": 1.5},
    {"database_path": "x", "caching": "yes"},
    {"database_path": "x", "value_serializer": "pickle"},
])
def test_bad_argument_types_raise_typeerror(tmp_path: Path, kwargs: dict[str, Any]) -> None:
    """Arguments of the wrong type raise TypeError."""
    if kwargs.get("database_path") == "x":
        kwargs["database_path"] = tmp_path / "x"
    with pytest.raises(TypeError):
        PersistDict(**kwargs)


@pytest.mark.parametrize("kwargs", [
    {"key_size_limit": 0},
    {"expiration_days": -1},
    {"value_serializer": None},
    {"key_unserializer": None},
    {"background_thread": "sometimes"},
    {"durability": "eventually"},
    {"cache_max_entries": 0},
    {"max_items": 0},
    {"max_bytes": 4000},  # less than the one page any entry takes
])
def test_bad_argument_values_raise_valueerror(db_path: Path, kwargs: dict[str, Any]) -> None:
    """Arguments with impossible values raise ValueError and create nothing."""
    with pytest.raises(ValueError):
        PersistDict(db_path, **kwargs)
    assert not db_path.exists()


def test_background_timeout_is_clamped(make_db: Callable[..., PersistDict]) -> None:
    """background_timeout below 5 s is raised to 5 s, like the original."""
    assert make_db(background_timeout=1)._maintenance.timeout == 5.0


def test_raw_values_keep_their_type(make_db: Callable[..., PersistDict]) -> None:
    """With value_serializer=None, str and bytes are stored as-is and come back with their type."""
    d = make_db(value_serializer=None, value_unserializer=None)
    d["s"] = "text ✓"
    d["b"] = b"\x00bytes"
    for _ in range(3):  # through the front cache too
        assert d["s"] == "text ✓" and type(d["s"]) is str
        assert d["b"] == b"\x00bytes" and type(d["b"]) is bytes
    with pytest.raises(TypeError):
        d["n"] = 1
    assert "n" not in d


def test_failing_serializer_keeps_old_value(make_db: Callable[..., PersistDict]) -> None:
    """If the value serializer raises, the exception reaches the caller and the old value stays."""
    d = make_db()
    d["k"] = "old"
    with pytest.raises((pickle.PicklingError, AttributeError, TypeError)):
        d["k"] = lambda: None  # pickle cannot serialize a lambda
    assert d["k"] == "old"
    with pytest.raises((pickle.PicklingError, AttributeError, TypeError)):
        d.update({"k": "new", "bad": lambda: None})  # all or nothing
    assert d["k"] == "old" and "bad" not in d


def test_dill_values(make_db: Callable[..., PersistDict]) -> None:
    """dill.dumps/dill.loads store values pickle cannot, such as lambdas."""
    d = make_db(value_serializer=dill.dumps, value_unserializer=dill.loads)
    d["f"] = lambda x: x * 2
    assert d["f"](21) == 42


def test_undecodable_value_raises_codec_error(db_path: Path, make_db: Callable[..., PersistDict]) -> None:
    """A value the configured unserializer cannot decode raises CodecError naming the key."""
    d = make_db()
    d["k"] = {"a": 1}
    d.close()
    broken = make_db(value_unserializer=lambda data: 1 / 0)
    with pytest.raises(CodecError, match="'k'"):
        broken["k"]


def test_set_many_and_get_many(db: PersistDict) -> None:
    """set_many writes all pairs in one transaction; get_many returns the found ones."""
    db.set_many({"a": 1, "b": 2})
    db.set_many([("c", 3)])
    assert db.get_many(["a", "c", "missing"]) == {"a": 1, "c": 3}
    assert db.get_many([]) == {}


def test_transaction_commits_and_rolls_back(db: PersistDict) -> None:
    """transaction() commits on success, rolls back everything on an exception, and nests."""
    db["n"] = 0
    with db.transaction():
        db["n"] = db["n"] + 1
        with db.transaction():
            db["m"] = "inner"
        assert db["m"] == "inner"
    assert db["n"] == 1 and db["m"] == "inner"
    with pytest.raises(RuntimeError):
        with db.transaction():
            db["n"] = 100
            del db["m"]
            assert "m" not in db and db["n"] == 100
            raise RuntimeError("boom")
    assert db["n"] == 1 and db["m"] == "inner"
    assert list(db) == ["n", "m"]


def test_transaction_reads_see_own_writes_and_iterate(db: PersistDict) -> None:
    """Inside a transaction, reads, len and iteration see the transaction's own writes."""
    db.update(a=1)
    with db.transaction() as d:
        d["b"] = 2
        assert len(d) == 2 and list(d) == ["a", "b"] and d.get_many(["b"]) == {"b": 2}
        assert d.pop("a") == 1
    assert dict(db.items()) == {"b": 2}


def test_verbose_logs_with_name_and_never_values(make_db: Callable[..., PersistDict]) -> None:
    """verbose=True logs this instance's work prefixed by its name; values never appear."""
    sink = io.StringIO()
    handler = logger.add(sink, format="{message}")
    try:
        d = make_db(verbose=True, name="mycache")
        d["key"] = "TOP-SECRET-VALUE"
        d.expire()
        d.close()
    finally:
        logger.remove(handler)
        logger.disable("PersistDict")
    text = sink.getvalue()
    assert "[mycache]" in text and "opened" in text
    assert "TOP-SECRET-VALUE" not in text


def test_quiet_by_default(make_db: Callable[..., PersistDict]) -> None:
    """Without verbose, the library logs nothing."""
    sink = io.StringIO()
    handler = logger.add(sink, format="{message}")
    try:
        d = make_db()
        d["k"] = "v"
        d.close()
    finally:
        logger.remove(handler)
    assert sink.getvalue() == ""


def test_public_methods_check_argument_types(db: PersistDict) -> None:
    """Methods beyond the constructor reject wrongly typed arguments with TypeError, writing nothing."""
    with pytest.raises(TypeError):
        db.set("k", 1, ttl="10")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        db.check(repair="yes")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        db.get_many(5)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        db.set_many(5)  # type: ignore[arg-type]
    assert len(db) == 0


def test_nested_transaction_is_a_savepoint(db: PersistDict) -> None:
    """An inner transaction block that raises rolls back only its own writes; the outer one commits."""
    with db.transaction():
        db["outer"] = 1
        try:
            with db.transaction():
                db["inner"] = 2
                db["outer"] = 100
                raise ValueError("inner failure")
        except ValueError:
            pass
        assert "inner" not in db and db["outer"] == 1
        with db.transaction():
            db["inner-ok"] = 3
    assert dict(db.items()) == {"outer": 1, "inner-ok": 3}


def test_noop_write_does_not_leave_the_cache_believing_it_is_current(db_path: Path,
                                                                      make_db: Callable[..., PersistDict]) -> None:
    """A write that changes nothing (pop/del/touch of a missing key) never lets a later foreign write go unseen."""
    first, second = make_db(), make_db()
    first["k"] = "old"
    for _ in range(3):
        assert first["k"] == "old"
    first.pop("missing", None)
    with pytest.raises(KeyError):
        first.touch("missing")
    second["k"] = "new"
    assert first["k"] == "new" and first.get("k") == "new"
