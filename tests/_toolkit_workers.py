"""Worker functions of the toolkit process tests (tests/test_toolkit_processes.py): importable by name
so that the "spawn" start method finds them."""

from __future__ import annotations

from typing import Any

from _workers import open_db


def incr_worker(path: str, key: str, times: int, delta: Any, barrier: Any) -> None:
    """Increment ``key`` by ``delta`` ``times`` times, after every worker is ready."""
    d = open_db(path)
    barrier.wait()
    for _ in range(times):
        d.incr(key, delta)
    d.close()
