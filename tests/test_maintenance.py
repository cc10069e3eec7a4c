"""Maintenance: expiry by age and TTL, size bounds, integrity check and repair, codec
changes, the background thread and its cross-process lease, stats."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import pytest

from PersistDict import CodecMismatchWarning, PersistDict, serializers
from PersistDict.engines.lmdb import entries as _table
from PersistDict.exceptions import CorruptedRecordError
from PersistDict.engines.lmdb.housekeeping import CLOCK_SLACK, LEASE, LONGEST_LEASE, try_take_lease
from PersistDict.engines.lmdb.env import CHANGE_LOG_KEPT, change_log_slot, encode_seq

DAY = 86400.0
ROOT = str(Path(__file__).resolve().parents[1])


class Clock:
    """An injectable clock the test moves by hand."""

    def __init__(self, now: float = 1_700_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def test_entries_unused_for_expiration_days_are_removed(make_db: Callable[..., PersistDict]) -> None:
    """Written 30 days ago expires with expiration_days=7; read 3 days ago survives."""
    clock = Clock()
    db = make_db(expiration_days=7, clock=clock)
    db.update(old="o", read_recently="r", written_recently="w")
    clock.now += 27 * DAY
    assert db["read_recently"] == "r"
    clock.now += 0.5 * DAY
    db["written_recently"] = "w2"
    clock.now += 2.5 * DAY
    assert db.expire() == 1
    assert "old" not in db
    assert list(db) == ["read_recently", "written_recently"]


def test_hot_reads_keep_entries_alive(make_db: Callable[..., PersistDict]) -> None:
    """A value read regularly (from the front cache) never expires."""
    clock = Clock()
    db = make_db(expiration_days=1, clock=clock)
    db["hot"] = 1
    db["cold"] = 2
    for _ in range(10):
        clock.now += 0.5 * DAY
        assert db["hot"] == 1
        db.expire()
    assert "hot" in db and "cold" not in db


def test_fractional_expiration_days(make_db: Callable[..., PersistDict]) -> None:
    """expiration_days accepts fractions (here: one hour)."""
    clock = Clock()
    db = make_db(expiration_days=1 / 24, clock=clock)
    db["k"] = 1
    clock.now += 3599
    assert db.expire() == 0
    clock.now += 2
    assert db.expire() == 1


def test_expiry_at_open_without_thread(db_path: Path) -> None:
    """background_thread=False runs the maintenance pass in the constructor."""
    clock = Clock()
    with PersistDict(db_path, background_thread="disabled", clock=clock) as db:
        db["old"] = 1
    clock.now += 10 * DAY
    with PersistDict(db_path, background_thread=False, expiration_days=7, clock=clock) as db:
        assert "old" not in db and db.stats()["expired"] == 1


def test_expiry_by_background_thread(db_path: Path) -> None:
    """With the background thread, the pass at open removes expired entries."""
    clock = Clock()
    with PersistDict(db_path, background_thread="disabled", clock=clock) as db:
        db["old"] = 1
        db["new"] = 2
    clock.now += 10 * DAY
    with PersistDict(db_path, expiration_days=7, clock=clock) as db:
        db["new"] = 3
        assert db._maintenance.pass_done.wait(30)
        assert list(db) == ["new"]


def test_ttl_entries_vanish_at_expiry_and_are_swept(make_db: Callable[..., PersistDict]) -> None:
    """An entry past its TTL is invisible to every read path, then removed by the sweep."""
    clock = Clock()
    db = make_db(clock=clock)
    db.set("session", {"user": 1}, ttl=60)
    db["forever"] = 0
    for _ in range(3):
        assert db["session"] == {"user": 1}  # also warms the front cache
    clock.now += 61
    assert "session" not in db and db.get("session") is None
    with pytest.raises(KeyError):
        db["session"]
    assert list(db) == ["forever"] and dict(db.items()) == {"forever": 0}
    assert db.get_many(["session"]) == {}
    with pytest.raises(KeyError):
        db.touch("session", ttl=60)  # too late
    assert len(db) == 2  # len may lag until the sweep (documented)
    assert db.expire() == 1 and len(db) == 1
    db.set("session", "new", ttl=60)  # rewriting an expired key creates a fresh entry
    assert list(db) == ["forever", "session"]


@pytest.mark.parametrize("ttl", [0, -1, float("nan"), float("inf"), 10**400])
def test_a_ttl_that_is_not_positive_finite_seconds_is_refused(make_db: Callable[..., PersistDict], ttl: object) -> None:
    """set, set_many and touch refuse the ttl with ValueError and change nothing (a NaN expiry was
    live for get and iteration and expired for `in`)."""
    db = make_db()
    db["k"] = 1
    for write in (lambda: db.set("k", 2, ttl=ttl), lambda: db.set_many({"k": 2}, ttl=ttl),
                  lambda: db.touch("k", ttl=ttl)):
        with pytest.raises(ValueError, match="ttl must be positive, finite seconds"):
            write()
    assert db["k"] == 1 and "k" in db and list(db) == ["k"]


def test_touch_extends_or_removes_ttl(make_db: Callable[..., PersistDict]) -> None:
    """touch(key, ttl=...) moves the expiry; touch(key) makes the entry permanent."""
    clock = Clock()
    db = make_db(clock=clock)
    db.set("a", 1, ttl=10)
    db.set("b", 2, ttl=10)
    clock.now += 5
    db.touch("a", ttl=100)
    db.touch("b")
    clock.now += 50
    assert db["a"] == 1 and db["b"] == 2
    clock.now += 1000
    assert "a" not in db and db["b"] == 2
    with pytest.raises(KeyError):
        db.touch("missing")
    with pytest.raises(ValueError):
        db.set("c", 3, ttl=0)


def test_max_items_evicts_least_recently_used(make_db: Callable[..., PersistDict]) -> None:
    """With max_items, the least recently read or written entries go first; the bound holds after each write."""
    clock = Clock()
    db = make_db(max_items=10, clock=clock)
    for i in range(10):
        clock.now += 1
        db[i] = i
    for i in range(5):
        clock.now += 1
        assert db[i] == i
    for i in range(10, 15):
        clock.now += 1
        db[i] = i
        assert len(db) == 10
    assert sorted(db) == [0, 1, 2, 3, 4, 10, 11, 12, 13, 14]
    assert db.stats()["evicted"] == 5


def test_reads_served_by_the_front_cache_count_for_eviction_and_metadata(
        make_db: Callable[..., PersistDict]) -> None:
    """Hits the front cache served (buffered, not yet flushed) move the entry's access time for
    metadata() and keep it from being the least recently used one."""
    clock = Clock()
    db = make_db(max_items=3, clock=clock)
    db["a"] = 1
    clock.now += 1
    assert db["a"] == 1 and db["a"] == 1  # the second read caches it
    for key in ("b", "c"):
        clock.now += 1
        db[key] = key
    clock.now += 100
    hits = db.stats()["front_cache_hits"]
    for _ in range(100):
        assert db["a"] == 1
    assert db.stats()["front_cache_hits"] == hits + 100
    assert db.metadata("a").atime.timestamp() == clock.now
    db["d"] = "d"
    assert sorted(db) == ["a", "c", "d"]


@pytest.mark.parametrize("undone", ["clear", "del", "pop", "popitem"])
def test_a_rolled_back_delete_keeps_the_reads_noted_in_memory(make_db: Callable[..., PersistDict], undone: str) -> None:
    """A clear()/del/pop/popitem inside a transaction that rolls back leaves the unflushed access
    times: an entry read just now does not expire as unused."""
    clock = Clock()
    db = make_db(expiration_days=1, clock=clock)
    db["k"] = 1
    clock.now += 2 * 86400
    assert db["k"] == 1  # read now; noted in memory
    with pytest.raises(RuntimeError), db.transaction():
        {"clear": db.clear, "del": lambda: db.__delitem__("k"), "pop": lambda: db.pop("k"),
         "popitem": db.popitem}[undone]()
        raise RuntimeError("roll back")
    assert db.expire() == 0 and db["k"] == 1


def test_batch_larger_than_max_items_keeps_the_new_entries(make_db: Callable[..., PersistDict]) -> None:
    """Entries written by the current write are never evicted by it."""
    db = make_db(max_items=3)
    db.update({f"old{i}": i for i in range(3)})
    db.update({"n1": 1, "n2": 2})
    assert set(db) == {"n1", "n2", "old2"} or len(set(db) & {"n1", "n2"}) == 2
    assert len(db) == 3


def test_a_write_the_bounds_cannot_hold_is_refused_and_the_store_left_as_it_was(
        make_db: Callable[..., PersistDict], tmp_path: Path) -> None:
    """More distinct keys than max_items in one write, a value whose pages exceed max_bytes, and a
    batch whose pages only turn out too many inside the transaction: ValueError, nothing written,
    inside transaction() too (the rest of the transaction stays)."""
    items = make_db(tmp_path / "items", max_items=3)
    items.update({"a": 1, "b": 2})
    with pytest.raises(ValueError, match="4 entries, more than max_items=3"):
        items.set_many({f"k{i}": i for i in range(4)})
    items.set_many([("k", 1), ("k", 2), ("k", 3), ("k", 4)])  # one key given four times: one entry
    assert sorted(items.items()) == [("a", 1), ("b", 2), ("k", 4)]

    pages = make_db(tmp_path / "pages", max_bytes=8192)
    pages["small"] = b"s"
    with pytest.raises(ValueError, match=r"key 'x' needs at least 12288 bytes .* max_bytes=8192"):
        pages["x"] = bytes(8000)  # two overflow pages and a leaf page
    with pytest.raises(ValueError, match="these 2 entries need"):
        pages.set_many({"p": bytes(3000), "q": bytes(3000)})
    batch = {f"k{i}": "x" * 100 for i in range(24)}  # fits the estimate (2 leaf pages), not the tree (+ a branch)
    with pytest.raises(ValueError, match="alone take 24 entries and 12288 bytes"):
        pages.set_many(batch)
    assert list(pages.items()) == [("small", b"s")] and pages.stats()["records_bytes"] <= 8192
    with pages.transaction():
        pages["t"] = b"t"
        with pytest.raises(ValueError, match="alone take"):
            pages.set_many(batch)
    assert sorted(pages) == ["small", "t"] and pages.stats()["records_bytes"] <= 8192


def test_eviction_finds_room_that_sampling_or_page_layout_hides(
        make_db: Callable[..., PersistDict], tmp_path: Path) -> None:
    """A write that fits is never refused: not when every sampled entry is the write's own (a seq
    gap leads each sample to the next row), nor when the entries left after evicting the rest sit on
    half-empty pages (written afresh they fit)."""
    gap = make_db(tmp_path / "gap")
    gap["old"] = 0
    gap.set_many({f"k{i}": i for i in range(998)})
    gap["target"] = 0
    gap.set_many({f"n{i}": i for i in range(100)})
    for i in range(998):
        del gap[f"k{i}"]  # 102 entries: "old", then a gap of seqs, "target" and n0..n99 at its end
    gap.close()
    for seed in range(20):  # a sample misses "old" with probability (999/1100)**16 = 0.21
        bounded = make_db(tmp_path / "gap", max_items=101)
        bounded._rng.seed(seed)
        bounded["target"] = seed  # one eviction: the least recently used entry that is not "target"
        assert len(bounded) == 101 and bounded["target"] == seed
        bounded.close()
        refill = make_db(tmp_path / "gap")
        refill[f"again{seed}"] = seed
        refill.close()

    full = make_db(tmp_path / "full", max_bytes=64 * 1024)
    for i in range(600):
        full[f"{i:04d}a"] = bytes(60)  # LRU keeps the store at 64 KiB
    batch = {f"{i:04d}b": bytes(500) for i in range(0, 600, 12)}  # 44 KiB in an empty table; in key order
    full.set_many(batch)  # between the old entries: once they are evicted, one or two per leaf page
    assert set(batch) <= set(full) and full.stats()["records_bytes"] <= 64 * 1024
    assert full.check().ok


def test_max_bytes_bound(make_db: Callable[..., PersistDict]) -> None:
    """With max_bytes, old entries are evicted to keep the records under the bound."""
    db = make_db(max_bytes=256 * 1024)
    for i in range(100):
        db[i] = bytes(10_000)
        assert db.stats()["records_bytes"] <= 256 * 1024
    assert 0 < len(db) < 100 and 99 in db
    with pytest.raises(ValueError, match="max_bytes"):
        db["huge"] = bytes(300 * 1024)
    assert "huge" not in db


def test_switching_between_plain_codec_functions_warns(db_path: Path, make_db: Callable[..., PersistDict]) -> None:
    """pickle.dumps, json.dumps and dill.dumps share a name: the warning tells them apart by module.
    A format record of a development version (the name alone) matches the function it names."""
    import json

    import dill

    db = make_db()  # pickle.dumps
    db["a"] = [1]
    db.close()
    for dumps, loads in ((json.dumps, json.loads), (dill.dumps, dill.loads)):
        with pytest.warns(CodecMismatchWarning, match="_pickle.dumps"):
            make_db(value_serializer=dumps, value_unserializer=loads).close()
    legacy = make_db()
    record = json.dumps({**legacy._format(), "values": "dumps"}).encode()
    legacy._engine.storage.write(lambda txn: txn.put_meta(b"format", record))
    legacy.close()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert make_db()["a"] == [1]


def test_codec_change_reports_and_deletes_nothing(db_path: Path, make_db: Callable[..., PersistDict]) -> None:
    """Opening with another value codec warns; undecodable entries are reported, never deleted."""
    db = make_db()
    db.update({"a": {1, 2}, "b": "text"})
    db.close()
    codec = serializers.json_codec
    with pytest.warns(CodecMismatchWarning):
        other = make_db(value_serializer=codec.dumps, value_unserializer=codec.loads)
    report = other.check(repair=True)
    assert not report.ok and len(report.undecodable) == 2 and "'a'" in report.undecodable
    other.expire()
    assert len(other) == 2
    other.close()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        original = make_db()
        assert original["a"] == {1, 2}


def test_drop_unreadable_deletes_only_on_request(make_db: Callable[..., PersistDict]) -> None:
    """check(drop_unreadable=True) removes exactly the entries that cannot be decoded."""
    db = make_db(value_serializer=json.dumps, value_unserializer=json.loads)
    db["good"] = [1]
    db._values.unserializer = lambda data: json.loads(data) if data != '"bad"' else 1 / 0
    db["bad"] = "bad"
    report = db.check(drop_unreadable=True)
    assert report.undecodable == ["'bad'"] and report.dropped == 1
    assert list(db) == ["good"] and db.check().ok


def test_flush_skips_deleted_entries_and_never_lowers_a_later_access_time(
        make_db: Callable[..., PersistDict]) -> None:
    """flush_atimes writes the reads noted since the last flush, except for an entry deleted
    meanwhile (it would leave an orphan access time) and one that another instance saw read later."""
    early, late = Clock(), Clock(1_700_000_100.0)
    first, second = make_db(clock=early), make_db(clock=late)
    first.set_many({"kept": 1, "deleted": 2, "read_later": 3})
    for key in ("kept", "deleted", "read_later"):
        assert first[key]
    del second["deleted"]
    assert second["read_later"] == 3
    assert second.flush_atimes() == 1
    assert first.flush_atimes() == 1  # "kept" only
    assert first.metadata("kept").atime.timestamp() == early.now
    assert first.metadata("read_later").atime.timestamp() == late.now
    assert first.check().ok  # no orphan access time


def test_check_finds_and_repairs_structural_damage(make_db: Callable[..., PersistDict]) -> None:
    """Orphan order rows, orphan atimes and records without an order row are found and repaired."""
    db = make_db()
    db.update({f"k{i}": i for i in range(10)})
    assert db["k0"] == 0
    db.flush_atimes()
    storage = db._engine.storage

    def damage(txn) -> None:  # type: ignore[no-untyped-def]
        rows = list(txn.iter_order())
        txn.delete_order(rows[1][0])  # record k1 loses its order row
        txn.put_order(999, b"sghost")  # an order row without a record
        txn.put_atime(12345, 1.0)  # an atime without an entry

    storage.write(damage)
    report = db.check()
    assert (report.orphan_records, report.orphan_order_rows, report.orphan_atimes) == (1, 1, 1)
    assert db.check(repair=True).repaired == 3
    assert db.check().ok
    assert sorted(db) == sorted(f"k{i}" for i in range(10)) and db["k1"] == 1


def test_interrupted_sweep_resumes(make_db: Callable[..., PersistDict]) -> None:
    """A pass that runs out of time stops cleanly and the next one continues where it stopped."""
    clock = Clock()
    db = make_db(clock=clock)
    db.set_many({i: i for i in range(2500)}, ttl=10)
    clock.now += 11
    removed, resume = db._sweep(start_after=0, deadline=0.0)  # out of time at once
    assert removed == 0 and resume == 0
    total = 0
    while resume is not None:
        removed, resume = db._sweep(start_after=resume or 0, deadline=float("inf"))
        total += removed
    assert total == 2500 and len(db) == 0


def test_maintenance_lease_is_shared_between_processes(db_path: Path, make_db: Callable[..., PersistDict]) -> None:
    """Only one process holds the maintenance lease at a time; it expires if not renewed."""
    db = make_db()
    assert try_take_lease(db._engine.storage, "me", 1000.0, 60)
    code = f"""
