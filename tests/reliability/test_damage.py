"""Damaged files: each damaged copy of a known store is opened and read in a child process, which
must not die by a signal; a read returns the right value, an honest miss or a PersistDictError."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from . import _damage as dm
from . import _harness as h

pytestmark = pytest.mark.slow

ROWS = [("records", b"ss42"), ("records", None), ("order", b"\x00" * 7 + b"\x05"), ("atimes", None),
        ("changes", None), ("meta", b"called"), ("meta", b"format"), ("meta", b"ttl_writes")]


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[Any, Any], dict[Any, list[Any]]]:
    path = tmp_path_factory.mktemp("damage") / "base"
    oracle, either = dm.build(path)
    return path, oracle, either


def run_case(base: tuple[Path, dict[Any, Any], dict[Any, list[Any]]], where: Path, damage: Any,
             repairable: bool = False) -> dict[str, Any]:
    """Damage a copy of ``base`` with ``damage(path)`` (which may return a never-written key its
    damage makes reachable), read it in a probe, and check what every read answered."""
    path, oracle, either = base
    copy = dm.copy_of(path, where / "db")
    extra = damage(copy)
    case = dm.write_case(copy, oracle, either, repairable, (extra,) if extra else ())
    report = h.probe("read_damaged", {"case": case})
    h.FIGURES["damaged-file cases"] += 1
    assert not report["foreign"], "errors that are not PersistDictErrors:\n" + "\n".join(report["foreign"][:5])
    assert not report["wrong"], "wrong values read:\n" + "\n".join(report["wrong"][:10])
    assert not report["leaks"], report["leaks"][:5]
    if repairable:
        assert not report.get("raised"), "\n".join(report["raised"])
    return report


@pytest.mark.parametrize("fraction", [0, 0.5])
def test_truncated_data_file_is_refused(base, tmp_path, fraction):
    """A data file truncated to zero or to half is refused with CorruptedDatabaseError before any read."""
    report = run_case(base, tmp_path, lambda p: dm.truncate(p, fraction))
    assert report["refused_with"] == "CorruptedDatabaseError"


def test_deleted_data_file_is_refused(base, tmp_path):
    """A store whose marker is there but whose data file is gone is refused with CorruptedDatabaseError (defect 8)."""
    report = run_case(base, tmp_path, lambda p: (p / dm.DATA).unlink())
    assert report["refused_with"] == "CorruptedDatabaseError"


@pytest.mark.parametrize("pages", [(0,), (1,), (0, 1)])
def test_garbage_meta_pages(base, tmp_path, pages):
    """Garbage over one meta page reads right or errs; over both, the store is refused with a PersistDictError."""
    report = run_case(base, tmp_path, lambda p: dm.garbage_meta_pages(p, pages))
    if len(pages) == 2:
        assert report["refused_with"] is not None


def test_flipped_byte_in_a_value_is_caught_and_repaired(base, tmp_path):
    """A flipped byte in a value raises CorruptedRecordError, and repair leaves a clean, writable store."""
    report = run_case(base, tmp_path, dm.flip_value_byte, repairable=True)
    assert report["refused_with"] is None and report["errors"] > 0


def test_flipped_byte_in_a_node_key_never_serves_another_keys_value(base, tmp_path):
    """A node key damaged into a never-written key never serves the other key's value (defect 3)."""
    run_case(base, tmp_path, dm.flip_node_key, repairable=True)


@pytest.mark.parametrize("how", ["flip", "garbage", "short"])
@pytest.mark.parametrize("table, row", ROWS, ids=[f"{t}-{r!r}" for t, r in ROWS])
def test_damaged_row_of_each_table(base, tmp_path, table, row, how):
    """A damaged row of any table: right reads or PersistDictErrors; check, repair, maintenance go through (defect 4)."""
    def damage(path: Path) -> None:
        key = row if row is not None else dm.table_rows(path, table)[-1]
        dm.damage_row(path, table, key, how)

    report = run_case(base, tmp_path, damage, repairable=True)
    if report["refused_with"] is not None:  # only the format record may make the store unopenable
        assert row == b"format", f"damage to {table} made the store unopenable: {report['refused_with']}"


@pytest.mark.parametrize("seed", range(h.sized(16, 80)))
def test_random_bytes_at_random_offsets(base, tmp_path, seed):
    """Random bytes at seeded offsets: no signal, no wrong value, only PersistDictErrors."""
    run_case(base, tmp_path, lambda p: dm.random_bytes(p, seed))
