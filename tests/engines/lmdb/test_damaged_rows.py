"""Damaged rows of every table: each gives a PersistDictError naming the table and row, check()
reports it, check(repair=True) repairs it, and a maintenance pass skips it and goes on."""

from __future__ import annotations

import json
import random
import struct
import time
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import lmdb
import pytest
from loguru import logger

from PersistDict import PersistDict, PersistDictError
from ._lmdb_access import TABLES, encode_seq, engine_of

DAY = 86400.0


def _write_row(path: Path, table: str, key: bytes, value: bytes) -> None:
    """Overwrite one row of a closed store's table, straight through py-lmdb."""
    env = lmdb.open(str(path), max_dbs=len(TABLES), subdir=True)
    try:
        with env.begin(write=True) as txn:
            txn.put(key, value, db=env.open_db(table.encode(), txn=txn))
    finally:
        env.close()


def _read_rows(path: Path, table: str) -> dict[bytes, bytes]:
    env = lmdb.open(str(path), max_dbs=len(TABLES), subdir=True, readonly=True)
    try:
        with env.begin() as txn:
            return {bytes(k): bytes(v) for k, v in txn.cursor(db=env.open_db(table.encode(), txn=txn))}
    finally:
        env.close()


def _build(path: Path) -> None:
    """Three entries unused for 10 days, five fresh ones (k0 and k3 read), one with a TTL."""
    ten_days_ago = time.time() - 10 * DAY
    old = PersistDict(path, background_thread="disabled", clock=lambda: ten_days_ago)
    old.update({"old1": 1, "old2": 2, "old3": 3})
    old.close()
    db = PersistDict(path, background_thread="disabled")
    db.update({f"k{i}": i for i in range(5)})
    db.set("t", "ttl", ttl=3600)
    assert db["k0"] == 0 and db["k3"] == 3 and db["old2"] == 2
    db.flush_atimes()
    db.close()


def _seq_of(path: Path, slot: bytes) -> bytes:
    """The order key of the entry stored at ``slot``."""
    return next(seq for seq, row in _read_rows(path, "order").items() if row.endswith(slot))


def _garbage(n: int) -> bytes:
    return random.Random(n).randbytes(n)


def _damages(path: Path) -> dict[str, tuple[str, bytes, bytes]]:
    """name -> (table, key, value) of each damage tried: too short, too long, garbage, bad keys."""
    record = _read_rows(path, "records")[b"sk3"]
    k3, t = _seq_of(path, b"sk3"), _seq_of(path, b"st")
    order_ttl_row = _read_rows(path, "order")[t]
    changes = _read_rows(path, "changes")
    ring_key, ring_row = max(changes.items())
    fmt = _read_rows(path, "meta")[b"format"]
    return {
        "records-short": ("records", b"sk3", b"12345"),
        "records-long": ("records", b"sk3", record + b"xx"),
        "records-garbage": ("records", b"sk3", _garbage(len(record))),
        "order-empty": ("order", k3, b""),
        "order-short": ("order", k3, b"\x00abc"),
        "order-long": ("order", t, order_ttl_row + b"zz"),
        "order-garbage": ("order", t, b"\x00" + b"\xff" * 8 + b"\x09" + b"st"),  # NaN expiry, unknown flag
        "order-key": ("order", b"\x00\x05", b"sk1"),
        "atimes-short": ("atimes", k3, b"12345"),
        "atimes-long": ("atimes", k3, struct.pack("<d", time.time()) + b"!"),
        "atimes-garbage": ("atimes", k3, b"\xff" * 8),  # a NaN
        "atimes-key": ("atimes", b"\x01\x02\x03", struct.pack("<d", time.time())),
        "meta-format-short": ("meta", b"format", b""),
        "meta-format-long": ("meta", b"format", fmt + b"}junk"),
        "meta-format-garbage": ("meta", b"format", _garbage(40)),
        "meta-ttl-garbage": ("meta", b"ttl_writes", b"\xfe\x01"),
        "meta-lease-garbage": ("meta", b"maintenance_lease", b"\xff\xfe|nan"),
        "changes-short": ("changes", ring_key, b"123"),
        "changes-long": ("changes", ring_key, ring_row + b"\x07"),
        "changes-garbage": ("changes", ring_key, _garbage(37)),
    }


