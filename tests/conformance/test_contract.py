"""The same mapping contract, run against ``dict`` and against PersistDict
(cachetools' pattern) on every engine: whatever a dict does here, PersistDict does too."""

from __future__ import annotations

from collections.abc import Iterator, MutableMapping
from typing import Any

import pytest

from ._engines import ENGINES, Stores

VARIANTS = {
    "": {},
    "-nocache": {"caching": False},
    "-tinykeys": {"key_size_limit": 2},  # every key hashed and cropped to 2 bytes
}


@pytest.fixture(params=["dict"] + [engine + variant for engine in ENGINES for variant in VARIANTS])
def mapping(request: pytest.FixtureRequest, tmp_path: Any) -> Iterator[MutableMapping[Any, Any]]:
    """A plain dict, or a fresh store of one engine with one set of options."""
    if request.param == "dict":
        yield {}
        return
    engine = request.param.split("-")[0]  # lmdb, memory, redis, lmdb+encrypted...
    url = request.getfixturevalue("redis_url") if engine.startswith("redis") else None
    stores = Stores(engine, tmp_path, url)
    yield stores.open(**VARIANTS[request.param[len(engine):]])
    stores.close_all()


def test_set_get_overwrite(mapping: MutableMapping[Any, Any]) -> None:
    """A written value is read back; an overwrite replaces it."""
    mapping["a"] = 1
    assert mapping["a"] == 1
    mapping["a"] = [1, 2]
    assert mapping["a"] == [1, 2]


def test_missing_key_raises_keyerror_with_the_key(mapping: MutableMapping[Any, Any]) -> None:
    """A missing key raises KeyError(key), get returns the default."""
    with pytest.raises(KeyError) as info:
        mapping["nope"]
    assert info.value.args == ("nope",)
    assert mapping.get("nope") is None
    assert mapping.get("nope", 5) == 5


def test_contains_len_and_delete(mapping: MutableMapping[Any, Any]) -> None:
    """in, len and del behave like a dict, including KeyError on a missing delete."""
    mapping.update(a=1, b=2)
    assert "a" in mapping and "z" not in mapping
    assert len(mapping) == 2
    del mapping["a"]
    assert "a" not in mapping and len(mapping) == 1
    with pytest.raises(KeyError):
        del mapping["a"]


def test_order_is_insertion_order(mapping: MutableMapping[Any, Any]) -> None:
    """Overwrite keeps the position; delete + reinsert moves the key to the end."""
    for key in "abcde":
        mapping[key] = key
    mapping["b"] = "B"
    del mapping["c"]
    mapping["c"] = "C"
    assert list(mapping) == ["a", "b", "d", "e", "c"]
    assert list(mapping.values()) == ["a", "B", "d", "e", "C"]
    assert list(mapping.items())[1] == ("b", "B")


def test_pop_popitem_setdefault(mapping: MutableMapping[Any, Any]) -> None:
    """pop, popitem (LIFO) and setdefault follow dict semantics."""
    mapping.update([("x", 1), ("y", 2), ("z", 3)])
    assert mapping.pop("x") == 1
    assert mapping.pop("x", "default") == "default"
    with pytest.raises(KeyError):
        mapping.pop("x")
    assert mapping.popitem() == ("z", 3)
    assert mapping.setdefault("y", 100) == 2
    assert mapping.setdefault("w", 100) == 100
    assert mapping["w"] == 100
    assert mapping.setdefault("n") is None and mapping["n"] is None
    mapping.clear()
    with pytest.raises(KeyError):
        mapping.popitem()


def test_update_forms(mapping: MutableMapping[Any, Any]) -> None:
    """update accepts a mapping, pairs and keywords, like dict.update."""
    mapping.update({"a": 1})
    mapping.update([("b", 2)])
    mapping.update(c=3)
    mapping.update({"a": 10}, d=4)
    assert dict(mapping.items()) == {"a": 10, "b": 2, "c": 3, "d": 4}
    with pytest.raises((ValueError, TypeError)):
        mapping.update([("only-one",)])  # type: ignore[list-item]


def test_equality_with_any_mapping(mapping: MutableMapping[Any, Any]) -> None:
    """== compares contents with any mapping, order-insensitively."""
    mapping.update(a=1, b=2)
    assert mapping == {"b": 2, "a": 1}
    assert mapping != {"a": 1}
    assert mapping != [("a", 1), ("b", 2)]


