"""Reopening a store with another value codec: a warning, a report, nothing deleted."""

from __future__ import annotations

import warnings
from collections.abc import Callable
from pathlib import Path

import pytest

from PersistDict import CodecMismatchWarning, PersistDict, serializers

ROOT = str(Path(__file__).resolve().parents[1])


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