DAMAGES = [  # the names _damages makes
    "records-short", "records-long", "records-garbage", "order-empty", "order-short", "order-long",
    "order-garbage", "order-key", "atimes-short", "atimes-long", "atimes-garbage", "atimes-key",
    "meta-format-short", "meta-format-long", "meta-format-garbage", "meta-ttl-garbage",
    "meta-lease-garbage", "changes-short", "changes-long", "changes-garbage",
]


def _tolerated(call: Callable[[], Any]) -> Any:
    """What ``call`` returns, or the PersistDictError it raises (anything else fails the test)."""
    try:
        return call()
    except PersistDictError as exc:
        return exc


@pytest.fixture
def warnings_logged() -> Iterator[list[str]]:
    """The library's loguru warnings, while the test runs."""
    messages: list[str] = []
    logger.enable("PersistDict")
    sink = logger.add(lambda m: messages.append(str(m)), level="WARNING", format="{name} {message}")
    yield messages
    logger.remove(sink)
    logger.disable("PersistDict")


def test_a_short_access_time_row_breaks_neither_check_nor_maintenance_nor_items(db_path: Path) -> None:
    """The issue's repro: an atimes row of 5 bytes gives check() a report naming it, repair fixes
    it, run_maintenance() and items() work (no struct.error)."""
    _build(db_path)
    _write_row(db_path, "atimes", _seq_of(db_path, b"sk3"), b"12345")
    db = PersistDict(db_path, background_thread="disabled")
    try:
        assert db["k1"] == 1
        report = db.check()
        assert not report.ok and report.damaged_rows == 1
        assert "table 'atimes', row of seq" in report.damaged[0] and "12345" not in report.damaged[0]
        with pytest.raises(PersistDictError, match="table 'atimes', row of seq"):
            db.metadata("k3")
        db.run_maintenance()
        assert dict(db.items())["k3"] == 3
        fixed = db.check(repair=True, drop_unreadable=True)
        assert fixed.repaired >= 1 and fixed.dropped == 0
        assert db.check().ok and db["k3"] == 3 and db.metadata("k3").ctime
    finally:
        db.close()


@pytest.mark.parametrize("damage", DAMAGES)
def test_every_damaged_row_gives_persistdict_errors_a_report_and_a_repair(db_path: Path, damage: str) -> None:
    """Each damaged row of each table: every call returns or raises a PersistDictError, check()
    reports it, maintenance still expires the other stale entries, and check(repair=True,
    drop_unreadable=True) leaves a clean store that keeps the undamaged entries."""
    _build(db_path)
    table, key, value = _damages(db_path)[damage]
    _write_row(db_path, table, key, value)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a damaged format row warns at open: tested below
        db = PersistDict(db_path, background_thread="disabled", expiration_days=1)
    try:
        assert db.get("k1") == 1 and db["k2"] == 2
        for call in (lambda: db.get("k3"), lambda: len(db), lambda: list(db), lambda: list(db.items()),
                     lambda: list(db.values()), lambda: db.metadata("k0"), lambda: db.metadata("k3"),
                     lambda: "k3" in db, lambda: db.get_many(["k1", "k3"])):
            _tolerated(call)
        report = db.check()
        with engine_of(db).reading() as txn:
            healed = txn.row(table, key) != value  # the open drops change-log rows it cannot date
        assert not report.ok or (table == "changes" and healed), damage
        for line in report.damaged:
            assert f"table {table!r}" in line and repr(value) not in line
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the records/order count mismatch alert
            db.run_maintenance()
        assert "old1" not in db and "old3" not in db  # expiry went on past the damage
        assert isinstance(db.expire(), int)
        db.check(repair=True, drop_unreadable=True)
        assert db.check().ok, damage
        assert db["k1"] == 1 and db["k4"] == 4 and db["old2"] == 2  # read 10 days after its write
        if table != "records":  # only a damaged record loses its entry
            assert db["k3"] == 3 and db["t"] == "ttl"
        db["new"] = "x"
        db.set("new_ttl", "y", ttl=60)
    finally:
        db.close()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # repaired: reopens without an alert
        reopened = PersistDict(db_path, background_thread="disabled")
    try:
        assert reopened["new"] == "x" and reopened.check().ok
    finally:
        reopened.close()


