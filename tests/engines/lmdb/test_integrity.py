"""Damaged stores: a read never returns another key's value, check() counts every problem, and the
whole-store reads can skip damaged entries on request."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from PersistDict import CodecMismatchWarning, PersistDict
from ._lmdb_access import pack_record, engine_of, unpack_record
from PersistDict.exceptions import CodecError, CorruptedRecordError, PersistDictError


def edit_node_key(db_path: Path, slot: bytes, new_slot: bytes) -> None:
    """Rewrite LMDB's key ``slot`` of the records table as ``new_slot`` (same length) in data.mdb.

    A leaf node is ``lo u16 | hi u16 | flags u16 | ksize u16 | key | data``; a record starts with
    its version byte (1). Copy-on-write leaves older copies of the page in the file: edit them all.
    """
    assert len(new_slot) == len(slot)
    node = b"\x00\x00" + len(slot).to_bytes(2, "little")  # flags 0, key size
    data = (db_path / "data.mdb").read_bytes()
    assert data.count(node + slot + b"\x01") >= 1
    (db_path / "data.mdb").write_bytes(data.replace(node + slot + b"\x01", node + new_slot + b"\x01"))


@pytest.fixture
def damaged_key(db_path: Path) -> Path:
    """A store of s15, s150 and s151 whose database key of s150 reads as the slot of "s15/"."""
    with PersistDict(db_path, background_thread="disabled") as d:
        d["s15"], d["s150"], d["s151"] = "value-15", "value-150", "value-151"
    edit_node_key(db_path, b"ss150", b"ss15/")
    return db_path


@pytest.mark.parametrize("caching", [True, False])
def test_a_damaged_database_key_never_returns_another_keys_value(
        damaged_key: Path, make_db: Callable[..., PersistDict], caching: bool) -> None:
    """Every read of the key a damaged node key now spells raises CorruptedRecordError naming that key
    (it returned s150's value); s150 itself is a miss that check() reports."""
    d = make_db(caching=caching)
    reads: list[Callable[[], object]] = [
        lambda: d.get("s15/"), lambda: d["s15/"], lambda: "s15/" in d, lambda: d.get_many(["s15", "s15/"]),
        lambda: d.pop("s15/"), lambda: d.pop("s15/", None), lambda: d.setdefault("s15/", "x"),
        lambda: d.metadata("s15/"),
    ]
    for _ in range(2):  # a second read would fill the front cache
        for read in reads:
            with pytest.raises(CorruptedRecordError, match="'s15/'.*another key"):
                read()
    with pytest.raises(CorruptedRecordError, match="'s15/'"):
        del d["s15/"]
    assert d.get("s150") is None and "s150" not in d  # unreachable under its own key: check() says so
    assert d.get_many(["s15", "s151"]) == {"s15": "value-15", "s151": "value-151"}
    assert d.check().misplaced_records == 1
    assert "value-150" not in [d.get(key) for key in ("s15", "s151")]


def test_writing_the_damaged_slot_replaces_the_foreign_record(
        damaged_key: Path, make_db: Callable[..., PersistDict]) -> None:
    """A write of the key the damaged slot spells stores a new entry of that key, not an overwrite of
    s150's entry (which kept s150's place and creation time); check(repair=True) then ends clean."""
    d = make_db()
    d["s15/"] = "new"
    assert d["s15/"] == "new" and d.get("s150") is None
    assert list(d)[-1] == "s15/"  # its own order row: a new entry, last in insertion order
    d.check(repair=True)
    assert d.check().ok and sorted(d) == ["s15", "s15/", "s151"]


def test_check_repair_puts_a_record_back_under_its_own_key(
        damaged_key: Path, make_db: Callable[..., PersistDict]) -> None:
    """check(repair=True) moves the record a damaged database key misplaced back to its key's slot
    (its order row still points there): s150 reads again, "s15/" is a plain miss, nothing is lost."""
    d = make_db()
    report = d.check(repair=True)
    assert report.misplaced_records == 1 and report.repaired == 1
    assert d.check().ok
    assert d["s150"] == "value-150" and d.get("s15/") is None and "s15/" not in d
    assert list(d.items()) == [("s15", "value-15"), ("s150", "value-150"), ("s151", "value-151")]


def flip_value_bytes(db_path: Path, markers: list[bytes]) -> None:
    """Damage, in data.mdb, the stored values that contain each marker (every copy of its page)."""
    data = (db_path / "data.mdb").read_bytes()
    for marker in markers:
        assert marker in data
        data = data.replace(marker, b"X" + marker[1:])
    (db_path / "data.mdb").write_bytes(data)


def test_check_counts_every_undecodable_and_corrupted_record(
        db_path: Path, make_db: Callable[..., PersistDict]) -> None:
    """check() counts all 181 undecodable and all 25 corrupted records (it listed 20 with no total);
    the lists keep the first 20."""
    with PersistDict(db_path, background_thread="disabled", value_serializer=json.dumps,
                     value_unserializer=json.loads) as d:
        d.set_many({f"json{i}": i for i in range(181)})  # not pickles: undecodable below
        d.set_many({f"bad{i}": f"BAD-VALUE-{i:04d}" for i in range(25)})
    flip_value_bytes(db_path, [f"BAD-VALUE-{i:04d}".encode() for i in range(25)])
    with pytest.warns(CodecMismatchWarning):
        report = make_db().check()
    assert report.undecodable_records == 181 and len(report.undecodable) == 20
    assert report.corrupted_records == 25 and len(report.corrupted) == 20
    assert not report.ok


def test_readable_items_reads_past_damage_and_names_it(
        db_path: Path, make_db: Callable[..., PersistDict]) -> None:
    """One corrupted and one undecodable record make items(), values(), copy() and get_many() raise;
    readable_items() returns every other entry and names the two damaged keys, and deletes nothing."""
    with PersistDict(db_path, background_thread="disabled") as d:
        d.set_many({f"k{i}": i for i in range(50)})
        d["broken"] = "CORRUPT-ME-" * 3
        d.set_many({f"m{i}": i for i in range(50)})
    flip_value_bytes(db_path, [b"CORRUPT-ME-" * 3])
    d = make_db()
    with engine_of(d).transaction() as txn:  # a sound record whose value pickle cannot load
        old = unpack_record(txn.record(b"sk7"))
        txn.put_record(b"sk7", pack_record(old.seq, old.ctime, old.mtime, 0.0, old.kind, b"sk7", None,
                                           b"not a pickle"), b"sk7")
    for read_all in (lambda: list(d.items()), lambda: list(d.values()), d.copy,
                     lambda: d.get_many(["k1", "broken"])):
        with pytest.raises(PersistDictError):
            read_all()
    expected = {**{f"k{i}": i for i in range(50) if i != 7}, **{f"m{i}": i for i in range(50)}}
    result = d.readable_items()
    assert result.items == expected and list(result.items) == list(expected)
    assert [entry.key for entry in result.damaged] == ["k7", "broken"]
    assert isinstance(result.damaged[0].error, CodecError)
    assert isinstance(result.damaged[1].error, CorruptedRecordError) and "'broken'" in str(result.damaged[1].error)
    some = d.readable_items(["k1", "broken", "k7", "absent", "m3"])
    assert some.items == {"k1": 1, "m3": 3} and [entry.key for entry in some.damaged] == ["broken", "k7"]
    assert len(d) == 101  # nothing deleted


def test_readable_items_names_the_key_a_damaged_database_key_lost(
        damaged_key: Path, make_db: Callable[..., PersistDict]) -> None:
    """After a damaged node key, readable_items() reports s150 (its order row leads nowhere) and
    never pairs s150's value with "s15/"."""
    d = make_db()
    result = d.readable_items()
    assert result.items == {"s15": "value-15", "s151": "value-151"}
    assert [entry.key for entry in result.damaged] == ["s150"]
    some = d.readable_items(["s15/", "s150"])
    assert some.items == {} and [entry.key for entry in some.damaged] == ["s15/"]
