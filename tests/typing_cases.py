"""Typed uses of PersistDict, checked by mypy --strict in tests/test_typing.py (never run).

A line ending in ``# E: <code>`` must raise exactly that mypy error; every other line
must type-check.
"""

from __future__ import annotations

from typing import Any

from typing_extensions import assert_type

from PersistDict import Metadata, PersistDict

counts = PersistDict[str, int]("/db")
assert_type(counts, PersistDict[str, int])
assert_type(counts["k"], int)
assert_type(counts.get("k"), int | None)
assert_type(counts.get("k", 0), int)
assert_type(counts.get("k", "none"), int | str)
assert_type(counts.pop("k"), int)
assert_type(counts.pop("k", None), int | None)
assert_type(counts.setdefault("k", 1), int)
assert_type(counts.popitem(), tuple[str, int])
assert_type(counts.get_many(["a", "b"]), dict[str, int])
assert_type(counts.copy(), dict[str, int])
assert_type(counts | {"b": 2}, dict[str, int])
assert_type(counts.metadata("k"), Metadata)
counts["k"] = 1
counts.set("k", 2, ttl=60)
counts.set_many({"a": 1, "b": 2})
counts.update({"c": 3}, d=4)
counts.touch("k")
del counts["k"]
for key, value in counts.items():
    assert_type(key, str)
    assert_type(value, int)
for key in counts:
    assert_type(key, str)
with counts.transaction() as txn:
    assert_type(txn, PersistDict[str, int])
with counts as same:
    assert_type(same, PersistDict[str, int])
assert_type(counts(a=1), PersistDict[str, int])

vectors: PersistDict[str, list[float]] = PersistDict("/db2")
assert_type(vectors["v"], list[float])
vectors["v"] = [0.1, 0.2]

anything = PersistDict("/db3")  # no annotation needed: keys and values are Any
assert_type(anything, PersistDict[Any, Any])
anything[("a", 1)] = {"any": "value"}

assert_type(counts.background_timeout, int | float)
assert_type(counts.key_size_limit, int)

text: str = counts.get("k")  # E: assignment
number: int = counts.get("k")  # E: assignment
counts["k"] = "one"  # E: assignment
assert_type(counts.incr("k"), int | float)
assert_type(counts.version("k"), int)
assert_type(counts.compare_and_set("k", 1, None), bool)
assert_type(counts.get_or_set("k", lambda: 1), int)
with counts.track_changes("k", default=0) as tracked:
    assert_type(tracked, int)
with counts.lock("job", ttl=5) as held:
    assert_type(held.renew(), bool)


@counts.memoize(ttl=60)
def doubled(x: int) -> int:
    return 2 * x


assert_type(doubled(2), int)
assert_type(doubled.cache_key(2), tuple[Any, ...])
counts.compare_and_set("k", "one", None)  # E: arg-type
counts.get_or_set("k", str)  # E: arg-type
counts[1] = 1  # E: index
counts.set("k", "one")  # E: arg-type
counts.set_many({"k": "one"})  # E: arg-type
counts.update(k="one")  # E: arg-type
del counts[1]  # E: arg-type
vector: list[float] = counts["k"]  # E: assignment
counts.background_timeout = 9  # E: misc


async def async_cases() -> None:
    """The async methods are generic in K and V like their sync twins."""
    assert_type(await counts.aget("k"), int | None)
    assert_type(await counts.aget("k", 0), int)
    assert_type(await counts.acontains("k"), bool)
    assert_type(await counts.aget_many(["k"]), dict[str, int])
    assert_type(await counts.adelete("k"), bool)
    assert_type(await counts.apop("k"), int)
    await counts.aset("k", 1, ttl=5)
    await counts.aset("k", "one")  # E: arg-type
    async for key in counts.akeys(chunk=64):
        assert_type(key, str)
    async for key, value in counts.aitems():
        assert_type(value, int)