import sys
sys.path.insert(0, {ROOT!r})
from PersistDict import PersistDict
from PersistDict.engines.lmdb.housekeeping import try_take_lease
d = PersistDict({str(db_path)!r}, background_thread="disabled")
print(try_take_lease(d._engine.storage, "other", 1030.0, 60), try_take_lease(d._engine.storage, "other", 1061.0, 60))
"""
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.stdout.split() == ["False", "True"], result.stderr
    assert not try_take_lease(db._engine.storage, "me", 1062.0, 60)


def test_the_strictest_expiration_days_sweeps_and_close_gives_the_lease_up(
        db_path: Path, make_db: Callable[..., PersistDict]) -> None:
    """An instance without expiry holding the lease does not stop one with expiration_days from
    sweeping (it takes the lease over); one with a laxer setting cannot take it back; a closed
    instance gives the lease up, so the next one sweeps at open with its own setting."""
    then = Clock(time.time() - 10 * 86400)
    writer = make_db(clock=then)
    writer.update({"stale": 1, "stale2": 2})
    writer.close()
    lax = make_db(background_thread=False)  # its pass at open takes the lease: no expiry
    assert "stale" in lax
    strict = make_db(expiration_days=1)
    strict.run_maintenance()
    assert "stale" not in strict and "stale2" not in strict
    with strict._engine.storage.reading() as txn:
        assert txn.meta(LEASE).startswith(strict._maintenance.holder.encode() + b"#1.0|")
    assert not try_take_lease(lax._engine.storage, lax._maintenance.holder, time.time(), 60)
    assert not try_take_lease(lax._engine.storage, "laxer", time.time(), 60, expiration_days=2)
    old_format = f"old|{time.time() + 60}".encode()  # an older version's lease: its setting unknown
    strict._engine.storage.write(lambda txn: txn.put_meta(LEASE, old_format))
    assert not try_take_lease(strict._engine.storage, strict._maintenance.holder, time.time(), 60, expiration_days=1)
    strict._engine.storage.write(lambda txn: txn.delete_meta(LEASE))
    strict.close()
    lax.close()
    with make_db()._engine.storage.reading() as txn:
        assert txn.meta(LEASE) is None  # both gave it up
    writer = make_db(clock=then)
    writer["stale3"] = 3
    writer.close()
    make_db(background_thread=False).close()  # takes the lease at open, gives it up at close
    assert "stale3" not in make_db(expiration_days=1, background_thread=False)


def _lease_holder(db_path: Path, clock_ahead: float) -> subprocess.Popen[str]:
    """A process whose clock runs ``clock_ahead`` seconds ahead, holding the lease (its pass at
    open takes it) until it is killed."""
    code = f"""
