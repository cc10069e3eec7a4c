"""The toolkit on every engine: counters (incr/decr)."""

from __future__ import annotations

import pytest

from _concurrency import run_threads


def test_incr_starts_at_default_and_returns_the_new_value(db):
    """incr on a missing key starts from default; incr/decr return the stored new value."""
    assert db.incr("n") == 1
    assert db.incr("n", 5) == 6
    assert db.decr("n", 2) == 4
    assert db.incr("m", default=10) == 11
    assert db.decr("f", 0.5, default=1) == 0.5
    assert (db["n"], db["m"], db["f"]) == (4, 11, 0.5)


def test_incr_keeps_the_entry_ttl(stores):
    """incr rewrites the value but keeps the entry's expiry."""
    now = [1000.0]
    d = stores.open(clock=lambda: now[0])
    d.set("n", 1, ttl=10)
    assert d.incr("n") == 2
    now[0] += 11
    assert "n" not in d
    assert d.incr("n") == 1  # expired: counts from default again


@pytest.mark.parametrize("bad", ["x", b"x", None, True, [1]])
def test_incr_of_a_non_number_raises_typeerror_and_writes_nothing(db, bad):
    """A non-number stored value, delta or default: TypeError naming the problem, store unchanged."""
    db["k"] = bad
    with pytest.raises(TypeError, match="int or a float"):
        db.incr("k")
    assert db["k"] == bad
    with pytest.raises(TypeError, match="delta"):
        db.incr("n", bad)
    with pytest.raises(TypeError, match="default"):
        db.incr("n", default=bad)
    with pytest.raises(TypeError, match="delta"):
        db.decr("n", bad)
    assert "n" not in db


def test_incr_from_8_threads_is_exact(db):
    """8 threads x 200 incr of one key lose no increment."""
    run_threads(8, lambda i: [db.incr("n") for _ in range(200)])
    assert db["n"] == 1600


def test_incr_inside_transaction_rolls_back_with_it(db):
    """incr inside transaction() joins it: a block that raises undoes the increment."""
    db["n"] = 1
    with pytest.raises(RuntimeError), db.transaction():
        assert db.incr("n") == 2
        raise RuntimeError
    assert db["n"] == 1
