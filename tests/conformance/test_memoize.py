"""get_or_set and memoize on every engine: one computation per missing key, keys, invalidation."""

from __future__ import annotations

import threading

import pytest

from PersistDict import KeyEncodingError

from _concurrency import run_threads


def test_get_or_set_computes_a_missing_value_once_and_stores_it(stores):
    """get_or_set calls the factory only when the key is missing (or expired), with its ttl."""
    now = [1000.0]
    d = stores.open(clock=lambda: now[0])
    calls: list[int] = []
    assert d.get_or_set("k", lambda: calls.append(1) or "v", ttl=10) == "v"
    assert d.get_or_set("k", lambda: calls.append(1) or "w") == "v"
    assert d["k"] == "v" and len(calls) == 1
    d["none"] = None
    assert d.get_or_set("none", lambda: "x") is None  # a stored None is a value
    now[0] += 11
    assert d.get_or_set("k", lambda: "w") == "w"


def test_get_or_set_stores_nothing_when_the_factory_raises(db):
    """A factory that raises: the error reaches the caller, nothing is stored, the next caller computes."""
    with pytest.raises(ZeroDivisionError):
        db.get_or_set("k", lambda: 1 / 0)
    assert "k" not in db
    assert db.get_or_set("k", lambda: 2) == 2


def test_get_or_set_from_8_threads_runs_the_factory_once(db):
    """8 threads asking for one missing key at once: one factory call, all get its value."""
    calls: list[int] = []
    started = threading.Event()
    results: list[int] = []

    def factory() -> int:
        calls.append(1)
        started.wait(5)  # the others arrive while it computes
        return 42

    def ask(i: int) -> None:
        if i == 7:
            started.set()
        results.append(db.get_or_set("k", factory))

    run_threads(8, ask)
    assert len(calls) == 1 and results == [42] * 8


def test_memoize_key_ignores_keyword_order_and_fills_defaults(db):
    """Equal calls (positional, keyword in any order, defaults) share one key and one run."""
    runs: list[tuple[int, int]] = []

    @db.memoize(name="add")
    def add(a: int, b: int = 2, **extra: int) -> int:
        runs.append((a, b))
        return a + b + sum(extra.values())

    assert add(1) == add(1, 2) == add(b=2, a=1) == 3
    assert add(1, x=1, y=2) == add(1, y=2, x=1) == 6
    assert len(runs) == 2
    assert add.cache_key(1) == add.cache_key(a=1, b=2) != add.cache_key(2)
    assert add.cache_key(1)[1] == "add"


def test_memoize_typed_ignore_methods_and_unhashable_arguments(db):
    """typed tells 1 from 1.0; ignore drops a parameter; a method's self is left out; lists and dicts are keys."""
    runs: list[object] = []

    @db.memoize(typed=True)
    def typed(x: object) -> object:
        runs.append(x)
        return x

    typed(1), typed(1.0), typed(1)
    assert len(runs) == 2

    class Client:
        @db.memoize(ignore=("client",))
        def ask(self, prompt: str, options: dict[str, list[int]], client: object = None) -> str:
            runs.append(prompt)
            return prompt.upper()

    assert Client().ask("hi", {"a": [1]}, client=object()) == "HI"
    assert Client().ask("hi", {"a": [1]}, client=object()) == "HI"
    assert len(runs) == 3
    assert Client.ask.cache_key(None, "hi", {"a": [1]}) == Client.ask.cache_key(Client(), "hi", {"a": [1]})


def test_memoize_invalidate_and_exceptions_not_cached(db):
    """invalidate removes one cached result (True if there was one); a raising call caches nothing."""
    runs: list[int] = []

    @db.memoize()
    def f(x: int) -> int:
        runs.append(x)
        if x < 0:
            raise ValueError("negative")
        return x

    f(1), f(1)
    assert f.invalidate(1) is True and f.invalidate(1) is False
    f(1)
    assert runs == [1, 1]
    for _ in range(2):
        with pytest.raises(ValueError):
            f(-1)
    assert runs == [1, 1, -1, -1]


def test_memoize_bad_arguments(db):
    """ignore naming no parameter: ValueError; an unencodable argument: KeyEncodingError."""
    with pytest.raises(ValueError, match="nope"):
        db.memoize(ignore=("nope",))(lambda x: x)
    with pytest.raises(KeyEncodingError):
        db.memoize()(lambda x: x)(lambda: 1)