import sys, time
sys.path.insert(0, {ROOT!r})
from PersistDict import PersistDict
d = PersistDict({str(db_path)!r}, background_thread=False, expiration_days=1,
                clock=lambda: time.time() + {clock_ahead!r})
print(d._maintenance.holder, flush=True)
time.sleep(120)
"""
    holder = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert holder.stdout is not None and holder.stdout.readline().strip()
    return holder


@pytest.mark.parametrize("clock_ahead", [10 * 365 * DAY, 2 * LONGEST_LEASE])
def test_a_lease_from_a_clock_far_ahead_is_taken_over_after_its_holder_died(
        db_path: Path, make_db: Callable[..., PersistDict], clock_ahead: float) -> None:
    """A process whose clock ran ahead took the lease and was killed: its lease, which ends later
    than any lease taken now could, is taken over, so expiry goes on for everyone."""
    stale = make_db(clock=Clock(time.time() - 10 * DAY))
    stale["old"] = 1
    stale.close()
    holder = _lease_holder(db_path, clock_ahead)
    holder.send_signal(signal.SIGKILL)
    holder.wait(timeout=60)
    db = make_db(expiration_days=1)
    db.run_maintenance()
    assert "old" not in db
    with db._engine.storage.reading() as txn:
        assert txn.meta(LEASE).startswith(db._maintenance.holder.encode() + b"#")


def test_a_valid_lease_is_not_taken_over_and_no_lease_lasts_longer_than_the_bound(
        db_path: Path, make_db: Callable[..., PersistDict]) -> None:
    """A live holder's lease (its clock a little ahead, within CLOCK_SLACK) stays with it; a lease
    ending exactly at now + LONGEST_LEASE + CLOCK_SLACK is still valid; the lease an instance takes
    never exceeds LONGEST_LEASE, whatever its settings."""
    holder = _lease_holder(db_path, CLOCK_SLACK / 2)
    try:
        stale = make_db(clock=Clock(time.time() - 10 * DAY))
        stale["old"] = 1
        stale.close()
        db = make_db(expiration_days=1)
        db.run_maintenance()
        assert "old" in db  # the holder sweeps, not us
    finally:
        holder.kill()
        holder.wait(timeout=60)
    now = 1_000_000.0
    assert try_take_lease(db._engine.storage, "a", now, LONGEST_LEASE)  # the longest valid lease
    assert not try_take_lease(db._engine.storage, "b", now - CLOCK_SLACK, 60)  # b's clock a little behind
    assert try_take_lease(db._engine.storage, "b", now - CLOCK_SLACK - 1, 60)  # a's lease cannot be from now
    long_passes = make_db(maintenance_interval=10 * LONGEST_LEASE, background_timeout=LONGEST_LEASE)
    assert long_passes._maintenance.lease_seconds == LONGEST_LEASE


def test_stats_counters(make_db: Callable[..., PersistDict]) -> None:
    """stats() counts hits, misses, front-cache hits, sets and deletes, and reports the database size."""
    db = make_db()
    db["a"] = 1
    for _ in range(4):
        db["a"]
    db.get("missing")
    del db["a"]
    stats = db.stats()
    assert stats["sets"] == 1 and stats["deletes"] == 1 and stats["misses"] == 1
    assert stats["hits"] == 4 and stats["front_cache_hits"] >= 1
    assert stats["entries"] == 0 and stats["bytes_on_disk"] > 0 and stats["map_size"] > 0
    assert stats["readers_in_use"] >= 0


def test_background_thread_stops_on_close_and_exit(db_path: Path) -> None:
    """The daemon thread stops on close() and never keeps the interpreter alive."""
    db = PersistDict(db_path, maintenance_interval=0.05, atime_flush_interval=0.05)
    thread = db._maintenance._thread
    assert thread is not None and thread.is_alive()
    db.close()
    assert not thread.is_alive()
    code = f"""
