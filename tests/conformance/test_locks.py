"""d.lock on every engine: exclusion, timeouts, expiry takeover, not reentrant, not an entry."""

from __future__ import annotations

import threading
import time

import pytest

from PersistDict import LockTimeoutError, TransactionError

from _concurrency import run_threads


def test_lock_excludes_other_holders_until_released(db):
    """A held lock refuses a second handle (blocking=False, timeout) until released."""
    with db.lock("job") as lock:
        assert lock.held
        assert not db.lock("job", blocking=False).acquire()
        with pytest.raises(LockTimeoutError, match="'job'"):
            with db.lock("job", timeout=0.01):
                pass
        with db.lock("other", blocking=False):  # another name is another lock
            pass
    assert not lock.held
    with db.lock("job", blocking=False):
        pass


def test_lock_is_not_reentrant(db):
    """The holding thread taking the same lock again waits like anyone (here: times out); one handle refuses twice."""
    lock = db.lock("job")
    with lock:
        with pytest.raises(LockTimeoutError):
            with db.lock("job", timeout=0.01):
                pass
        with pytest.raises(RuntimeError, match="not reentrant"):
            lock.acquire()


def test_an_expired_lock_is_taken_over_and_its_old_holder_cannot_free_it(stores):
    """After its ttl another handle takes the lock; the old holder's release then returns False and frees nothing."""
    now = [1000.0]
    d = stores.open(clock=lambda: now[0])
    old = d.lock("job", ttl=5)
    assert old.acquire()
    now[0] += 4
    assert not d.lock("job", blocking=False).acquire()
    assert old.renew()  # until 1009
    now[0] += 4
    assert not d.lock("job", blocking=False).acquire()
    now[0] += 2
    new = d.lock("job", blocking=False)
    assert new.acquire()
    assert old.release() is False
    assert not d.lock("job", blocking=False).acquire()  # still the new holder's
    assert new.release() is True


def test_locks_are_not_entries(db):
    """A held lock is not counted, listed or removed by clear()."""
    db["a"] = 1
    with db.lock("job"):
        assert len(db) == 1 and list(db) == ["a"]
        db.clear()
        assert not db.lock("job", blocking=False).acquire()


def test_lock_inside_transaction_raises(db):
    """Taking a lock inside transaction() raises TransactionError (the claim would be invisible until commit)."""
    with db.transaction(), pytest.raises(TransactionError, match="inside transaction"):
        db.lock("job").acquire()


@pytest.mark.parametrize("args", [{"name": ""}, {"name": "x" * 401}, {"name": "j", "ttl": 0},
                                  {"name": "j", "ttl": float("inf")}, {"name": "j", "timeout": -1}])
def test_lock_bad_arguments_raise_valueerror(db, args):
    """An empty or too long name, a ttl not > 0 and finite, a negative timeout: ValueError."""
    with pytest.raises(ValueError):
        db.lock(**args)


def test_lock_gives_mutual_exclusion_across_threads(db):
    """4 threads x 30 rounds under one lock never run their critical sections at the same time."""
    inside: list[int] = []
    overlaps: list[int] = []
    guard = threading.Lock()

    def work(i: int) -> None:
        for _ in range(30):
            with db.lock("job"):
                with guard:
                    inside.append(i)
                    if len(inside) > 1:
                        overlaps.append(i)
                count = db.get("count", 0)
                time.sleep(0.001)  # others run now: without the lock they would enter and overlap
                db["count"] = count + 1  # a read-modify-write the lock protects
                with guard:
                    inside.remove(i)

    run_threads(4, work)
    assert not overlaps
    assert db["count"] == 120
