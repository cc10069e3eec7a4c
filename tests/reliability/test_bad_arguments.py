"""Every bad argument of the public API raises a TypeError, ValueError or PersistDictError that names
the problem, and leaves the store exactly as it was (items, order and metadata)."""

from __future__ import annotations

import math
import threading
from collections.abc import Callable
from typing import Any

import pytest

from PersistDict import (
    AlreadyCalledError,
    ClosedError,
    CodecMismatchError,
    KeyEncodingError,
    NotADatabaseDirectoryError,
    PersistDict,
    PersistDictError,
)

from . import _harness as h

pytestmark = pytest.mark.slow

Case = tuple[str, Callable[[PersistDict], Any], type[BaseException], tuple[str, ...]]

UNHASHABLE = {"list": [1], "dict": {"a": 1}, "set": {1}, "tuple-with-list": ("t", [1]), "bytearray": bytearray(b"x")}
UNPICKLABLE = {"lambda": lambda: 0, "lock": threading.Lock()}
BAD_TTL_VALUES = {"zero": 0, "negative": -1, "nan": math.nan, "inf": math.inf, "-inf": -math.inf, "huge-int": 10**400}
BAD_TTL_TYPES = {"str": "5", "list": [1]}


def _key_cases() -> list[Case]:
    uses: dict[str, Callable[[PersistDict, Any], Any]] = {
        "d[k] = v": lambda d, k: d.__setitem__(k, 1), "d[k]": lambda d, k: d[k],
        "del d[k]": lambda d, k: d.__delitem__(k),
        "k in d": lambda d, k: k in d, "get": lambda d, k: d.get(k), "pop": lambda d, k: d.pop(k),
        "pop default": lambda d, k: d.pop(k, None), "setdefault": lambda d, k: d.setdefault(k, 1),
        "metadata": lambda d, k: d.metadata(k), "touch": lambda d, k: d.touch(k), "set": lambda d, k: d.set(k, 1),
        "get_many": lambda d, k: d.get_many(["a", k]), "set_many": lambda d, k: d.set_many([("fresh", 1), (k, 1)]),
        "update": lambda d, k: d.update([("fresh", 1), (k, 1)]),
    }
    cases: list[Case] = []
    for kind, key in UNHASHABLE.items():
        cases += [(f"{use}, {kind} key", lambda d, f=f, k=key: f(d, k), KeyEncodingError, ("unhashable",))
                  for use, f in uses.items()]
    for kind, key in UNPICKLABLE.items():
        cases += [(f"{use}, {kind} key", lambda d, f=f, k=key: f(d, k), KeyEncodingError, ("key",))
                  for use, f in uses.items() if use in ("d[k] = v", "set_many", "setdefault", "get")]
    return cases


def _ttl_cases() -> list[Case]:
    uses: dict[str, Callable[[PersistDict, Any], Any]] = {
        "set": lambda d, t: d.set("fresh", 1, ttl=t), "set_many": lambda d, t: d.set_many({"fresh": 1}, ttl=t),
        "touch": lambda d, t: d.touch("a", ttl=t),
    }
    cases: list[Case] = []
    for use, f in uses.items():
        cases += [(f"{use} ttl={name}", lambda d, f=f, t=t: f(d, t), ValueError, ("ttl",))
                  for name, t in BAD_TTL_VALUES.items()]
        cases += [(f"{use} ttl {name}", lambda d, f=f, t=t: f(d, t), TypeError, ("ttl",))
                  for name, t in BAD_TTL_TYPES.items()]
    return cases


METHOD_CASES: list[Case] = _key_cases() + _ttl_cases() + [
    ("set_many(5)", lambda d: d.set_many(5), TypeError, ("mapping",)),
    ("update(5)", lambda d: d.update(5), TypeError, ("int",)),
    ("update with a triple", lambda d: d.update([("fresh", 1), (1, 2, 3)]), ValueError, ("length",)),
    ("update with a non-pair", lambda d: d.update([("fresh", 1), 1]), TypeError, ("int",)),
    ("get_many(5)", lambda d: d.get_many(5), TypeError, ("keys",)),
    ("check(repair='yes')", lambda d: d.check(repair="yes"), TypeError, ("repair",)),
    ("check(drop_unreadable=1)", lambda d: d.check(drop_unreadable=1), TypeError, ("drop_unreadable",)),
    ("flush_atimes(batch='x')", lambda d: d.flush_atimes(batch="x"), TypeError, ("batch",)),
    ("flush_atimes(batch=0)", lambda d: d.flush_atimes(batch=0), ValueError, ("batch",)),
    ("d(...) a second time", lambda d: d(fresh=1), AlreadyCalledError, ("once",)),
    ("pop() without a key", lambda d: d.pop(), TypeError, ("argument",)),
]

