"""Faults from outside: a full disk, clocks that jump years, a reader table full of dead processes'
slots, a writer stopped inside a transaction, a directory deleted under an open store."""

from __future__ import annotations

import json
import random
import shutil
import time
from pathlib import Path

import pytest

from PersistDict import StorageError

from . import _harness as h
from ._probes import MISSING, full_batch

pytestmark = pytest.mark.slow


def _process_state(pid: int) -> str:
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]


def test_disk_full_raises_storage_full_and_loses_no_acknowledged_write(tmp_path):
    """Under RLIMIT_FSIZE writes raise StorageFullError; no acknowledged write is lost, no refused batch half there."""
    path = str(tmp_path / "db")
    with h.open_db(path) as d:
        d["kept"] = "safe"
    child = h.start_probe("disk_full", {"path": path, "room": h.sized(256, 2048) << 10})
    acked: list[int] = []
    while (line := h.read_line(child)).startswith("ack "):
        acked.append(int(line.split()[1]))
    report = json.loads(line)
    child.communicate(timeout=h.CHILD_TIMEOUT)
    assert child.returncode == 0
    assert report["foreign"] == [], report["foreign"]
    assert report["full"] > 0 and report["readable"]
    with h.open_db(path) as d:
        found = d.copy()
        h.assert_consistent(d)
    lost = [i for i in acked for key, value in full_batch(i).items() if found.get(key, MISSING) != value]
    h.FIGURES["acknowledged writes"] += len(acked)
    h.FIGURES["lost writes"] += len(lost)
    assert not lost, f"acknowledged writes lost: {lost[:10]}"
    refused = set(range(max(acked) + 10)) - set(acked)
    for i in refused:
        present = [key in found for key in full_batch(i)]
        assert all(present) or not any(present), f"refused write {i} left part of its batch"
    assert found["kept"] == "safe"


class JumpingClock:
    """A clock= option that a test moves by years."""

    def __init__(self) -> None:
        self.offset = 0.0

    def __call__(self) -> float:
        return time.time() + self.offset


def test_clock_jumps_years_backward_and_forward_keep_every_entry(tmp_path):
    """A clock jumping years back and forth loses no entry and expires TTLs by the clock of the moment."""
    clock = JumpingClock()
    rng = random.Random(15)
    oracle: dict[str, tuple[int, float]] = {}  # key -> (value, expires at; 0 = never)
    path = str(tmp_path / "db")
    d = h.open_db(path, clock=clock)
    try:
        for phase, years in enumerate((0, -10, 10, -30, 300, 0.001, -300, 0)):
            clock.offset = years * h.YEAR
            now = clock()
            for n in range(40):
                key = f"k{rng.randrange(30)}"
                value = phase * 1000 + n
                op = rng.choice(("set", "ttl", "set_many", "txn", "setdefault", "pop"))
                if op == "set":
                    d[key] = value
                    oracle[key] = (value, 0.0)
                elif op == "ttl":
                    ttl = rng.choice((60, 86400, 400 * h.YEAR))
                    d.set(key, value, ttl=ttl)
                    oracle[key] = (value, now + ttl)
                elif op == "set_many":
                    d.set_many({key: value, key + "b": value})
                    oracle[key] = oracle[key + "b"] = (value, 0.0)
                elif op == "txn":
                    with d.transaction():
                        d[key] = value
                    oracle[key] = (value, 0.0)
                elif op == "setdefault":
                    live = key in oracle and (not oracle[key][1] or oracle[key][1] > clock())
                    got = d.setdefault(key, value)
                    if not live:
                        oracle[key] = (value, 0.0)
                    assert got == oracle[key][0]
                else:
                    live = key in oracle and (not oracle[key][1] or oracle[key][1] > clock())
                    assert d.pop(key, MISSING) == (oracle.pop(key)[0] if live else MISSING)
                    oracle.pop(key, None)
            d.run_maintenance()
            d.expire()
            now = clock()
            oracle = {k: v for k, v in oracle.items() if not v[1] or v[1] > now}  # expire() removed the rest
            live = {k: v for k, (v, _) in oracle.items()}
            assert d.copy() == live, f"phase {phase} ({years} years): the store differs from the oracle"
            for key in live:
                d.metadata(key)
            h.assert_consistent(d)
    finally:
        d.close()
    with h.open_db(path) as d:
        assert d.copy() == {k: v for k, (v, e) in oracle.items() if not e or e > time.time()}


def test_lease_left_by_a_dead_process_with_a_clock_years_ahead_is_taken_over(tmp_path):
    """A maintenance lease left by a killed process whose clock ran 10 years ahead does not stop expiry (defect 6)."""
    path = str(tmp_path / "db")
    with h.open_db(path) as d:
        d["seed"] = 1
    child = h.start_probe("future_lease", {"path": path, "ahead": 10 * h.YEAR})
    assert h.read_line(child) == "leased"
    h.kill(child)
    clock = JumpingClock()
    with h.open_db(path, expiration_days=1, clock=clock) as d:
        d["old"] = "unused for two days"
        clock.offset = 2 * 86400
        d.run_maintenance()
        assert "old" not in d, "a lease held by a dead process with a clock years ahead stopped expiry"


def test_reader_table_filled_by_killed_processes_does_not_block_a_new_open(tmp_path):
    """A reader table filled by a SIGKILLed process's slots does not stop a new open (defect 2)."""
    path = str(tmp_path / "db")
    with h.open_db(path) as d:
        d["k"] = "v"
        child = h.start_probe("fill_readers", {"path": path, "max_readers": 8192})
        assert h.read_line(child).startswith("full ")
        h.kill(child)
        report = h.probe("open_and_read", {"path": path, "keys": ["k"], "write": True})
        assert report["found"] == {"k": "v", "new.opener.readback": True}
        assert d["k"] == "v" and len(d) == 2


def test_sigstopped_writer_inside_a_transaction_blocks_no_opener(tmp_path):
    """A process SIGSTOPped inside transaction() blocks no new process from opening and reading (defect 1)."""
    path = str(tmp_path / "db")
    with h.open_db(path) as d:
        d["committed"] = "yes"
    holder = h.start_probe("hold_transaction", {"path": path})
    try:
        assert h.read_line(holder) == "inside"
        h.bounded(lambda: _wait_stopped(holder.pid), "waiting for the writer to stop")
        for _ in range(2):
            report = h.probe("open_and_read", {"path": path, "keys": ["committed", "only.in.txn"]}, timeout=20)
            assert report["found"] == {"committed": "yes", "only.in.txn": MISSING}
    finally:
        h.kill(holder)
    with h.open_db(path) as d:
        assert d.copy() == {"committed": "yes"}
        h.assert_consistent(d)


def _wait_stopped(pid: int) -> None:
    while _process_state(pid) != "T":
        time.sleep(0.01)


def test_writes_after_the_directory_was_deleted_raise(tmp_path):
    """A write after the store's directory was deleted raises StorageError, not a lost acknowledgement (defect 9)."""
    path = tmp_path / "db"
    d = h.open_db(path)
    try:
        d["before"] = 1
        shutil.rmtree(path)
        with pytest.raises(StorageError, match="db"):
            d["after"] = 2
    finally:
        try:
            d.close()
        except StorageError:
            pass

