"""keys(prefix=...) on every engine: the str (or bytes) keys starting with a prefix, ordered by key,
read from the engine's sorted index without reading the other entries."""

from __future__ import annotations

import asyncio
import enum
import json
from typing import Any

import pytest

from PersistDict import EncryptionError, KeyEncodingError

from ._engines import Stores
from _clock import Clock
from _reads import counted_entry_reads


@pytest.fixture(params=["lmdb", "memory", "redis"])
def stores(request: pytest.FixtureRequest, tmp_path: Any) -> Any:
    """The plain engines only: an encrypted store refuses prefix lookups (the last test)."""
    url = request.getfixturevalue("redis_url") if request.param == "redis" else None
    factory = Stores(request.param, tmp_path, url)
    yield factory
    factory.close_all()


def test_an_encrypted_store_refuses_a_prefix_lookup(tmp_path: Any, redis_url: str) -> None:
    """keys(prefix=...) and akeys(prefix=...) on an encrypted store: EncryptionError saying why."""
    for engine in ("lmdb+encrypted", "memory+encrypted", "redis+encrypted"):
        factory = Stores(engine, tmp_path / engine, redis_url)
        try:
            db = factory.open()
            db["emb:a"] = 1
            with pytest.raises(EncryptionError, match="keyed hashes"):
                db.keys(prefix="emb:")
            with pytest.raises(EncryptionError):
                asyncio.run(db.akeys(prefix="emb:").__anext__())
            assert list(db) == ["emb:a"]
        finally:
            factory.close_all()


class Color(str, enum.Enum):
    RED = "col:red"


def test_prefix_gives_matching_str_keys_in_key_order(stores: Stores) -> None:
    """Only the str keys starting with the prefix come back, sorted by code point, not insertion order."""
    db = stores.open()
    for key in ["emb:b", "x", "emb:a", "em", "emb:é", "emb:z", "emb:"]:
        db[key] = key
    db.update({1: "int", (1, "emb:a"): "tuple", b"emb:a": "bytes", None: "none"})
    assert db.keys(prefix="emb:") == ["emb:", "emb:a", "emb:b", "emb:z", "emb:é"]
    assert db.keys(prefix="emb:b") == ["emb:b"]
    assert db.keys(prefix="nothing") == []
    assert db.keys(prefix="") == sorted(k for k in db if isinstance(k, str))


def test_bytes_prefix_gives_bytes_keys(stores: Stores) -> None:
    """A bytes prefix matches bytes keys only, in byte order."""
    db = stores.open()
    db.update({b"k\xff": 1, b"k\x00": 2, b"j": 3, "k\x00": 4})
    assert db.keys(prefix=b"k") == [b"k\x00", b"k\xff"]


def test_prefix_of_0xff_bytes_ends_at_the_right_place(stores: Stores) -> None:
    """A prefix ending in (or made of) 0xff bytes: its range's end is not the prefix plus one byte."""
    db = stores.open()
    db.update({b"\xff": 1, b"\xff\xff": 2, b"\xff\x00": 3, b"\xfe": 4, b"a\xff": 5, b"a\xff\x01": 6, b"b": 7})
    assert db.keys(prefix=b"\xff") == [b"\xff", b"\xff\x00", b"\xff\xff"]
    assert db.keys(prefix=b"\xff\xff") == [b"\xff\xff"]
    assert db.keys(prefix=b"a\xff") == [b"a\xff", b"a\xff\x01"]


def test_prefix_gives_str_subclass_keys_as_themselves(stores: Stores) -> None:
    """A str enum key is matched by its value and comes back as the enum member, in a list."""
    db = stores.open()
    db[Color.RED] = 1
    db["col:blue"] = 2
    db["other"] = 3
    found = db.keys(prefix="col:")
    assert found == ["col:blue", Color.RED]
    assert type(found[1]) is Color


def test_prefix_skips_expired_entries(stores: Stores) -> None:
    """An entry past its TTL is not listed, as keys() does not list it."""
    clock = Clock()
    db = stores.open(clock=clock)
    db.set("t:short", 1, ttl=10)
    db.set("t:long", 2, ttl=100)
    db["t:forever"] = 3
    clock.now += 50
    assert db.keys(prefix="t:") == ["t:forever", "t:long"]
    assert db.keys(prefix="t:") == sorted(k for k in db.keys() if k.startswith("t:"))


