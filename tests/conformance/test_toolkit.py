"""The toolkit on every engine: counters (incr/decr), versions (version/compare_and_set), tracked
values (track_changes)."""

from __future__ import annotations

import pickle
import time

import pytest

from _concurrency import run_threads
from PersistDict import ConflictError


def _yielding_dumps(value):
    """pickle.dumps that first lets other threads run: a read-modify-write left unprotected then
    interleaves with the others' (without it, the GIL runs each thread's short calls whole)."""
    time.sleep(0)
    return pickle.dumps(value)


@pytest.fixture
def yielding_db(stores):
    """A store whose value encoding yields the GIL (see _yielding_dumps)."""
    return stores.open(value_serializer=_yielding_dumps, value_unserializer=pickle.loads)


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


def test_incr_from_8_threads_is_exact(yielding_db):
    """8 threads x 200 incr of one key lose no increment."""
    run_threads(8, lambda i: [yielding_db.incr("n") for _ in range(200)])
    assert yielding_db["n"] == 1600


def test_incr_inside_transaction_rolls_back_with_it(db):
    """incr inside transaction() joins it: a block that raises undoes the increment."""
    db["n"] = 1
    with pytest.raises(RuntimeError), db.transaction():
        assert db.incr("n") == 2
        raise RuntimeError
    assert db["n"] == 1


def test_version_changes_on_every_write_even_at_the_same_instant(stores):
    """Writing the same value at the same clock reading changes the version; reads, access-time flushes
    and touch() without a new expiry do not."""
    d = stores.open(clock=lambda: 1000.0)
    d["k"] = "v"
    first = d.version("k")
    d.touch("k")  # an access: no TTL before, none after
    assert d.version("k") == first
    seen = {first}
    for write in (lambda: d.__setitem__("k", "v"), lambda: d.set("k", "v"), lambda: d.update(k="v"),
                  lambda: d.touch("k", ttl=5), lambda: d.touch("k", ttl=None)):
        before = d.version("k")
        assert d["k"] == "v" and d.get("k") == "v" and "k" in d
        d.flush_atimes()
        assert d.version("k") == before, "a read or an access-time flush changed the version"
        write()
        seen.add(d.version("k"))
    assert len(seen) == 6


def test_version_of_a_missing_or_expired_key_raises_keyerror(stores):
    """version() of a key that is absent or past its TTL raises KeyError."""
    now = [1000.0]
    d = stores.open(clock=lambda: now[0])
    with pytest.raises(KeyError):
        d.version("nope")
    d.set("k", 1, ttl=1)
    d.version("k")
    now[0] += 2
    with pytest.raises(KeyError):
        d.version("k")


def test_compare_and_set_writes_only_at_the_expected_version(db):
    """compare_and_set: None writes only if absent; a stale version writes nothing; the current one writes."""
    assert db.compare_and_set("k", 1, None) is True
    assert db.compare_and_set("k", 2, None) is False
    first = db.version("k")
    db["k"] = 1  # someone else writes meanwhile
    assert db.compare_and_set("k", 3, first) is False
    assert db["k"] == 1
    assert db.compare_and_set("k", 3, db.version("k")) is True
    assert db["k"] == 3
    del db["k"]
    assert db.compare_and_set("k", 4, first) is False
    assert "k" not in db


def test_compare_and_set_with_ttl_and_bad_arguments(stores):
    """compare_and_set takes a ttl like set(); a bad version or ttl raises TypeError/ValueError and writes nothing."""
    now = [1000.0]
    d = stores.open(clock=lambda: now[0])
    assert d.compare_and_set("k", 1, None, ttl=5)
    with pytest.raises(TypeError):
        d.compare_and_set("k", 2, "1")
    with pytest.raises(ValueError):
        d.compare_and_set("k", 2, d.version("k"), ttl=-1)
    assert d["k"] == 1
    now[0] += 6
    assert "k" not in d
    assert d.compare_and_set("k", 2, None)


def test_compare_and_set_loops_from_8_threads_count_exactly(yielding_db):
    """8 threads incrementing through version/compare_and_set retry loops lose no increment."""
    db = yielding_db
    db["n"] = 0

    def add(_: int) -> None:
        for _ in range(100):
            while True:
                version = db.version("n")
                if db.compare_and_set("n", db["n"] + 1, version):
                    break

    run_threads(8, add)
    assert db["n"] == 800


def test_track_changes_writes_back_an_in_place_change_and_keeps_the_ttl(stores):
    """A value changed in place inside the block is stored on exit; the entry keeps its expiry."""
    now = [1000.0]
    d = stores.open(clock=lambda: now[0])
    d.set("doc", {"tags": ["a"]}, ttl=10)
    with d.track_changes("doc") as doc:
        doc["tags"].append("b")
    assert d["doc"] == {"tags": ["a", "b"]}
    now[0] += 11
    assert "doc" not in d


def test_track_changes_without_a_change_writes_nothing(db):
    """Leaving the block with the value unchanged does not write: the version stays."""
    db["doc"] = {"n": 1}
    version = db.version("doc")
    with db.track_changes("doc") as doc:
        assert doc == {"n": 1}
    assert db.version("doc") == version


def test_track_changes_of_a_missing_key(db):
    """No default: KeyError before the block; a default is handed out and stored if changed."""
    with pytest.raises(KeyError), db.track_changes("missing"):
        pass
    with db.track_changes("untouched", default=[]):
        pass
    assert "untouched" not in db
    with db.track_changes("seen", default=[]) as seen:
        seen.append("x")
    assert db["seen"] == ["x"]


def test_track_changes_raises_conflicterror_when_written_meanwhile(db):
    """Another write to the key during the block: ConflictError on exit, the other write stays."""
    db["doc"] = [1]
    with pytest.raises(ConflictError, match="written by someone else"), db.track_changes("doc") as doc:
        doc.append(2)
        db["doc"] = ["theirs"]
    assert db["doc"] == ["theirs"]
    with pytest.raises(ConflictError), db.track_changes("new", default=[]) as new:
        new.append(1)
        db["new"] = "created meanwhile"
    assert db["new"] == "created meanwhile"


def test_track_changes_writes_nothing_when_the_block_raises(db):
    """An exception inside the block reaches the caller and nothing is written."""
    db["doc"] = [1]
    with pytest.raises(RuntimeError), db.track_changes("doc") as doc:
        doc.append(2)
        raise RuntimeError("boom")
    assert db["doc"] == [1]


def test_track_changes_from_8_threads_never_loses_a_change(yielding_db):
    """8 threads appending through track_changes, retrying on ConflictError, lose no append."""
    db = yielding_db
    db["log"] = []

    def append(i: int) -> None:
        for n in range(25):
            while True:
                try:
                    with db.track_changes("log") as log:
                        log.append((i, n))
                    break
                except ConflictError:
                    continue

    run_threads(8, append)
    assert sorted(db["log"]) == sorted((i, n) for i in range(8) for n in range(25))
