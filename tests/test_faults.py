"""Faults from outside an instance: close() racing other threads, other processes holding the
write lock or dying with reader slots, and the database directory deleted under an open store."""

from __future__ import annotations

import contextlib
import random
import shutil
import threading
from pathlib import Path

import pytest

from PersistDict import ClosedError, PersistDict, StorageError

CLOSE_RACE_ROUNDS = 40
HANG = 60  # seconds: only reached when something hangs


def _use_until_closed(d: PersistDict, worker: int, started: threading.Barrier, errors: list[BaseException]) -> None:
    """Mixed reads and writes on ``d`` until one raises; keep what it raised."""
    rng = random.Random(worker)
    started.wait()
    try:
        for n in range(1_000_000):
            key = f"k{rng.randrange(50)}"
            operation = n % 9
            if operation == 0:
                d.get(key)
            elif operation == 1:
                _ = key in d
            elif operation == 2:
                d[key] = n
            elif operation == 3:
                d.get(f"missing{n}")
            elif operation == 4:
                d.get_many([key, "k1", "k2"])
            elif operation == 5:
                len(d)
            elif operation == 6:
                d.pop(key, None)
            elif operation == 7:
                list(d.items())
            else:
                with d.transaction():
                    d[key] = -n
    except BaseException as exc:  # noqa: BLE001 - the test inspects every kind
        errors.append(exc)


def test_operations_losing_the_race_to_close_raise_closed_error(db_path: Path) -> None:
    """Threads using an instance while another thread closes it only ever see ClosedError."""
    seen: list[BaseException] = []
    for round_ in range(CLOSE_RACE_ROUNDS):
        d = PersistDict(db_path, background_thread="disabled")
        d.update({f"k{i}": i for i in range(50)})
        started = threading.Barrier(5)
        errors: list[BaseException] = []
        threads = [threading.Thread(target=_use_until_closed, args=(d, round_ * 4 + i, started, errors),
                                    daemon=True) for i in range(4)]
        for thread in threads:
            thread.start()
        started.wait()
        for _ in range(random.Random(round_).randrange(1, 200)):
            d.get("k1")
        closer = threading.Thread(target=d.close, daemon=True)
        closer.start()
        closer.join(HANG)
        assert not closer.is_alive(), "close() hung"
        for thread in threads:
            thread.join(HANG)
        assert len(errors) == 4
        seen += errors
    wrong = [exc for exc in seen if not isinstance(exc, ClosedError)]
    assert not wrong, f"{len(wrong)} of {len(seen)} were not ClosedError: {sorted({repr(e) for e in wrong})[:5]}"


def test_writes_after_the_directory_was_deleted_raise(db_path: Path) -> None:
    """After rm -rf of an open store, writes raise StorageError naming the path; reads go on."""
    d = PersistDict(db_path, background_thread="disabled", caching=False)
    d.update({"a": 1, "b": 2})
    shutil.rmtree(db_path)
    with pytest.raises(StorageError, match=str(db_path)):
        d["c"] = 3
    with pytest.raises(StorageError, match="deleted"):
        with d.transaction():
            d["c"] = 3
    with pytest.raises(StorageError, match="deleted"):
        d.set_many({"d": 4})
    with pytest.raises(StorageError, match="deleted"):
        del d["a"]
    assert d["a"] == 1 and d.get("b") == 2 and "c" not in d
    with contextlib.suppress(StorageError):  # the access times it could not write are reported
        d.close()
    assert d.closed