# keyword -> (bad value, expected, words); every one against an existing store
OPTION_CASES: list[tuple[dict[str, Any], type[BaseException], tuple[str, ...]]] = [
    ({"expiration_days": "7"}, TypeError, ("expiration_days",)),
    ({"expiration_days": -1}, ValueError, ("expiration_days",)),
    ({"expiration_days": math.nan}, ValueError, ("expiration_days",)),
    ({"key_size_limit": 0}, ValueError, ("key_size_limit",)),
    ({"key_size_limit": 1.5}, TypeError, ("key_size_limit",)),
    ({"key_size_limit": 100}, CodecMismatchError, ("key_size_limit",)),
    ({"key_serializer": None}, ValueError, ("key_serializer",)),
    ({"key_serializer": str}, CodecMismatchError, ("key encoding",)),
    ({"key_serializer": 123}, TypeError, ("key_serializer",)),
    ({"value_serializer": None}, ValueError, ("value_serializer",)),
    ({"caching": "yes"}, TypeError, ("caching",)),
    ({"verbose": "no"}, TypeError, ("verbose",)),
    ({"background_thread": "maybe"}, ValueError, ("background_thread",)),
    ({"background_thread": 2}, TypeError, ("background_thread",)),
    ({"background_timeout": math.nan}, ValueError, ("background_timeout",)),
    ({"background_timeout": math.inf}, ValueError, ("background_timeout",)),
    ({"background_timeout": "x"}, TypeError, ("background_timeout",)),
    ({"name": 5}, TypeError, ("name",)),
    ({"durability": "turbo"}, ValueError, ("durability",)),
    ({"durability": "full"}, ValueError, ("durability",)),  # this process has the store open as "safe"
    ({"durability": 1}, TypeError, ("durability",)),
    ({"cache_max_entries": 0}, ValueError, ("cache_max_entries",)),
    ({"cache_max_entries": 1.5}, TypeError, ("cache_max_entries",)),
    ({"cache_max_bytes": -1}, ValueError, ("cache_max_bytes",)),
    ({"maintenance_interval": 0}, ValueError, ("maintenance_interval",)),
    ({"maintenance_interval": -1}, ValueError, ("maintenance_interval",)),
    ({"maintenance_interval": math.nan}, ValueError, ("maintenance_interval",)),
    ({"maintenance_interval": math.inf}, ValueError, ("maintenance_interval",)),
    ({"atime_flush_interval": 0}, ValueError, ("atime_flush_interval",)),
    ({"atime_flush_interval": math.nan}, ValueError, ("atime_flush_interval",)),
    ({"atime_flush_interval": math.inf}, ValueError, ("atime_flush_interval",)),
    ({"map_size": 10}, ValueError, ("map_size",)),
    ({"map_size": 1.5}, TypeError, ("map_size",)),
    ({"max_items": 0}, ValueError, ("max_items",)),
    ({"max_items": "3"}, TypeError, ("max_items",)),
    ({"max_bytes": 1}, ValueError, ("max_bytes",)),
    ({"clock": "now"}, TypeError, ("clock",)),
    ({"unknown_option": 1}, TypeError, ("unknown_option",)),
]

CLOSED_USES: dict[str, Callable[[PersistDict], Any]] = {
    "d[k]": lambda d: d["a"], "d[k] = v": lambda d: d.__setitem__("a", 2), "del d[k]": lambda d: d.__delitem__("a"),
    "k in d": lambda d: "a" in d, "get": lambda d: d.get("a"), "get_many": lambda d: d.get_many(["a"]),
    "set": lambda d: d.set("a", 2), "set_many": lambda d: d.set_many({"a": 2}), "update": lambda d: d.update(a=2),
    "pop": lambda d: d.pop("a"), "popitem": lambda d: d.popitem(), "setdefault": lambda d: d.setdefault("z", 1),
    "touch": lambda d: d.touch("a"), "metadata": lambda d: d.metadata("a"), "keys": lambda d: list(d.keys()),
    "items": lambda d: list(d.items()), "values": lambda d: list(d.values()), "len": len, "iter": list,
    "copy": lambda d: d.copy(), "clear": lambda d: d.clear(), "check": lambda d: d.check(),
    "expire": lambda d: d.expire(), "run_maintenance": lambda d: d.run_maintenance(), "stats": lambda d: d.stats(),
    "transaction": lambda d: d.transaction().__enter__(), "d(...)": lambda d: d(z=1), "==": lambda d: d == {},
    "|": lambda d: d | {}, "|=": lambda d: d.__ior__({"a": 2}), "with": lambda d: d.__enter__(),
}


