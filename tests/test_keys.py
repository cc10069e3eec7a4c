"""Key codec: canonical encoding, custom and raw key serializers, hashing and collisions."""

from __future__ import annotations

import enum
import json
import os
import random
import subprocess
import sys
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from _internals import KEYS_MODULE, KeyCodec
from PersistDict import KeyEncodingError, PersistDict, canonical_key_serializer, canonical_key_unserializer

SAMPLE_KEYS: list[Any] = [
    "plain", "", "ünïcode ✓", "\udcff surrogate", b"\x00bytes", 0, -1, 2**80, 1.5, float("inf"), None, True,
    False, ("a", ("b", 1), frozenset({"x", "y", "z"})), frozenset({("p", 1), ("q", 2)}), (), frozenset(),
]

ENCODE_SCRIPT = """
import sys, json
sys.path.insert(0, {root!r})
from PersistDict import canonical_key_serializer, canonical_key_unserializer
from {keys_module} import KeyCodec
codec = KeyCodec(canonical_key_serializer, canonical_key_unserializer, 511)
keys = [("a" + "b", ("x" * 3, "y")), frozenset({{"alpha", "beta", "gamma", "delta", ("t", 1)}}),
        frozenset({{1, 2.5, "three", None}}), ("".join(["s", "t"]), "st")]
print(json.dumps([codec.encode(k)[0].hex() for k in keys]))
"""


