"""Collision chains of hashed slots: check() and repair keep every healthy entry reachable after a record
is lost or damaged."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from PersistDict import PersistDict

from ._lmdb_access import engine_of, pack_order, pack_record, probe_slot, slot_of, unpack_record

ROOT = str(Path(__file__).resolve().parents[3])


def _chain_of(db: PersistDict, first: str, more: int) -> tuple[bytes, list[str]]:
    """The base slot of ``first``'s collision chain (key_size_limit=1) and ``more`` keys that share it."""
    base = slot_of(db, first)
    return base, [f"k{i}" for i in range(200_000) if slot_of(db, f"k{i}") == base][:more]


def test_repair_rewrites_a_collision_chain_that_lost_a_record(make_db: Callable[..., PersistDict]) -> None:
    """A chain of colliding hashes whose first record is lost (a damaged page, say): the records
    after the gap are listed but unreachable, and writing one of their keys adds a second record.
    check() reports both; repair rewrites the chain from its start, keeping the newer record."""
    db = make_db(key_size_limit=1, caching=False)
    base, same_chain = _chain_of(db, "first", 3)
    db["first"] = 0
    db.update({key: i for i, key in enumerate(same_chain, 1)})  # probe positions 1, 2, 3
    engine_of(db).write(lambda txn: txn.raw.delete(base, b"", txn._records))  # lose position 0
    assert same_chain[0] not in db  # the walk from position 0 meets the gap at once
    db[same_chain[0]] = "rewritten"  # lands at position 0: the key now has two records
    report = db.check()
    assert not report.ok and report.misplaced_records >= 1
    db.check(repair=True)
    assert db.check().ok
    assert dict(db.items()) == {same_chain[0]: "rewritten", same_chain[1]: 2, same_chain[2]: 3}
    assert all(key in db for key in same_chain)


def test_repair_and_drop_together_keep_every_healthy_entry_of_a_rewritten_chain(
        make_db: Callable[..., PersistDict]) -> None:
    """A chain that lost its first record, whose next record (K's older value) is undecodable, and
    where K was written again: repair and drop_unreadable in one call drop that older value only,
    and a chain record whose order row points at a stale slot is indexed where it lands."""

    db = make_db(key_size_limit=1, caching=False)
    base, (k, y) = _chain_of(db, "x", 2)
    db["x"], db[k], db[y] = 0, "old", "y"  # positions 0, 1, 2

    def damage(txn) -> None:  # type: ignore[no-untyped-def]
        txn.raw.delete(base, b"", txn._records)  # lose position 0
        older = unpack_record(txn.record(probe_slot(base, 1)))
        txn.put_record(probe_slot(base, 1), pack_record(older.seq, older.ctime, older.mtime, 0.0, 0,
                                                        older.lookup, older.exact, b"not a pickle"), older.lookup)
        kept = unpack_record(txn.record(probe_slot(base, 2)))
        txn.put_order(kept.seq, pack_order(0.0, False, probe_slot(base, 5)))  # y's row: a stale slot

    engine_of(db).write(damage)
    db[k] = "new"  # unreachable behind the gap, so written again, at position 0
    db.check(repair=True, drop_unreadable=True)
    assert db.check().ok
    assert db.get(y) == "y" and db.get(k) == "new" and sorted(db) == sorted([k, y])


def test_drop_unreadable_in_a_chain_with_a_corrupted_record_after_an_undecodable_one(
        make_db: Callable[..., PersistDict]) -> None:
    """Dropping an undecodable record closes its chain's gap by moving the chain's last record, which
    here fails its checksum: the corrupted records are dropped first, from the end of the table."""

    db = make_db(key_size_limit=1)
    base, (second,) = _chain_of(db, "a0", 1)
    db["a0"], db[second] = 0, 1  # positions 0 and 1

    def damage(txn) -> None:  # type: ignore[no-untyped-def]
        first = unpack_record(txn.record(base))  # position 0: a value pickle cannot load
        txn.put_record(base, pack_record(first.seq, first.ctime, first.mtime, 0.0, 0, first.lookup,
                                         first.exact, b"not a pickle"), first.lookup)
        second = base + (1).to_bytes(4, "big")  # position 1: a flipped byte
        data = bytearray(txn.record(second))
        data[-10] ^= 1
        txn.raw.put(second, bytes(data), True, True, False, txn._records)

    engine_of(db).write(damage)
    report = db.check(drop_unreadable=True)
    assert report.dropped == 2 and len(db) == 0 and db.check().ok
