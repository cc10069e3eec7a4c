"""Counting the entries an engine reads (not timing it): what proves a lookup reads only what it should."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from PersistDict import PersistDict
from PersistDict.engines.lmdb.txn import Txn
from PersistDict.engines.memory import MemoryEngine


@contextmanager
def counted_entry_reads(db: PersistDict) -> Iterator[list[int]]:
    """Counts, in ``count[0]``, the entries the engine reads while listing keys by prefix: LMDB's
    records stepped over by its range scans (Txn.iter_records_under), the memory engine's records
    looked up, the records Redis's prefix script reads (it reports how many: HGETs on the server).
    Nothing else reads LMDB's records table during a prefix lookup."""
    count = [0]
    engine = db._engine
    if type(engine).__name__ == "RedisEngine":  # not imported: redis-py is an optional extra
        from PersistDict.engines.redis.operations import PREFIXED_SCRIPT

        real_run = engine.run_script

        def counting_run(name: str, keys: Any, args: Any) -> Any:
            result = real_run(name, keys, args)
            if name == PREFIXED_SCRIPT:
                count[0] += int(result[1])
            return result

        engine.run_script = counting_run
        try:
            yield count
        finally:
            del engine.run_script  # the class's method again
        return
    if isinstance(engine, MemoryEngine):
        class CountingRecords(dict):  # type: ignore[type-arg]
            def __getitem__(self, key: Any) -> Any:
                count[0] += 1
                return super().__getitem__(key)

        real = engine.records
        engine.records = CountingRecords(real)
        try:
            yield count
        finally:
            engine.records = real
        return
    original = Txn.iter_records_under

    def counting(txn: Txn, prefix: bytes) -> Iterator[Any]:
        for row in original(txn, prefix):
            count[0] += 1
            yield row

    Txn.iter_records_under = counting  # type: ignore[method-assign]
    try:
        yield count
    finally:
        Txn.iter_records_under = original  # type: ignore[method-assign]