def test_encoding_is_canonical_across_hash_seeds() -> None:
    """Equal keys encode to the same bytes in processes with different PYTHONHASHSEED."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    outputs = set()
    for seed in ("0", "1", "12345", "random"):
        env = dict(os.environ, PYTHONHASHSEED=seed)
        result = subprocess.run([sys.executable, "-c", ENCODE_SCRIPT.format(root=root, keys_module=KEYS_MODULE)], env=env,
                                capture_output=True, text=True, check=True)
        outputs.add(result.stdout)
    assert len(outputs) == 1


def test_equal_keys_built_differently_encode_equal() -> None:
    """Tuples of equal but distinct string objects encode identically (pickle's memo does not)."""
    codec = KeyCodec(canonical_key_serializer, canonical_key_unserializer, 511)
    shared = "value" * 3
    first = (shared, shared)
    second = ("value" * 3, "".join(["value"] * 3))
    assert first == second
    assert codec.encode(first) == codec.encode(second)


def stable_id(value: Any) -> str:
    """A test id that is the same in every process: a set's repr follows PYTHONHASHSEED (pytest-xdist's
    workers must collect the same ids), so sets are shown sorted by repr."""
    if isinstance(value, (set, frozenset)):
        return type(value).__name__ + "({" + ", ".join(sorted(map(stable_id, value))) + "})"
    if isinstance(value, tuple):
        return "(" + ", ".join(map(stable_id, value)) + ("," if len(value) == 1 else "") + ")"
    return repr(value)


@pytest.mark.parametrize("key", SAMPLE_KEYS, ids=stable_id)
def test_canonical_roundtrip(key: Any) -> None:
    """Every supported key type decodes back to an equal key of the same type."""
    back = canonical_key_unserializer(canonical_key_serializer(key))
    assert back == key and type(back) is type(key)


@pytest.mark.parametrize("key", SAMPLE_KEYS, ids=stable_id)
def test_every_key_type_through_the_store(db: PersistDict, key: Any) -> None:
    """Each key type is written, found by ``in``, read cold and hot (front cache), listed and deleted;
    a str with a lone surrogate takes the read path's fallback encoding."""
    db[key] = "v"
    for _ in range(3):  # the first reads come from LMDB, the last from the front cache
        assert key in db and db[key] == "v" and db.get(key) == "v"
    assert list(db) == [key] and type(next(iter(db))) is type(key)
    del db[key]
    assert key not in db and db.get(key) is None


def test_distinct_keys_get_distinct_encodings() -> None:
    """Keys that differ (type or value) never share an encoding."""
    codec = KeyCodec(canonical_key_serializer, canonical_key_unserializer, 511)
    keys = ["1", b"1", 1, 1.5, "None", None, ("1",), (1,), frozenset({1}), ("a", "b"), ("ab",), ("a", ("b",))]
    lookups = [codec.encode(k)[0] for k in keys]
    assert len(set(lookups)) == len(keys)


def test_unpicklable_hashable_key_raises_typeerror(db: PersistDict) -> None:
    """A hashable key that cannot be encoded raises KeyEncodingError (a TypeError); nothing is written."""
    with pytest.raises(TypeError) as info:
        db[lambda: None] = 1
    assert isinstance(info.value, KeyEncodingError)
    assert len(db) == 0


def test_other_hashables_are_supported(db: PersistDict) -> None:
    """Picklable hashables beyond the built-in types (e.g. a frozen dataclass-like tuple subclass) work."""
    import datetime

    when = datetime.date(2024, 1, 2)
    db[when] = "date"
    assert db[datetime.date(2024, 1, 2)] == "date"
    assert list(db) == [when]


def test_json_key_serializer(make_db: Callable[..., PersistDict]) -> None:
    """A json.dumps/json.loads pair maps keys to text and back."""
    db = make_db(key_serializer=json.dumps, key_unserializer=json.loads)
    db["k"] = 1
    db[5] = 2
    assert db["k"] == 1 and db[5] == 2
    assert list(db) == ["k", 5]


def test_raw_keys_accept_only_str_and_bytes(make_db: Callable[..., PersistDict]) -> None:
    """With key_serializer=None keys are str/bytes used as-is, and come back with their type."""
    db = make_db(key_serializer=None, key_unserializer=None)
    db["text"] = 1
    db[b"text"] = 2
    assert db["text"] == 1 and db[b"text"] == 2
    assert list(db) == ["text", b"text"]
    with pytest.raises(TypeError):
        db[1] = 3
    assert len(db) == 2


def test_key_serializer_returning_wrong_type_raises(make_db: Callable[..., PersistDict]) -> None:
    """A key_serializer that does not return str/bytes raises TypeError and writes nothing."""
    db = make_db(key_serializer=lambda key: 42, key_unserializer=lambda raw: raw)
    with pytest.raises(TypeError):
        db["k"] = 1
    assert len(db) == 0


def test_long_keys_are_hashed_and_returned_whole(db: PersistDict) -> None:
    """Keys longer than the LMDB limit are stored under a hash, and keys() returns them whole."""
    long_key = "k" * 5000
    tuple_key = tuple(range(300))
    db[long_key] = "long"
    db[tuple_key] = "tuple"
    assert db[long_key] == "long" and db[tuple_key] == "tuple"
    assert list(db) == [long_key, tuple_key]
    assert long_key in db and "k" * 4999 not in db


@pytest.mark.parametrize("limit", [1, 2])
def test_cropped_hash_collisions_never_share_an_entry(make_db: Callable[..., PersistDict], limit: int) -> None:
    """With 1-2 byte hashes, thousands of keys collide, yet each keeps its own entry through deletes."""
    db = make_db(key_size_limit=limit, caching=False)
    rng = random.Random(limit)
    model: dict[Any, Any] = {}
    keys = [f"key-{i}" for i in range(2000)] + [(i, "t") for i in range(500)]
    db.update({k: i for i, k in enumerate(keys)})
    model.update({k: i for i, k in enumerate(keys)})
    for _ in range(3):
        victims = rng.sample(keys, 600)
        for key in victims:
            del db[key]
            del model[key]
        for key in victims[:300]:
            db[key] = ("again", key)
            model[key] = ("again", key)
        keys = list(model)
    assert len(db) == len(model)
    assert list(db.items()) == list(model.items())
    for key, value in model.items():
        assert db[key] == value
    assert db.check().ok


def test_key_size_limit_mismatch_is_refused(db_path: Any, make_db: Callable[..., PersistDict]) -> None:
    """Reopening with another key_size_limit would orphan entries, so it is refused."""
    first = make_db(key_size_limit=16)
    first["a" * 40] = 1
    first.close()
    with pytest.raises(ValueError):
        make_db(key_size_limit=511)


class Color(str, enum.Enum):
    RED = "red"


class Level(enum.IntEnum):
    HIGH = 3


def test_subclass_keys_equal_their_value(db: PersistDict) -> None:
    """Str/int enums, named tuples and 1+0j are the same entry as their plain value, and keep their type."""
    import collections

    point = collections.namedtuple("point", "x y")  # local: not picklable, so it comes back as a tuple
    db[Color.RED] = "enum"
    assert db["red"] == "enum" and "Color.RED" not in db
    db["Color.RED"] = "text"
    assert db[Color.RED] == "enum"
    db[Level.HIGH] = "level"
    assert db[3] == "level"
    db[point(1, 2)] = "point"
    assert db[(1, 2)] == "point"
    db[1 + 0j] = "complex"
    assert db[1] == "complex" and db[1.0] == "complex"
    db[2 + 3j] = "imaginary"
    assert db[complex(2, 3)] == "imaginary"
    keys = list(db)
    assert keys[0] is Color.RED and type(keys[2]) is Level and type(keys[4]) is complex


def test_complex_keys_with_negative_zero_parts_are_the_same_entry(db: PersistDict) -> None:
    """complex(-0.0, 1.0) == 1j (and hashes alike), as a dict sees it; the key keeps its own form."""
    db[complex(-0.0, 1.0)] = "first"
    db[1j] = "second"
    db[complex(-0.0, -0.5)] = "third"
    assert len(db) == 2 and db[complex(0.0, 1.0)] == "second" and db[-0.5j] == "third"
    assert repr(next(iter(db))) == "(-0+1j)"


class Phase(complex):
    """A complex subclass that overrides its parts: the key is still its stored value."""

    real = property(lambda self: 7.0)  # type: ignore[assignment]


# Encodings written by 1.0.0 on Python 3.11: stores move between Python versions, so
# every version must give these exact bytes (key -> (lookup, exact or None)).
PINNED_COMPLEX_ENCODINGS: list[tuple[Any, tuple[bytes, bytes | None]]] = [
    (2 + 3j, (b"j(2+3j)", None)),
    (complex(-0.0, 1.0), (b"j1j", b"j(-0+1j)")),
    (complex(-0.0, -0.0), (b"i0", b"j(-0-0j)")),
    (1 + 0j, (b"i1", b"j(1+0j)")),
    (1.5 + 0j, (b"f1.5", b"j(1.5+0j)")),
    (complex(float("inf"), float("nan")), (b"j(inf+nanj)", None)),
    (-2.5e-300j, (b"j-2.5e-300j", b"j(-0-2.5e-300j)")),
    ((1j, "a"), (b"(\x03j1j\x02sa", None)),
    (frozenset({1j, 2j}), (b"{\x03j1j\x03j2j", None)),
]


@pytest.mark.parametrize(("key", "encoding"), PINNED_COMPLEX_ENCODINGS, ids=stable_id)
def test_complex_keys_encode_to_the_pinned_bytes(key: Any, encoding: tuple[bytes, bytes | None]) -> None:
    """Complex keys (alone, in tuples and frozensets) encode to the bytes 1.0.0 wrote, on every Python."""
    assert KeyCodec(canonical_key_serializer, canonical_key_unserializer, 511).encode(key) == encoding


def test_complex_subclass_keys_look_up_as_their_stored_value() -> None:
    """A complex subclass key looks up as the complex it holds, past overridden parts, on every Python."""
    codec = KeyCodec(canonical_key_serializer, canonical_key_unserializer, 511)
    assert codec.encode(Phase(2, -0.5))[0] == b"j(2-0.5j)"
    assert codec.encode(Phase(3, 0))[0] == b"i3"
    assert codec.encode(Phase(-0.0, 4))[0] == b"j4j"


@settings(max_examples=300, deadline=None)
@given(st.lists(st.one_of(st.text(), st.text(alphabet="s\x00é"), st.binary(max_size=4), st.integers())))
def test_bulk_str_key_decoding_matches_one_by_one(keys: list[Any]) -> None:
    """The one-pass decoder of str keys (keys() fast path) gives what decoding each key gives, or declines."""
    codec = KeyCodec(canonical_key_serializer, canonical_key_unserializer, 511)
    encodings = [codec.encode(key)[0] for key in keys]
    bulk = codec.decode_str_keys(encodings)
    if bulk is None:
        assert not keys or any(type(key) is not str or "\x00" in key for key in keys)
    else:
        assert bulk == keys == codec.decode_many(encodings)


def test_keys_with_nul_and_ttl_rows_iterate_in_order(make_db: Callable[..., PersistDict]) -> None:
    """keys() keeps order and exact keys when some str keys hold NUL, or carry a TTL, among plain ones."""
    d = make_db()
    d["plain"] = 1
    d["with\x00nul"] = 2
    d.set("ttl", 3, ttl=1000)
    d["s\x00s"] = 4
    d["last"] = 5
    assert list(d) == ["plain", "with\x00nul", "ttl", "s\x00s", "last"]
    del d["with\x00nul"], d["ttl"], d["s\x00s"]
    assert list(d) == ["plain", "last"]
