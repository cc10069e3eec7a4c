"""Batch and snapshot operations on every engine: set_many, get_many, copy, argument types."""

from __future__ import annotations

import pytest

from PersistDict import PersistDict

from ._engines import Stores


def test_set_many_and_get_many(db: PersistDict) -> None:
    """set_many writes all pairs in one transaction; get_many returns the found ones."""
    db.set_many({"a": 1, "b": 2})
    db.set_many([("c", 3)])
    assert db.get_many(["a", "c", "missing"]) == {"a": 1, "c": 3}
    assert db.get_many([]) == {}


def test_copy_returns_plain_dict(db: PersistDict) -> None:
    """copy() returns a plain dict snapshot."""
    db.update(a=1)
    snapshot = db.copy()
    assert type(snapshot) is dict and snapshot == {"a": 1}
    snapshot["b"] = 2
    assert "b" not in db


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


def test_get_many_uses_the_front_cache_consistently(stores: Stores) -> None:
    """get_many serves cached keys, reads the rest, and returns keys in the order asked."""
    db = stores.open()
    db.set_many({"a": 1, "b": 2, "c": 3})
    for _ in range(3):
        db["a"], db["b"]
    hits = db.stats()["front_cache_hits"]
    assert db.get_many(["b", "a"]) == {"b": 2, "a": 1}
    assert db.stats()["front_cache_hits"] == hits + 2
    assert list(db.get_many(["c", "missing", "a"]).items()) == [("c", 3), ("a", 1)]
    db["a"] = 10
    assert db.get_many(["a", "b", "c"]) == {"a": 10, "b": 2, "c": 3}
