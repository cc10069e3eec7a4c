"""Values on every engine: raw and dill codecs, a failing serializer, no aliasing through the front cache."""

from __future__ import annotations

import pickle

import dill
import pytest

from ._engines import Stores


def test_raw_values_keep_their_type(stores: Stores) -> None:
    """With value_serializer=None, str and bytes are stored as-is and come back with their type."""
    d = stores.open(value_serializer=None, value_unserializer=None)
    d["s"] = "text ✓"
    d["b"] = b"\x00bytes"
    for _ in range(3):  # through the front cache too
        assert d["s"] == "text ✓" and type(d["s"]) is str
        assert d["b"] == b"\x00bytes" and type(d["b"]) is bytes
    with pytest.raises(TypeError):
        d["n"] = 1
    assert "n" not in d


def test_failing_serializer_keeps_old_value(stores: Stores) -> None:
    """If the value serializer raises, the exception reaches the caller and the old value stays."""
    d = stores.open()
    d["k"] = "old"
    with pytest.raises((pickle.PicklingError, AttributeError, TypeError)):
        d["k"] = lambda: None  # pickle cannot serialize a lambda
    assert d["k"] == "old"
    with pytest.raises((pickle.PicklingError, AttributeError, TypeError)):
        d.update({"k": "new", "bad": lambda: None})  # all or nothing
    assert d["k"] == "old" and "bad" not in d


def test_dill_values(stores: Stores) -> None:
    """dill.dumps/dill.loads store values pickle cannot, such as lambdas."""
    d = stores.open(value_serializer=dill.dumps, value_unserializer=dill.loads)
    d["f"] = lambda x: x * 2
    assert d["f"](21) == 42


def test_values_are_never_aliased_through_the_cache(stores: Stores) -> None:
    """Mutating a returned object or the stored one never changes later reads, cache hit or not."""
    import numpy as np

    db = stores.open()
    originals = {"list": [1.5, 2.5], "dict": {"a": 1}, "nested": {"a": [1, {"b": 2}]}, "set": {1, 2},
                 "bytearray": bytearray(b"ab"), "array": np.arange(4.0), "tuple": (1, [2])}
    for key, value in originals.items():
        db[key] = value
    for value in originals.values():
        if isinstance(value, np.ndarray):
            value += 1
        elif isinstance(value, (list, bytearray)):
            value.append(99)
        elif isinstance(value, (dict, set)):
            value.clear()
    expected = {"list": [1.5, 2.5], "dict": {"a": 1}, "nested": {"a": [1, {"b": 2}]}, "set": {1, 2},
                "bytearray": bytearray(b"ab"), "array": np.arange(4.0), "tuple": (1, [2])}
    for _ in range(4):  # miss, admission, then hits served from the front cache
        for key, value in expected.items():
            got = db[key]
            assert type(got) is type(value)
            assert (got == value).all() if key == "array" else got == value
            if key == "array":
                got += 100
            elif key in ("list", "bytearray"):
                got.append(7)
            elif key in ("dict", "set"):
                got.clear()
            elif key == "nested":
                got["a"][1]["b"] = 3
            elif key == "tuple":
                got[1].append(3)
    assert db.stats()["front_cache_hits"] > 0
