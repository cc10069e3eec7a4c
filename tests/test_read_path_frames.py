"""The read path's Python frames, pinned: a change that adds a call to a hot or cold read shows here.

Counts of frames (``sys.setprofile`` 'call' events), never timings: the read path is the product, and
each Python frame costs ~50 ns against a hot hit's ~300 ns. Change a pinned count only on purpose,
with benchmark figures before and after (benchmarks/README.md).
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

import pytest

from PersistDict import PersistDict


def frames_of(read: Callable[..., Any], *args: Any) -> list[str]:
    """The qualified names of the Python functions ``read(*args)`` calls, in order (``read`` itself excluded)."""
    calls: list[str] = []

    def profile(frame: Any, event: str, arg: Any) -> None:
        if event == "call":
            calls.append(frame.f_code.co_qualname if sys.version_info >= (3, 11) else frame.f_code.co_name)

    sys.setprofile(profile)
    try:
        read(*args)
    finally:
        sys.setprofile(None)
    return calls[1:]  # calls[0] is read itself


READS: dict[str, Callable[[PersistDict, str], Any]] = {
    "getitem": lambda d, key: d[key],
    "get": lambda d, key: d.get(key),
    "in": lambda d, key: key in d,
}


def _hot(d: PersistDict) -> str:
    """A key whose value the front cache holds, valid at the store's last commit."""
    d["hot"] = "value"
    for _ in range(3):
        d["hot"]
    return "hot"


def _cold_with_cache(d: PersistDict) -> str:
    """A stored key read for the first time while the front cache is current (the usual cold hit)."""
    for i in range(4):
        d[f"cold{i}"] = i
    _hot(d)
    return "cold2"


@pytest.mark.parametrize(("case", "read", "expected"), [
    ("hot", "getitem", 2), ("hot", "get", 2), ("hot", "in", 2),
    ("cold", "getitem", 5), ("cold", "get", 5), ("cold", "in", 2),
])
def test_read_path_frames_with_front_cache(make_db: Callable[..., PersistDict], case: str, read: str,
                                           expected: int) -> None:
    """Hot hit: the method and _hot_entry. Cold hit, cache current: d[k]/get also try _hot_entry, then _read, the storage read and the miss note; `in` only looks in the cache's dict, then reads the expiry."""
    d = make_db()
    key = (_hot if case == "hot" else _cold_with_cache)(d)
    names = frames_of(READS[read], d, key)
    assert len(names) == expected, names


@pytest.mark.parametrize(("read", "expected"), [("getitem", 3), ("get", 3), ("in", 2)])
def test_read_path_frames_without_front_cache(make_db: Callable[..., PersistDict], read: str, expected: int) -> None:
    """With caching=False a read is the method, the slow path and one storage call (in: no slow path)."""
    d = make_db(caching=False)
    d["key"] = "value"
    names = frames_of(READS[read], d, "key")
    assert len(names) == expected, names