import sys
sys.path.insert(0, {ROOT!r})
from PersistDict import PersistDict
d = PersistDict({str(db_path)!r}, maintenance_interval=0.05, atime_flush_interval=0.05)
d["k"] = 1
d["k"]
print("done")
"""
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and result.stdout.strip() == "done", result.stderr


def test_maintenance_pass_flags_structural_damage(make_db: Callable[..., PersistDict]) -> None:
    """The background pass notices records and order rows disagreeing and points to check(repair=True)."""
    db = make_db()
    db.update(a=1, b=2)
    db._engine.storage.write(lambda txn: txn.delete_order(next(iter(txn.iter_order()))[0]))
    with pytest.warns(RuntimeWarning, match="check\\(repair=True\\)"):
        db.run_maintenance()
    assert db.stats()["integrity_alerts"] == 1
    db.check(repair=True)
    db.run_maintenance()
    assert db.stats()["integrity_alerts"] == 1 and sorted(db) == ["a", "b"]


def test_values_are_never_aliased_through_the_cache(make_db: Callable[..., PersistDict]) -> None:
    """Mutating a returned object or the stored one never changes later reads, cache hit or not."""
    import numpy as np

    db = make_db()
    originals = {"list": [1.5, 2.5], "dict": {"a": 1}, "nested": {"a": [1, {"b": 2}]}, "set": {1, 2},
                 "bytearray": bytearray(b"ab"), "array": np.arange(4.0), "tuple": (1, [2])}
    for key, value in originals.items():
        db[key] = value
    for value in originals.values():
        if isinstance(value, np.ndarray):
            value += 1
        elif isinstance(value, (list, bytearray)):
            value.append(99)
        elif isinstance(value, (dict, set)):
            value.clear()
    expected = {"list": [1.5, 2.5], "dict": {"a": 1}, "nested": {"a": [1, {"b": 2}]}, "set": {1, 2},
                "bytearray": bytearray(b"ab"), "array": np.arange(4.0), "tuple": (1, [2])}
    for _ in range(4):  # miss, admission, then hits served from the front cache
        for key, value in expected.items():
            got = db[key]
            assert type(got) is type(value)
            assert (got == value).all() if key == "array" else got == value
            if key == "array":
                got += 100
            elif key in ("list", "bytearray"):
                got.append(7)
            elif key in ("dict", "set"):
                got.clear()
            elif key == "nested":
                got["a"][1]["b"] = 3
            elif key == "tuple":
                got[1].append(3)
    assert db.stats()["front_cache_hits"] > 0


def _read_all_twice(db: PersistDict, n: int = 50) -> None:
    """Read k0..k{n-1} twice, checking values (the second miss admits an entry to the front cache)."""
    for _ in range(2):
        for i in range(n):
            assert db[f"k{i}"] == i


def test_own_maintenance_writes_keep_the_front_cache(make_db: Callable[..., PersistDict]) -> None:
    """Flushing access times and renewing the lease do not empty this instance's front cache."""
    db = make_db()
    db.set_many({f"k{i}": i for i in range(50)})
    _read_all_twice(db)
    assert len(db._front) == 50
    assert db.flush_atimes() == 50
    db.run_maintenance()
    db.run_maintenance()
    assert len(db._front) == 50
    _read_all_twice(db)
    # the lease commit is not reported to the cache: one read checks the gap
    assert db.stats()["front_cache_hits"] >= 99