def test_prefix_sees_writes_of_its_own_transaction(stores: Stores) -> None:
    """Inside transaction() the lookup sees the block's writes; a rolled-back block leaves nothing."""
    db = stores.open()
    db["p:kept"] = 1
    with db.transaction():
        db["p:new"] = 2
        del db["p:kept"]
        assert db.keys(prefix="p:") == ["p:new"]
    assert db.keys(prefix="p:") == ["p:new"]
    with pytest.raises(RuntimeError):
        with db.transaction():
            db["p:gone"] = 3
            del db["p:new"]
            raise RuntimeError("roll back")
    assert db.keys(prefix="p:") == ["p:new"]


def test_prefix_finds_long_hashed_keys_in_order(stores: Stores) -> None:
    """Keys too long for a slot (stored under a hash) are found and merged into key order."""
    db = stores.open(key_size_limit=16)
    keys = ["h:" + c * 30 for c in "dab"] + ["h:c", "h:e", "h:" + "a" * 5, "zz" + "h" * 40]
    for key in keys:
        db[key] = 1
    assert db.keys(prefix="h:") == sorted(k for k in keys if k.startswith("h:"))
    assert db.keys(prefix="h:" + "a" * 20) == ["h:" + "a" * 30]  # a prefix longer than any slot


def test_prefix_after_deletes_overwrites_and_clear(stores: Stores) -> None:
    """The index follows inserts, deletes, pops, overwrites and clear()."""
    db = stores.open()
    assert db.keys(prefix="d:") == []
    db.update({"d:1": 1, "d:2": 2, "d:3": 3})
    assert db.keys(prefix="d:") == ["d:1", "d:2", "d:3"]
    del db["d:2"]
    db.pop("d:3")
    db["d:1"] = "again"
    db["d:0"] = 0
    assert db.keys(prefix="d:") == ["d:0", "d:1"]
    db.clear()
    assert db.keys(prefix="d:") == []
    db["d:9"] = 9
    assert db.keys(prefix="d:") == ["d:9"]
    with pytest.raises(RuntimeError), db.transaction():  # a clear() rolled back gives its keys back
        db.clear()
        assert db.keys(prefix="d:") == []
        raise RuntimeError("roll back")
    assert db.keys(prefix="d:") == ["d:9"]


def test_prefix_with_raw_keys_and_refused_codecs(stores: Stores) -> None:
    """key_serializer=None keeps the lookup; a custom key codec and a non-str prefix are refused clearly."""
    raw = stores.open(key_serializer=None, key_unserializer=None)
    raw.update({"r:b": 1, "r:a": 2, b"r:c": 3})
    assert raw.keys(prefix="r:") == ["r:a", "r:b"]
    assert raw.keys(prefix=b"r:") == [b"r:c"]
    custom = stores.open(key_serializer=json.dumps, key_unserializer=json.loads)
    custom["a"] = 1
    with pytest.raises(KeyEncodingError, match="custom key_serializer"):
        custom.keys(prefix="a")
    with pytest.raises(TypeError, match="prefix must be str or bytes, not 'int'"):
        raw.keys(prefix=1)  # type: ignore[arg-type]


def test_akeys_with_prefix(stores: Stores) -> None:
    """akeys(prefix=...) yields what keys(prefix=...) lists, off the loop."""
    db = stores.open()
    db.update({f"a:{i:03}": i for i in range(300)} | {"b": 1})

    async def collect() -> list[Any]:
        return [key async for key in db.akeys(chunk=64, prefix="a:")]

    assert asyncio.run(collect()) == db.keys(prefix="a:") == [f"a:{i:03}" for i in range(300)]


def test_prefix_reads_only_matching_entries(stores: Stores) -> None:
    """Among 20k entries, listing a 50-key prefix reads those 50 entries (and the hashed long keys)."""
    db = stores.open()
    db.set_many({f"doc:{i:05}": i for i in range(20_000)})
    db.set_many({f"emb:{i:03}": i for i in range(50)})
    db.keys(prefix="emb:")  # the memory engine sorts its lookups once, on the first lookup
    assert db._engine.count() == 20_050
    with counted_entry_reads(db) as reads:
        assert len(db.keys(prefix="emb:")) == 50
    assert reads[0] == 50
    db["emb:" + "x" * 600] = 1  # hashed on LMDB: every hashed entry is read (not on the others)
    db["doc:" + "y" * 600] = 1
    with counted_entry_reads(db) as reads:
        assert len(db.keys(prefix="emb:")) == 51
    assert reads[0] == (52 if stores.engine == "lmdb" else 51)
