"""Numeric options: NaN, infinities, bools and out-of-range values are refused, naming the option,
before anything is created or changed on disk."""

from __future__ import annotations

import hashlib
import math
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from PersistDict import PersistDict

NON_FINITE = [math.nan, math.inf, -math.inf]
FLOAT_OPTIONS = ["expiration_days", "background_timeout", "maintenance_interval", "atime_flush_interval"]
INT_OPTIONS = ["key_size_limit", "cache_max_entries", "cache_max_bytes", "map_size", "max_items", "max_bytes"]
# values each option refuses besides non-finite ones and bools
OUT_OF_RANGE: dict[str, list[Any]] = {
    "expiration_days": [-1, -0.5],
    "background_timeout": [threading.TIMEOUT_MAX],  # below 5 counts as 5 (0.2.x): no error
    "maintenance_interval": [0, -1],
    "atime_flush_interval": [0, -1, threading.TIMEOUT_MAX * 2],
    "key_size_limit": [0, -1],
    "cache_max_entries": [0, -1],
    "cache_max_bytes": [0, -1],
    "map_size": [0, 1 << 19],
    "max_items": [0, -1],
    "max_bytes": [0, 100],
}


def _snapshot(directory: Path) -> dict[str, str]:
    """Every file under ``directory`` -> digest of its bytes ({} if it does not exist)."""
    if not directory.exists():
        return {}
    return {str(p.relative_to(directory)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(directory.rglob("*")) if p.is_file()}


def _refused(db_path: Path, error: type[Exception], name: str, **options: Any) -> None:
    with pytest.raises(error, match=name):
        PersistDict(db_path, background_thread=True, **options)


@pytest.mark.parametrize("value", NON_FINITE)
@pytest.mark.parametrize("name", FLOAT_OPTIONS)
def test_a_non_finite_float_option_is_refused_and_no_store_is_created(db_path: Path, name: str, value: float) -> None:
    """NaN and infinities of every float option raise ValueError naming it; nothing is created."""
    _refused(db_path, ValueError, name, **{name: value})
    assert not db_path.exists()


@pytest.mark.parametrize("value", NON_FINITE)
@pytest.mark.parametrize("name", INT_OPTIONS)
def test_a_non_finite_value_of_an_int_option_is_refused_and_no_store_is_created(
        db_path: Path, name: str, value: float) -> None:
    """NaN and infinities of every int option raise TypeError naming it; nothing is created."""
    _refused(db_path, TypeError, name, **{name: value})
    assert not db_path.exists()


@pytest.mark.parametrize("name", FLOAT_OPTIONS + INT_OPTIONS)
def test_a_bool_is_not_a_number_for_any_option(db_path: Path, name: str) -> None:
    """True and False are refused as numbers (TypeError naming the option); expiration_days=False
    stays 0.2.x's "no expiry" (its annotation admitted it), True is refused there too."""
    for value in (True,) if name == "expiration_days" else (True, False):
        _refused(db_path, TypeError, name, **{name: value})
    assert not db_path.exists()


def test_expiration_days_false_means_no_expiry_as_in_0_2(make_db: Callable[..., PersistDict]) -> None:
    """expiration_days=False opens a store that never expires unused entries, like 0 and None."""
    assert make_db(expiration_days=False).expiration_days == 0


@pytest.mark.parametrize("name", sorted(OUT_OF_RANGE))
def test_an_option_out_of_its_range_is_refused_and_an_existing_store_is_unchanged(
        db_path: Path, make_db: Callable[..., PersistDict], name: str) -> None:
    """Negative, zero where it means nothing, or beyond what a wait can take: ValueError naming
    the option, and the files of an existing store stay byte for byte as they were."""
    db = make_db()
    db["k"] = 1
    db.close()
    before = _snapshot(db_path)
    for value in OUT_OF_RANGE[name] + NON_FINITE * (name in FLOAT_OPTIONS):
        _refused(db_path, ValueError, name, **{name: value})
    assert _snapshot(db_path) == before


def test_valid_edge_values_are_accepted_and_work(make_db: Callable[..., PersistDict]) -> None:
    """0 and None still mean no expiry (0.2.x), a small background_timeout is clamped, ints of any
    size and floats within range are accepted."""
    for days in (0, None, 0.0):
        db = make_db(expiration_days=days)
        assert db.expiration_days == 0.0
        db.close()
    db = make_db(background_timeout=-3, maintenance_interval=10**6, atime_flush_interval=0.5,
                 expiration_days=10**9, max_items=10**30)
    assert db._maintenance.timeout == 5.0
    db["k"] = 1
    assert db.expire() == 0 and db["k"] == 1


@pytest.mark.parametrize("value", [*NON_FINITE, 0, -1, True])
def test_flush_batch_must_be_a_positive_count(make_db: Callable[..., PersistDict], value: Any) -> None:
    """flush_atimes(batch) refuses what is not a positive count, naming batch, and flushes nothing."""
    db = make_db()
    db["k"] = 1
    assert db["k"] == 1
    with pytest.raises((ValueError, TypeError), match="batch"):
        db.flush_atimes(value)
    assert len(db._touched) == 1


def test_a_bool_ttl_is_refused(make_db: Callable[..., PersistDict]) -> None:
    """ttl=True is no number of seconds: TypeError naming ttl, nothing written."""
    db = make_db()
    for write in (lambda: db.set("k", 1, ttl=True), lambda: db.set_many({"k": 1}, ttl=True)):
        with pytest.raises(TypeError, match="ttl"):
            write()
    assert "k" not in db
