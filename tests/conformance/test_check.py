"""check() on every engine: undecodable entries are reported, and dropped only on request."""

from __future__ import annotations

import json

from ._engines import Stores


def test_drop_unreadable_deletes_only_on_request(stores: Stores) -> None:
    """check(drop_unreadable=True) removes exactly the entries that cannot be decoded."""
    db = stores.open(value_serializer=json.dumps,
                     value_unserializer=lambda data: json.loads(data) if data != '"bad"' else 1 / 0)
    db["good"] = [1]
    db["bad"] = "bad"
    report = db.check(drop_unreadable=True)
    assert report.undecodable == ["'bad'"] and report.dropped == 1
    assert list(db) == ["good"] and db.check().ok


def test_drop_unreadable_keeps_hash_chains_reachable(stores: Stores) -> None:
    """Dropping undecodable entries from colliding hash chains leaves every healthy entry reachable."""
    import pickle

    def loads(data: bytes) -> object:
        value = pickle.loads(data)
        if value == "BAD":
            raise ValueError("cannot decode")
        return value

    db = stores.open(key_size_limit=1, value_unserializer=loads)
    keys = [f"key-{i}-" + "y" * 30 for i in range(300)]
    db.update({key: ("BAD" if i % 7 == 0 else i) for i, key in enumerate(keys)})
    report = db.check(drop_unreadable=True)
    assert report.dropped == len(range(0, 300, 7))
    assert db.check().ok
    assert all(db[key] == i for i, key in enumerate(keys) if i % 7)
    assert len(db) == 300 - report.dropped