def test_evictions_leave_the_rest_of_the_own_front_cache(make_db: Callable[..., PersistDict]) -> None:
    """Writes that evict entries to stay within max_items evict exactly those from the front cache:
    the survivors are still served from it, the evicted ones are gone."""
    db = make_db(max_items=50)
    db.set_many({f"k{i}": i for i in range(50)})
    _read_all_twice(db)
    for i in range(50, 60):  # each evicts one entry
        db[f"k{i}"] = i
    present = set(db.keys())
    assert len(present) == 50
    hits = db.stats()["front_cache_hits"]
    for i in range(60):
        assert db.get(f"k{i}") == (i if f"k{i}" in present else None)
    assert db.stats()["front_cache_hits"] >= hits + 40  # the 40 cached survivors


def _in_another_process(db_path: Path, body: str) -> None:
    code = f"""
from PersistDict import PersistDict
d = PersistDict({str(db_path)!r}, background_thread="disabled")
{body}
d.close()
"""
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr


def test_another_process_s_maintenance_writes_keep_the_front_cache(
        db_path: Path, make_db: Callable[..., PersistDict]) -> None:
    """Another process flushing access times and taking the lease leaves this front cache serving hits."""
    db = make_db()
    db.set_many({f"k{i}": i for i in range(50)})
    _read_all_twice(db)
    assert len(db._front) == 50
    _in_another_process(db_path, "[d[f'k{i}'] for i in range(50)]; assert d.flush_atimes() == 50; d.run_maintenance()")
    hits = db.stats()["front_cache_hits"]
    _read_all_twice(db)
    assert db.stats()["front_cache_hits"] >= hits + 99  # the first read may find the gap: one LMDB read


