"""Stores written by an earlier version open and read the same: the on-disk format did not change."""

from __future__ import annotations

import tarfile
from pathlib import Path

from PersistDict import PersistDict

DATA = Path(__file__).resolve().parents[2] / "data"


def test_a_store_written_before_the_engine_boundary_opens_and_reads_the_same(tmp_path: Path) -> None:
    """A store made by 945e056 (the last commit before issues 15 and 16; see tests/data) reads back
    every key kind, the hashed slot of a long key, a TTL and the order, and check() finds it clean."""
    path = tmp_path / "store"
    with tarfile.open(DATA / "store-945e056.tar.gz") as tar:
        tar.extractall(path, filter="data") if hasattr(tarfile, "data_filter") else tar.extractall(path)
    path.chmod(0o700)
    for child in path.iterdir():
        child.chmod(0o600)
    with PersistDict(path, background_thread="disabled", clock=lambda: 1_700_000_100.0) as d:
        expected = {"str": "value", 42: [1, 2, 3], ("tuple", 1): {"nested": True},
                    "long:" + "x" * 600: "hashed slot", "ttl": "lives until 1_800_000_000",
                    **{f"k{i}": i for i in range(50) if i != 7}}
        assert d.copy() == expected
        assert list(d) == list(expected)
        assert d.check().ok
    with PersistDict(path, background_thread="disabled", clock=lambda: 1_800_000_001.0) as d:
        assert "ttl" not in d and "str" in d
