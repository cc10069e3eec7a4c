"""transaction() on every engine: commit, rollback, savepoints, and reads of the transaction's own writes."""

from __future__ import annotations

import pytest

from PersistDict import PersistDict

from ._engines import Stores



def test_transaction_commits_and_rolls_back(db: PersistDict) -> None:
    """transaction() commits on success, rolls back everything on an exception, and nests."""
    db["n"] = 0
    with db.transaction():
        db["n"] = db["n"] + 1
        with db.transaction():
            db["m"] = "inner"
        assert db["m"] == "inner"
    assert db["n"] == 1 and db["m"] == "inner"
    with pytest.raises(RuntimeError):
        with db.transaction():
            db["n"] = 100
            del db["m"]
            assert "m" not in db and db["n"] == 100
            raise RuntimeError("boom")
    assert db["n"] == 1 and db["m"] == "inner"
    assert list(db) == ["n", "m"]


def test_transaction_reads_see_own_writes_and_iterate(db: PersistDict) -> None:
    """Inside a transaction, reads, len and iteration see the transaction's own writes."""
    db.update(a=1)
    with db.transaction() as d:
        d["b"] = 2
        assert len(d) == 2 and list(d) == ["a", "b"] and d.get_many(["b"]) == {"b": 2}
        assert d.pop("a") == 1
    assert dict(db.items()) == {"b": 2}


def test_nested_transaction_is_a_savepoint(db: PersistDict) -> None:
    """An inner transaction block that raises rolls back only its own writes; the outer one commits."""
    with db.transaction():
        db["outer"] = 1
        try:
            with db.transaction():
                db["inner"] = 2
                db["outer"] = 100
                raise ValueError("inner failure")
        except ValueError:
            pass
        assert "inner" not in db and db["outer"] == 1
        with db.transaction():
            db["inner-ok"] = 3
    assert dict(db.items()) == {"outer": 1, "inner-ok": 3}


def test_other_threads_never_read_a_transaction_that_rolls_back(stores: Stores) -> None:
    """While one thread's transaction() holds writes it will roll back, len(), `in`, keys() and get()
    from another thread see only the committed state (they read it, or wait for the block)."""
    import threading

    d = stores.open()
    d["a"] = 1
    inside, release = threading.Event(), threading.Event()
    seen: list[object] = []

    def roll_back() -> None:
        try:
            with d.transaction():
                d["b"] = 2
                d["c"] = 3
                inside.set()
                release.wait(30)
                raise RuntimeError("roll back")
        except RuntimeError:
            pass

    def read() -> None:
        seen.extend([len(d), "b" in d, list(d.keys()), d.get("c")])

    writer = threading.Thread(target=roll_back)
    writer.start()
    assert inside.wait(30)
    reader = threading.Thread(target=read)
    reader.start()
    reader.join(0.2)  # on LMDB it reads the snapshot at once; in memory it waits for the block
    release.set()
    writer.join(30)
    reader.join(30)
    assert seen == [1, False, ["a"], None]


def test_close_inside_a_transaction_is_refused_and_changes_nothing(stores: Stores) -> None:
    """close() inside transaction() raises TransactionError; the block goes on and commits, the store stays open."""
    from PersistDict import TransactionError

    d = stores.open()
    with d.transaction():
        d["a"] = 1
        with pytest.raises(TransactionError, match="leave the block"):
            d.close()
        d["b"] = 2
    assert not d.closed and d.copy() == {"a": 1, "b": 2}