@pytest.mark.parametrize(("body", "changed"), [
    ("d['k7'] = 'new'", {"k7": "new"}),
    ("del d['k7']; d['k8'] = 'eight'", {"k7": None, "k8": "eight"}),
    ("d.touch('k7', ttl=0.001); import time; time.sleep(0.01); d.expire()", {"k7": None}),
    ("d.set_many({'k7': 7.5, 'k60': 60})", {"k7": 7.5, "k60": 60}),
    ("with d.transaction():\n    d['k7'] = 'in txn'\n    try:\n        with d.transaction():\n"
     "            d['k8'] = 'rolled back'\n            raise KeyError\n    except KeyError:\n        pass",
     {"k7": "in txn"}),
])
def test_another_process_s_write_evicts_only_the_entries_it_changed(
        db_path: Path, make_db: Callable[..., PersistDict], body: str, changed: dict[str, object]) -> None:
    """A write in another process logs the keys it changed: this front cache evicts those and keeps
    serving the rest as hits; the changed keys read their new state."""
    db = make_db()
    db.set_many({f"k{i}": i for i in range(50)})
    _read_all_twice(db)
    _in_another_process(db_path, body)
    for key, value in changed.items():
        assert db.get(key) == value
    hits = db.stats()["front_cache_hits"]
    kept = [f"k{i}" for i in range(50) if f"k{i}" not in changed]
    assert all(db[key] == int(key[1:]) for key in kept)
    # a read that misses LMDB does not bring the cache up to date: then the first kept key is read there
    assert db.stats()["front_cache_hits"] >= hits + len(kept) - 1
    for key, value in changed.items():  # now from a cache brought up to date: evicted, read again
        assert db.get(key) == value


def test_another_process_s_write_evicts_keys_of_every_kind(db_path: Path, make_db: Callable[..., PersistDict]) -> None:
    """The log names entries by their lookup encoding: int, float, tuple, bytes and long (hashed-slot)
    keys cached here are evicted when another process overwrites them."""
    keys = ["L" * 600, 5, 2.5, ("t", 1), b"raw", "short"]
    db = make_db()
    for key in keys:
        db[key] = "old"
    for _ in range(2):
        assert all(db[key] == "old" for key in keys)
    assert len(db._front) == len(keys)
    _in_another_process(db_path, f"d.update(dict.fromkeys({keys[:-1]!r}, 'new'))")
    for _ in range(2):
        assert [db[key] for key in keys] == ["new"] * (len(keys) - 1) + ["old"]


@pytest.mark.parametrize("body", [
    "d.clear(); d.update({f'k{i}': i for i in range(50)})",  # clear() names no key
    "d.set_many({f'key-{i:040d}': i for i in range(1000)})",  # too many keys to log
])
def test_another_process_s_unlogged_write_empties_the_front_cache(
        db_path: Path, make_db: Callable[..., PersistDict], body: str) -> None:
    """A commit that is not in the change log empties the cache, so nothing stale is served."""
    db = make_db()
    db.set_many({f"k{i}": i for i in range(50)})
    _read_all_twice(db)
    _in_another_process(db_path, body)
    assert db["k0"] == 0
    assert len(db._front) == 0


