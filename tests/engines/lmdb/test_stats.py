"""stats() of the LMDB engine: the file size, map size and reader slots beside the counters."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from PersistDict import PersistDict


ROOT = str(Path(__file__).resolve().parents[3])


def test_stats_report_the_file_the_map_and_the_readers(make_db: Callable[..., PersistDict]) -> None:
    """Beside the counters, stats() reports the bytes on disk, the map size and the reader slots in use."""
    db = make_db()
    db["a"] = 1
    db["a"]
    del db["a"]
    stats = db.stats()
    assert stats["entries"] == 0 and stats["bytes_on_disk"] > 0 and stats["map_size"] > 0
    assert stats["readers_in_use"] >= 0