def test_damaged_rows_are_named_by_table_and_row_in_errors(db_path: Path) -> None:
    """Reading through a damaged order row raises CorruptedRecordError naming the table and seq."""
    _build(db_path)
    seq = _seq_of(db_path, b"sk3")
    _write_row(db_path, "order", seq, b"\x00abc")
    db = PersistDict(db_path, background_thread="disabled")
    try:
        number = struct.unpack(">Q", seq)[0]
        for call in (lambda: list(db), lambda: list(db.items())):
            with pytest.raises(PersistDictError, match=f"table 'order', row of seq {number}, is damaged"):
                call()
    finally:
        db.close()


def test_a_maintenance_pass_skips_damaged_rows_with_an_alert_and_expires_the_rest(
        db_path: Path, warnings_logged: list[str]) -> None:
    """Stale entries with a damaged order row or access time are skipped with a warning under the
    library's logger and counted as integrity alerts; the other stale entry is expired."""
    _build(db_path)
    _write_row(db_path, "order", _seq_of(db_path, b"sold1"), b"\x00\x01")
    _write_row(db_path, "atimes", _seq_of(db_path, b"sold2"), b"\x01")
    _write_row(db_path, "order", encode_seq(2) + b"\x01", b"sk1")  # a key that is no seq, among the seqs
    db = PersistDict(db_path, background_thread="disabled", expiration_days=1)
    try:
        with pytest.warns(RuntimeWarning, match="order rows: run check"):  # the extra order row
            db.run_maintenance()
        assert "old3" not in db and "old1" in db and "old2" in db  # `in` is no access
        alerts = [m for m in warnings_logged if "maintenance skipped a damaged row" in m]
        assert len(alerts) == 3 and db.counters["integrity_alerts"] == 3 + 1
        assert all(m.startswith("PersistDict") for m in alerts)
        assert any("table 'order'" in m for m in alerts) and any("table 'atimes'" in m for m in alerts)
        db.check(repair=True)
        db.run_maintenance()
        assert "old1" not in db and "old2" not in db  # repaired: expired like the rest
    finally:
        db.close()


def test_an_expired_entry_whose_record_is_corrupted_is_skipped_and_the_sweep_goes_on(db_path: Path) -> None:
    """A TTL-expired entry whose record fails its checksum stays (only drop_unreadable deletes it);
    the sweep's other removals in the same chunk are kept."""
    db = PersistDict(db_path, background_thread="disabled")
    db.set_many({f"t{i}": i for i in range(5)}, ttl=1)
    db.close()
    _write_row(db_path, "records", b"st2", b"x" * 80)
    now = time.time() + 10
    db = PersistDict(db_path, background_thread="disabled", clock=lambda: now)
    try:
        assert db.expire() == 4
        assert db.check().corrupted == [b"st2".hex()]
    finally:
        db.close()


def test_a_damaged_format_row_opens_with_a_warning_and_repair_rewrites_it(db_path: Path) -> None:
    """A store whose format row is damaged opens (its codecs unchecked) with a warning naming the
    row; check(repair=True) writes this instance's format back."""
    _build(db_path)
    _write_row(db_path, "meta", b"format", b"\x00\xff")
    with pytest.warns(RuntimeWarning, match="table 'meta', row 'format', is damaged"):
        db = PersistDict(db_path, background_thread="disabled")
    try:
        assert db["k1"] == 1
        assert db.check(repair=True).repaired >= 1
    finally:
        db.close()
    assert json.loads(_read_rows(db_path, "meta")[b"format"])["format"] == 1


def test_a_bounded_store_keeps_evicting_past_damaged_rows(db_path: Path) -> None:
    """Eviction passes over entries whose order row or access time is damaged (no struct.error):
    writes to a full bounded store go on, and the bound holds."""
    _build(db_path)
    _write_row(db_path, "order", _seq_of(db_path, b"sk2"), b"\x00ab")
    _write_row(db_path, "atimes", _seq_of(db_path, b"sk3"), b"\x01\x02")
    db = PersistDict(db_path, background_thread="disabled", max_items=9)
    try:
        for i in range(20):
            db[f"new{i}"] = i
        assert len(db) == 9 and db["new19"] == 19
        assert db.counters["evicted"] == 20
    finally:
        db.close()