def test_views(mapping: MutableMapping[Any, Any]) -> None:
    """keys/values/items views support len, in and iteration."""
    mapping.update(a=1, b=2)
    assert len(mapping.keys()) == 2 and "a" in mapping.keys()
    assert 2 in mapping.values()
    assert ("a", 1) in mapping.items() and ("a", 2) not in mapping.items()
    assert set(mapping.keys()) == {"a", "b"}


def test_key_types(mapping: MutableMapping[Any, Any]) -> None:
    """Common hashable key types are distinct keys, and come back with their type."""
    keys = ["s", b"s", 7, 2.5, None, ("t", 1, (2.0, None)), frozenset({"f", 3}), True, -10**30]
    for index, key in enumerate(keys):
        mapping[key] = index
    assert list(mapping) == keys
    for index, key in enumerate(keys):
        assert mapping[key] == index


def test_numeric_keys_equal_like_dict(mapping: MutableMapping[Any, Any]) -> None:
    """1, 1.0 and True are the same key, as in a dict; the first key object is kept."""
    mapping[1] = "int"
    mapping[1.0] = "float"
    mapping[True] = "bool"
    assert len(mapping) == 1
    assert mapping[1] == "bool"
    assert list(mapping) == [1] and type(list(mapping)[0]) is int
    assert list(mapping.items()) == [(1, "bool")] and type(list(mapping.items())[0][0]) is int
    mapping[(1, "a")] = "t"
    assert mapping[(1.0, "a")] == "t"


def test_unhashable_key_raises_typeerror(mapping: MutableMapping[Any, Any]) -> None:
    """An unhashable key raises TypeError and writes nothing."""
    with pytest.raises(TypeError):
        mapping[["list"]] = 1  # type: ignore[index]
    with pytest.raises(TypeError):
        mapping[("ok", ["nested list"])] = 1
    assert len(mapping) == 0


def test_mutating_values_does_not_change_stored_ones(mapping: MutableMapping[Any, Any]) -> None:
    """Values are stored by value for PersistDict; a dict stores references (documented difference)."""
    value = [1, 2]
    mapping["k"] = value
    got = mapping["k"]
    got.append(3)
    if isinstance(mapping, dict):
        assert mapping["k"] == [1, 2, 3]
    else:
        assert mapping["k"] == [1, 2]
        value.append(4)
        assert mapping["k"] == [1, 2]


def test_or_operators(mapping: MutableMapping[Any, Any]) -> None:
    """| returns a new plain dict, |= updates in place."""
    mapping["a"] = 1
    merged = mapping | {"b": 2}
    assert merged == {"a": 1, "b": 2} and isinstance(merged, dict)
    assert ({"z": 0} | mapping) == {"z": 0, "a": 1}
    mapping |= {"c": 3}
    assert dict(mapping.items()) == {"a": 1, "c": 3}


def test_many_keys_roundtrip(mapping: MutableMapping[Any, Any]) -> None:
    """Hundreds of keys with deletes and reinsertions keep contents and order equal to a dict's."""
    model: dict[Any, Any] = {}
    for i in range(400):
        for target in (mapping, model):
            target[f"key-{i}"] = i
            target[i] = str(i)
    for i in range(0, 400, 3):
        for target in (mapping, model):
            del target[f"key-{i}"]
    for i in range(0, 400, 6):
        for target in (mapping, model):
            target[f"key-{i}"] = -i
    assert list(mapping.items()) == list(model.items())


def test_equal_keys_of_other_types_see_each_others_writes(mapping: MutableMapping[Any, Any]) -> None:
    """A write through 1.0 or a str subclass is seen through 1 or the plain str, even when cached."""

    class Name(str):
        pass

    mapping[1] = "old"
    mapping["a"] = "old"
    for _ in range(3):  # warm the front cache
        assert mapping[1] == "old" and mapping["a"] == "old"
    mapping[1.0] = "new"
    mapping[Name("a")] = "new"
    assert mapping[1] == "new" and mapping[True] == "new"
    assert mapping["a"] == "new" and mapping[Name("a")] == "new"
    del mapping[Name("a")]
    assert "a" not in mapping