@pytest.fixture
def store(tmp_path):
    """A store with plain, TTL and read entries, and a d(...) call behind it."""
    d = h.open_db(tmp_path / "db")
    d(a=1, b=[2, "two"])
    d.set("ttl", "expires", ttl=3600)
    d[("t", 1)] = {"x": 1}
    d["a"], d["ttl"]
    d.flush_atimes()
    d["a"]  # a pending access time too
    yield d
    d.close()


def assert_refused(d: PersistDict, call: Callable[[], Any], expected: type[BaseException],
                   words: tuple[str, ...]) -> None:
    """``call()`` raises ``expected`` (a TypeError, ValueError or PersistDictError) whose message names
    one of ``words``, and the store's items, order and metadata are what they were."""
    before = h.snapshot(d)
    with pytest.raises(expected) as info:
        call()
    assert isinstance(info.value, (TypeError, ValueError, PersistDictError)), repr(info.value)
    text = str(info.value).lower()
    assert any(word.lower() in text for word in words), f"{info.value!r} does not name {words}"
    assert h.snapshot(d) == before, "a refused call changed the store"
    h.FIGURES["bad-argument cases"] += 1


@pytest.mark.parametrize("name, call, expected, words", METHOD_CASES, ids=[c[0] for c in METHOD_CASES])
def test_bad_argument_of_a_method(store, name, call, expected, words):
    """A bad argument to a method is refused with an error naming it, and the store is unchanged."""
    assert_refused(store, lambda: call(store), expected, words)


@pytest.mark.parametrize("option, expected, words", OPTION_CASES, ids=[repr(c[0]) for c in OPTION_CASES])
def test_bad_option_of_the_constructor(store, option, expected, words):
    """A bad constructor option on an existing store is refused with an error naming it; the store is unchanged."""
    options = {"background_thread": "disabled", **option}
    assert_refused(store, lambda: PersistDict(store.path, **options), expected, words)


def test_bad_database_paths(store, tmp_path):
    """A database path of a wrong type, or naming a file, is refused with an error naming it."""
    a_file = tmp_path / "a_file"
    a_file.write_text("not a database")
    assert_refused(store, lambda: PersistDict(123), TypeError, ("database_path",))
    assert_refused(store, lambda: PersistDict(a_file), NotADatabaseDirectoryError, ("not a directory",))
    assert a_file.read_text() == "not a database"


def test_bad_values_for_special_stores(tmp_path):
    """Raw-value, raw-key and bounded stores refuse what they cannot hold, naming it, unchanged."""
    raw = h.open_db(tmp_path / "raw", value_serializer=None, value_unserializer=None,
                    key_serializer=None, key_unserializer=None)
    bounded = h.open_db(tmp_path / "bounded", max_items=3, max_bytes=64 << 10)
    try:
        raw["k"] = "v"
        bounded.set_many({"a": 1, "b": 2})
        assert_refused(raw, lambda: raw.__setitem__("k2", 5), TypeError, ("str or bytes",))
        assert_refused(raw, lambda: raw.__setitem__(5, "v"), KeyEncodingError, ("key",))
        assert_refused(bounded, lambda: bounded.set_many({f"n{i}": i for i in range(4)}), ValueError, ("max_items",))
        assert_refused(bounded, lambda: bounded.__setitem__("big", b"x" * (128 << 10)), ValueError, ("max_bytes",))
    finally:
        raw.close()
        bounded.close()


@pytest.mark.parametrize("use", list(CLOSED_USES))
def test_closed_instance_refuses_every_method(store, use):
    """Every method of a closed instance raises ClosedError, and the store is unchanged."""
    closed = h.open_db(store.path)
    closed.close()
    assert_refused(store, lambda: CLOSED_USES[use](closed), ClosedError, ("closed",))


def test_close_racing_other_threads_raises_only_closed_error(tmp_path):
    """Threads using an instance while another thread closes it get only ClosedError (defect 7)."""
    path = tmp_path / "db"
    with h.open_db(path) as d:
        d.set_many({f"k{i}": i for i in range(50)})
    unexpected: list[str] = []
    for round_ in range(h.sized(20, 200)):
        d = h.open_db(path)
        started = threading.Barrier(5)

        def use(t: int, d: PersistDict = d) -> None:
            started.wait()
            for n in range(100_000):
                try:
                    (lambda: d[f"k{n % 50}"], lambda: d.__setitem__(f"k{n % 50}", n),
                     lambda: list(d.items()), lambda: len(d))[(t + n) % 4]()
                except ClosedError:
                    return
                except Exception as exc:  # noqa: BLE001 - the finding
                    unexpected.append(f"round {round_}: {exc!r}")
                    return

        threads = [threading.Thread(target=use, args=(t,)) for t in range(4)]
        for thread in threads:
            thread.start()
        started.wait()
        d.close()
        for thread in threads:
            thread.join(h.CHILD_TIMEOUT)
    assert not unexpected, f"{len(unexpected)} errors other than ClosedError: {unexpected[:5]}"
