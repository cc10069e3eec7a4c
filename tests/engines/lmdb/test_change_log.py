"""The change-log ring: which lookups each commit changed, how far back it vouches, damaged and stray rows."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from PersistDict import PersistDict

from ._lmdb_access import CHANGE_LOG_KEPT, change_log_slot, encode_seq, engine_of, try_take_lease

ROOT = str(Path(__file__).resolve().parents[3])


def test_the_change_log_names_what_each_commit_changed(make_db: Callable[..., PersistDict]) -> None:
    """Each commit logs the lookups of the entries it changed (none for access times and the lease);
    clear() is not logged; the log keeps the last CHANGE_LOG_KEPT commits."""
    db = make_db()
    db["a"] = 1
    engine = engine_of(db)
    base = engine.last_txnid()
    assert engine.changes_since(base) == (base, set())
    db["a"]
    db.flush_atimes()
    assert try_take_lease(engine, "me", 1000.0, 60)
    assert engine.last_txnid() == base + 2 and engine.changes_since(base) == (base + 2, set())
    db["b"] = 2
    del db["a"]
    assert engine.changes_since(base) == (base + 4, {b"sa", b"sb"})
    assert engine.changes_since(base + 3) == (base + 4, {b"sa"})
    db.clear()
    assert engine.changes_since(base + 4) is None and engine.changes_since(base + 5) == (base + 5, set())
    for i in range(CHANGE_LOG_KEPT + 6):
        assert try_take_lease(engine, f"p{i}", 2000.0 + 100 * i, 60)
    last = engine.last_txnid()
    assert engine.changes_since(last - CHANGE_LOG_KEPT) == (last, set())
    assert engine.changes_since(last - CHANGE_LOG_KEPT - 1) is None
    with engine.reading() as txn:
        assert txn.raw.stat(txn._changes)["entries"] == CHANGE_LOG_KEPT


def test_a_damaged_change_log_row_reads_as_not_logged(make_db: Callable[..., PersistDict]) -> None:
    """Change-log rows carry no checksum: one whose lengths run past its end counts as not logged
    (the reader empties its cache) instead of raising on the read path."""
    db = make_db()
    db["a"] = 1
    engine = engine_of(db)
    last = engine.last_txnid()
    with engine.env.begin(write=True) as raw:
        raw.put(change_log_slot(last), encode_seq(last) + b"\x05\x00\x00\x00sa", db=engine._dbs[4])
    with engine.reading() as txn:
        assert txn.logged_changes(last) is None
    assert engine.changes_since(last - 1) is None


def test_change_log_rows_ahead_of_the_txn_id_are_dropped_at_open(make_db: Callable[..., PersistDict]) -> None:
    """A row for a txn id not reached yet (left by a store whose ids went back) is dropped when the
    store is opened, so it can never vouch for an unlogged commit that later takes that id."""
    db = make_db()
    db["a"] = 1
    engine = engine_of(db)
    last = engine.last_txnid()
    with engine.env.begin(write=True) as raw:  # commit last + 1, not logged; a stray row for last + 3
        raw.put(change_log_slot(last + 3), encode_seq(last + 3), db=engine._dbs[4])
    db.close()
    db = make_db()  # opening drops the row: commit last + 2
    engine = engine_of(db)
    with engine.env.begin(write=True) as raw:  # commit last + 3, not logged
        raw.put(b"x", b"", db=engine._dbs[3])
    assert engine.last_txnid() == last + 3
    assert engine.changes_since(last + 2) is None
