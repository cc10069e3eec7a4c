"""The public API beyond the mapping contract and the conformance suite: d(...), lifecycle, validation,
codec errors on reopening, logging."""

from __future__ import annotations

import io
from collections.abc import Callable
from pathlib import Path
from typing import Any

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


def test_undecodable_value_raises_codec_error(db_path: Path, make_db: Callable[..., PersistDict]) -> None:
    """A value the configured unserializer cannot decode raises CodecError naming the key."""
    d = make_db()
    d["k"] = {"a": 1}
    d.close()
    broken = make_db(value_unserializer=lambda data: 1 / 0)
    with pytest.raises(CodecError, match="'k'"):
        broken["k"]


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
