"""Tables that disagree (orphan rows, misplaced records): check() finds and repairs them, reads never serve
them."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from PersistDict import PersistDict
from PersistDict.exceptions import CorruptedRecordError

from ._lmdb_access import engine_of
from _concurrency import in_another_process

ROOT = str(Path(__file__).resolve().parents[3])


def test_check_finds_and_repairs_structural_damage(make_db: Callable[..., PersistDict]) -> None:
    """Orphan order rows, orphan atimes and records without an order row are found and repaired."""
    db = make_db()
    db.update({f"k{i}": i for i in range(10)})
    assert db["k0"] == 0
    db.flush_atimes()
    engine = engine_of(db)

    def damage(txn) -> None:  # type: ignore[no-untyped-def]
        rows = list(txn.iter_order())
        txn.delete_order(rows[1][0])  # record k1 loses its order row
        txn.put_order(999, b"sghost")  # an order row without a record
        txn.put_atime(12345, 1.0)  # an atime without an entry

    engine.write(damage)
    report = db.check()
    assert (report.orphan_records, report.orphan_order_rows, report.orphan_atimes) == (1, 1, 1)
    assert db.check(repair=True).repaired == 3
    assert db.check().ok
    assert sorted(db) == sorted(f"k{i}" for i in range(10)) and db["k1"] == 1


def test_maintenance_pass_flags_structural_damage(make_db: Callable[..., PersistDict]) -> None:
    """The background pass notices records and order rows disagreeing and points to check(repair=True)."""
    db = make_db()
    db.update(a=1, b=2)
    engine_of(db).write(lambda txn: txn.delete_order(next(iter(txn.iter_order()))[0]))
    with pytest.warns(RuntimeWarning, match="check\\(repair=True\\)"):
        db.run_maintenance()
    assert db.stats()["integrity_alerts"] == 1
    db.check(repair=True)
    db.run_maintenance()
    assert db.stats()["integrity_alerts"] == 1 and sorted(db) == ["a", "b"]



def test_a_misplaced_record_is_never_served_nor_cached(
        db_path: Path, make_db: Callable[..., PersistDict]) -> None:
    """A damaged store can hold B's record under A's slot (check() counts it as misplaced). A read of
    A refuses it (it returned B's value) and caches nothing; once another process overwrites A,
    A reads as written."""
    db = make_db()
    db["A"], db["B"] = "value-A", "value-B"
    with engine_of(db).transaction() as txn:
        txn.raw.put(b"sA", bytes(txn.record(b"sB")), db=txn._records)
    assert db.check().misplaced_records == 1
    for read in (lambda: db["A"], lambda: db["A"], lambda: db.get_many(["A"]), lambda: "A" in db):
        with pytest.raises(CorruptedRecordError, match="'A'"):
            read()
    assert len(db._front) == 0 and db["B"] == "value-B"
    in_another_process(db_path, "d['A'] = 'new'")
    assert db["A"] == db.get_many(["A"])["A"] == "new" and "A" in db


def test_popitem_of_a_misplaced_record_leaves_no_cached_copy(make_db: Callable[..., PersistDict]) -> None:
    """popitem() removes a record found under another key's exact slot, which reads of that key
    refused (they returned the other key's value) and so never cached, in any instance."""
    db, other = make_db(), make_db()
    db["A"], db["B"] = "value-A", "value-B"
    with engine_of(db).transaction() as txn:
        txn.raw.put(b"sA", bytes(txn.record(b"sB")), db=txn._records)
    for instance in (db, other):
        for _ in range(2):
            with pytest.raises(CorruptedRecordError, match="'A'"):
                instance["A"]
    db.popitem()
    db.popitem()
    assert db.get("A") is None and other.get("A") is None


def test_a_bounded_store_evicts_past_an_order_row_whose_record_is_gone(db_path: Path) -> None:
    """A damaged store can keep an order row whose record was lost; the next insert into a bounded
    store drops that row instead of picking it as the victim forever (it looped, holding the writer lock)."""
    code = f"""
import sys
sys.path.insert(0, {ROOT!r})
from PersistDict import PersistDict
d = PersistDict({str(db_path)!r}, background_thread="disabled", max_items=3)
d["A"], d["B"], d["C"] = 1, 2, 3
with d._engine.storage.transaction() as txn:
    txn.raw.delete(b"sA", db=txn._records)
d["D"] = 4
d["E"] = 5
with d._engine.storage.reading() as txn:
    assert txn.count() == txn.order_count() == 3, (txn.count(), txn.order_count())
assert sorted(d) == ["C", "D", "E"], sorted(d)
"""
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