def test_a_misplaced_record_is_never_served_nor_cached(
        db_path: Path, make_db: Callable[..., PersistDict]) -> None:
    """A damaged store can hold B's record under A's slot (check() counts it as misplaced). A read of
    A refuses it (it returned B's value) and caches nothing; once another process overwrites A,
    A reads as written."""
    db = make_db()
    db["A"], db["B"] = "value-A", "value-B"
    with db._engine.storage.transaction() as txn:
        txn.raw.put(b"sA", bytes(txn.record(b"sB")), db=txn._records)
    assert db.check().misplaced_records == 1
    for read in (lambda: db["A"], lambda: db["A"], lambda: db.get_many(["A"]), lambda: "A" in db):
        with pytest.raises(CorruptedRecordError, match="'A'"):
            read()
    assert len(db._front) == 0 and db["B"] == "value-B"
    _in_another_process(db_path, "d['A'] = 'new'")
    assert db["A"] == db.get_many(["A"])["A"] == "new" and "A" in db


def test_popitem_of_a_misplaced_record_leaves_no_cached_copy(make_db: Callable[..., PersistDict]) -> None:
    """popitem() removes a record found under another key's exact slot, which reads of that key
    refused (they returned the other key's value) and so never cached, in any instance."""
    db, other = make_db(), make_db()
    db["A"], db["B"] = "value-A", "value-B"
    with db._engine.storage.transaction() as txn:
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


def test_the_change_log_names_what_each_commit_changed(make_db: Callable[..., PersistDict]) -> None:
    """Each commit logs the lookups of the entries it changed (none for access times and the lease);
    clear() is not logged; the log keeps the last CHANGE_LOG_KEPT commits."""
    db = make_db()
    db["a"] = 1
    storage = db._engine.storage
    base = storage.last_txnid()
    assert storage.changes_since(base) == (base, set())
    db["a"]
    db.flush_atimes()
    assert try_take_lease(storage, "me", 1000.0, 60)
    assert storage.last_txnid() == base + 2 and storage.changes_since(base) == (base + 2, set())
    db["b"] = 2
    del db["a"]
    assert storage.changes_since(base) == (base + 4, {b"sa", b"sb"})
    assert storage.changes_since(base + 3) == (base + 4, {b"sa"})
    db.clear()
    assert storage.changes_since(base + 4) is None and storage.changes_since(base + 5) == (base + 5, set())
    for i in range(CHANGE_LOG_KEPT + 6):
        assert try_take_lease(storage, f"p{i}", 2000.0 + 100 * i, 60)
    last = storage.last_txnid()
    assert storage.changes_since(last - CHANGE_LOG_KEPT) == (last, set())
    assert storage.changes_since(last - CHANGE_LOG_KEPT - 1) is None
    with storage.reading() as txn:
        assert txn.raw.stat(txn._changes)["entries"] == CHANGE_LOG_KEPT


def test_a_damaged_change_log_row_reads_as_not_logged(make_db: Callable[..., PersistDict]) -> None:
    """Change-log rows carry no checksum: one whose lengths run past its end counts as not logged
    (the reader empties its cache) instead of raising on the read path."""
    db = make_db()
    db["a"] = 1
    storage = db._engine.storage
    last = storage.last_txnid()
    with storage.env.begin(write=True) as raw:
        raw.put(change_log_slot(last), encode_seq(last) + b"\x05\x00\x00\x00sa", db=storage._dbs[4])
    with storage.reading() as txn:
        assert txn.logged_changes(last) is None
    assert storage.changes_since(last - 1) is None


def test_change_log_rows_ahead_of_the_txn_id_are_dropped_at_open(make_db: Callable[..., PersistDict]) -> None:
    """A row for a txn id not reached yet (left by a store whose ids went back) is dropped when the
    store is opened, so it can never vouch for an unlogged commit that later takes that id."""
    db = make_db()
    db["a"] = 1
    storage = db._engine.storage
    last = storage.last_txnid()
    with storage.env.begin(write=True) as raw:  # commit last + 1, not logged; a stray row for last + 3
        raw.put(change_log_slot(last + 3), encode_seq(last + 3), db=storage._dbs[4])
    db.close()
    db = make_db()  # opening drops the row: commit last + 2
    storage = db._engine.storage
    with storage.env.begin(write=True) as raw:  # commit last + 3, not logged
        raw.put(b"x", b"", db=storage._dbs[3])
    assert storage.last_txnid() == last + 3
    assert storage.changes_since(last + 2) is None


def test_get_many_uses_the_front_cache_consistently(make_db: Callable[..., PersistDict]) -> None:
    """get_many serves cached keys, reads the rest, and returns keys in the order asked."""
    db = make_db()
    db.set_many({"a": 1, "b": 2, "c": 3})
    for _ in range(3):
        db["a"], db["b"]
    hits = db.stats()["front_cache_hits"]
    assert db.get_many(["b", "a"]) == {"b": 2, "a": 1}
    assert db.stats()["front_cache_hits"] == hits + 2
    assert list(db.get_many(["c", "missing", "a"]).items()) == [("c", 3), ("a", 1)]
    db["a"] = 10
    assert db.get_many(["a", "b", "c"]) == {"a": 10, "b": 2, "c": 3}


def test_drop_unreadable_keeps_hash_chains_reachable(make_db: Callable[..., PersistDict]) -> None:
    """Dropping undecodable entries from colliding hash chains leaves every healthy entry reachable."""
    import pickle

    def loads(data: bytes) -> object:
        value = pickle.loads(data)
        if value == "BAD":
            raise ValueError("cannot decode")
        return value

    db = make_db(key_size_limit=1, value_unserializer=loads)
    keys = [f"key-{i}-" + "y" * 30 for i in range(300)]
    db.update({key: ("BAD" if i % 7 == 0 else i) for i, key in enumerate(keys)})
    report = db.check(drop_unreadable=True)
    assert report.dropped == len(range(0, 300, 7))
    assert db.check().ok
    assert all(db[key] == i for i, key in enumerate(keys) if i % 7)
    assert len(db) == 300 - report.dropped


def _chain_of(db: PersistDict, first: str, more: int) -> tuple[bytes, list[str]]:
    """The base slot of ``first``'s collision chain (key_size_limit=1) and ``more`` keys that share it."""
    keys, slots = db._keys, db._engine.slots
    base = slots.slot(keys.lookup(first))
    return base, [f"k{i}" for i in range(200_000) if slots.slot(keys.lookup(f"k{i}")) == base][:more]


def test_repair_rewrites_a_collision_chain_that_lost_a_record(make_db: Callable[..., PersistDict]) -> None:
    """A chain of colliding hashes whose first record is lost (a damaged page, say): the records
    after the gap are listed but unreachable, and writing one of their keys adds a second record.
    check() reports both; repair rewrites the chain from its start, keeping the newer record."""
    db = make_db(key_size_limit=1, caching=False)
    base, same_chain = _chain_of(db, "first", 3)
    db["first"] = 0
    db.update({key: i for i, key in enumerate(same_chain, 1)})  # probe positions 1, 2, 3
    db._engine.storage.write(lambda txn: txn.raw.delete(base, b"", txn._records))  # lose position 0
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
    from PersistDict.engines.lmdb.slots import probe_slot
    from PersistDict._codec.record import pack_record, unpack_record

    db = make_db(key_size_limit=1, caching=False)
    base, (k, y) = _chain_of(db, "x", 2)
    db["x"], db[k], db[y] = 0, "old", "y"  # positions 0, 1, 2

    def damage(txn) -> None:  # type: ignore[no-untyped-def]
        txn.raw.delete(base, b"", txn._records)  # lose position 0
        older = unpack_record(txn.record(probe_slot(base, 1)))
        txn.put_record(probe_slot(base, 1), pack_record(older.seq, older.ctime, older.mtime, 0.0, 0,
                                                        older.lookup, older.exact, b"not a pickle"), older.lookup)
        kept = unpack_record(txn.record(probe_slot(base, 2)))
        txn.put_order(kept.seq, _table.pack_order(0.0, False, probe_slot(base, 5)))  # y's row: a stale slot

    db._engine.storage.write(damage)
    db[k] = "new"  # unreachable behind the gap, so written again, at position 0
    db.check(repair=True, drop_unreadable=True)
    assert db.check().ok
    assert db.get(y) == "y" and db.get(k) == "new" and sorted(db) == sorted([k, y])


def test_drop_unreadable_in_a_chain_with_a_corrupted_record_after_an_undecodable_one(
        make_db: Callable[..., PersistDict]) -> None:
    """Dropping an undecodable record closes its chain's gap by moving the chain's last record, which
    here fails its checksum: the corrupted records are dropped first, from the end of the table."""
    from PersistDict._codec.record import pack_record, unpack_record

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

    db._engine.storage.write(damage)
    report = db.check(drop_unreadable=True)
    assert report.dropped == 2 and len(db) == 0 and db.check().ok


def test_setdefault_respects_bounds_and_raw_values(make_db: Callable[..., PersistDict]) -> None:
    """setdefault keeps max_items, and in raw mode an unstorable default matters only if the key is missing."""
    bounded = make_db(max_items=2)
    bounded["a"], bounded["b"] = 1, 2
    assert bounded.setdefault("c", 3) == 3 and len(bounded) == 2 and "c" in bounded
    raw = make_db(path=make_db().path + "-raw", value_serializer=None, value_unserializer=None)
    raw["k"] = "v"
    assert raw.setdefault("k") == "v"
    with pytest.raises(TypeError):
        raw.setdefault("new")
    assert "new" not in raw


def test_many_front_cache_hits_all_count_as_reads(make_db: Callable[..., PersistDict]) -> None:
    """More distinct cached keys than the hit buffer holds: every one read recently survives expiry."""
    clock = Clock()
    db = make_db(expiration_days=1, clock=clock)
    keys = [("k", i) for i in range(5000)]  # tuple keys take the locked cache path
    db.set_many({key: i for i, key in enumerate(keys)})
    for _ in range(2):  # two misses: admitted to the front cache
        for key in keys:
            db[key]
    clock.now += 0.8 * DAY
    for key in keys:
        db[key]  # served by the front cache
    assert db.stats()["front_cache_hits"] >= 5000
    clock.now += 0.5 * DAY
    db.run_maintenance()
    assert len(db) == 5000
