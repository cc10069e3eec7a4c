"""The Redis engine: the engine protocol (engines/base.py) over one namespace of a Redis server,
shared by every process of every host that opens the same URL and namespace.

Reads are single commands (one ``HMGET`` for a cold get: the entry and the clock it is current
at); writes are the Lua scripts of scripts.py (each atomic); ``transaction()`` is txn.py's; prefix
lookups, settings, check and the operations (export, import, backup) are operations.py's. The
change feed (feed.py) tells the front cache what other hosts wrote. Errors are translated at
``command``/``run_script`` (errors.py). redis-py is imported only here, when a ``redis://`` path
is opened.
"""

from __future__ import annotations

import os
import threading
import time
import weakref
from collections.abc import Callable, Sequence
from typing import Any

import redis

from ..._accesses import PendingAccesses
from ..._codec.record import Record, record_length
from ...exceptions import AlreadyCalledError, DatabasePermissionError
from ..base import Bounds, Commit, Item, live
from . import opscripts, scripts
from .errors import server_name, translate_error
from .feed import CHANGES_KEPT, RedisFeed
from .operations import RedisOperations
from .records import pack_record as _pack, unpack_record as _record
from .txn import TABLES as _TABLES, RedisTransactions

_HEADER = scripts.HEADER
_HEADER_SIZE = _HEADER.size
SWEEP_BATCH = 500  # entries one sweep script removes at most (a script blocks the server while it runs)
_BUSY_WAIT = (0.0005, 0.02)  # first and longest sleep while another client's transaction() holds the namespace


class RedisEngine(RedisTransactions, RedisOperations):
    """One namespace of a Redis server."""

    read_only = False  # opened on a read-only replica
    _bounds_text = ""  # the bounds a refused write names (set with its pending accesses)

    def __init__(self, url: str, namespace: str | None = None, client: Any = None, strict: bool = False) -> None:
        if namespace is not None and (not isinstance(namespace, str) or not namespace or "}" in namespace):
            raise ValueError(f"namespace must be a non-empty str without '}}', not {namespace!r}")
        self.namespace = namespace or "default"
        self.owns_client = client is None
        if client is None:
            try:
                client = redis.Redis.from_url(url, socket_connect_timeout=5, socket_timeout=30,
                                              health_check_interval=30)
            except ValueError as exc:
                raise ValueError(f"not a Redis URL: {server_name(url, None)!r} ({exc})") from None
        elif getattr(getattr(client, "connection_pool", None), "connection_kwargs", {}).get("decode_responses"):
            raise ValueError("the Redis client must not decode responses (decode_responses=False): "
                             "PersistDict stores bytes")
        self.client = client
        self.server = server_name(url, client)
        self.prefix = f"pd{{{self.namespace}}}:".encode()  # one hash tag: one Cluster slot per namespace
        self.channel = self.prefix + b"commits"
        self._scripts: dict[str, Any] = {}
        self.accesses = PendingAccesses()
        self._writer = threading.RLock()  # held by this process's transaction() for its block
        self.init_transactions()
        try:  # the clock; also proves the server answers
            if not self.command("HEXISTS", self.table("E"), b""):
                self.command("HSETNX", self.table("E"), b"", 0)
        except DatabasePermissionError:  # a read-only replica: reads only (access times are not stored)
            self.read_only = True
        self.feed = RedisFeed(self, strict)
        _live.add(self)

    # -- plumbing ------------------------------------------------------------------------------

    def table(self, name: str) -> bytes:
        return self.prefix + name.encode()

    def command(self, *args: Any) -> Any:
        try:
            return self.client.execute_command(*args)
        except redis.RedisError as exc:
            raise translate_error(exc, self.server) from None

    def run_script(self, name: str, keys: Sequence[bytes], args: Sequence[Any]) -> Any:
        script = self._scripts.get(name)
        if script is None:
            source = getattr(scripts, name.upper(), None) or getattr(opscripts, name.upper())
            script = self._scripts[name] = self.client.register_script(source)
        try:
            return script(keys=keys, args=args)
        except redis.RedisError as exc:
            raise translate_error(exc, self.server) from None

    def _write(self, name: str, args: Sequence[Any]) -> list[Any]:
        """Run write script ``name`` (its arguments after the prologue's): on the namespace, or on this
        thread's transaction() copies; waits while another client's transaction holds the namespace."""
        delay = _BUSY_WAIT[0]
        while True:
            block = self.block()
            if block is None:
                keys = [*map(self.table, _TABLES), self.table("LOG"), self.table("TXN")]
                prologue = [b"", 1, self.channel, CHANGES_KEPT]
            else:
                keys = [*block.keys, block.changed, self.table("TXN")]
                prologue = [block.token, 0, self.channel, CHANGES_KEPT]
            result = self.run_script(name, keys, [*prologue, *args])
            if result[0] != b"BUSY":
                break
            with self._writer:  # this process's own transaction: wait for its end without polling
                pass
            time.sleep(delay)
            delay = min(delay * 2, _BUSY_WAIT[1])
        status = result[0]
        if status == b"BOUNDS":
            raise ValueError(f"this write's entries alone take {result[1]} entries and {int(result[2])} bytes, "
                             f"more than {self._bounds_text}; it was not made")
        if status == b"CALLED":
            raise AlreadyCalledError("The __call__ method of PersistDict can only be called once. Just like a regular dict.")
        if status != b"OK":
            return result
        clock, wrote = int(result[1]), bool(result[2])
        tracked = block is None
        if tracked and wrote:
            self.feed.saw(clock)
        result[1] = Commit(clock, wrote, tracked, list(result[3]))
        return result

    def _pending(self, bounds: Bounds) -> list[Any]:
        """The access times this process noted but did not store, for an eviction to weigh (none
        without bounds: only eviction reads them)."""
        if bounds.max_items is None and bounds.max_bytes is None:
            return [0]
        noted = [pair for batch in self.accesses.drain(10_000) for pair in batch]
        self._bounds_text = " / ".join(f"{name}={value}" for name, value in
                                       (("max_items", bounds.max_items), ("max_bytes", bounds.max_bytes))
                                       if value is not None)
        return [len(noted), *(value for pair in noted for value in pair)]

    @staticmethod
    def _limits(bounds: Bounds) -> list[int]:
        return [-1 if bounds.max_items is None else bounds.max_items,
                -1 if bounds.max_bytes is None else bounds.max_bytes]

    def _tables(self) -> list[bytes]:
        block = self.block()
        return list(map(self.table, _TABLES)) if block is None else block.keys

    # -- reads ---------------------------------------------------------------------------------

    def get(self, lookup: bytes) -> tuple[int, float, int, Any, int]:
        feed = self.feed
        entries = self.prefix + b"E" if not feed.txn_holders or not feed.in_transaction() else self._tables()[0]
        try:
            raw, clock = self.client.execute_command("HMGET", entries, lookup, b"")
        except redis.RedisError as exc:
            raise translate_error(exc, self.server) from None
        clock = int(clock or 0)
        if clock > feed.clock[0]:  # a read never goes back: later hot reads must not answer older (feed.saw)
            feed.saw(clock)
        if raw is None:
            return -1, 0.0, 0, b"", clock
        seq, _, _, expires, kind, xlen = _HEADER.unpack_from(raw)
        return int(seq), expires, kind, raw[_HEADER_SIZE + xlen:], clock

    def _fetch(self, lookup: bytes) -> bytes | None:
        """The raw record of ``lookup``; the clock read with it moves this process's (see get)."""
        raw, clock = self.command("HMGET", self._tables()[0], lookup, b"")
        self.feed.saw(int(clock or 0))
        return raw  # type: ignore[no-any-return]

    def expires(self, lookup: bytes) -> float | None:
        raw = self._fetch(lookup)
        return None if raw is None else _HEADER.unpack_from(raw)[3]

    def get_many(self, lookups: Sequence[bytes], known_at: int = -1, known: frozenset[int] = frozenset()
                 ) -> tuple[list[Any], int]:
        if not lookups:
            return [], self.feed.last_commit()
        clock, *raws = self.command("HMGET", self._tables()[0], b"", *lookups)
        snapshot = int(clock or 0)
        self.feed.saw(snapshot)
        skip = known if snapshot == known_at else frozenset()
        out: list[Any] = []
        for index, raw in enumerate(raws):
            if raw is None or index in skip:
                out.append(None)
            else:
                seq, _, _, expires, kind, xlen = _HEADER.unpack_from(raw)
                out.append((int(seq), expires, kind, raw[_HEADER_SIZE + xlen:]))
        return out, snapshot

    def count(self) -> int:
        return max(0, int(self.command("HLEN", self._tables()[0])) - 1)

    def counts(self) -> tuple[int, int]:
        entries, order = self._tables()[:2]
        with self.client.pipeline(transaction=True) as pipe:
            pipe.hlen(entries)
            pipe.zcard(order)
            try:
                records, rows = pipe.execute()
            except redis.RedisError as exc:
                raise translate_error(exc, self.server) from None
        return max(0, records - 1), rows

    def _ordered(self, now: float) -> list[Record]:
        """Every live entry in insertion order, in one snapshot (MULTI/EXEC)."""
        entries, order = self._tables()[:2]
        with self.client.pipeline(transaction=True) as pipe:
            pipe.zrange(order, 0, -1)
            pipe.hgetall(entries)
            try:
                lookups, records = pipe.execute()
            except redis.RedisError as exc:
                raise translate_error(exc, self.server) from None
        self.feed.saw(int(records.get(b"", 0)))
        out = []
        for lookup in lookups:
            raw = records.get(lookup)
            if raw is not None:
                record = _record(lookup, raw)
                if live(record.expires, now):
                    out.append(record)
        return out

    def keys(self, now: float, decode_many: Callable[[list[bytes]], list[Any]],
             decode_str_keys: Callable[[list[bytes]], list[str] | None] | None) -> list[Any]:
        return decode_many([record.exact or record.lookup for record in self._ordered(now)])

    def items(self, now: float) -> list[tuple[bytes, bytes | None, int, Any]]:
        return [(r.lookup, r.exact, r.kind, r.payload) for r in self._ordered(now)]

    def readable(self, lookups: Sequence[bytes] | None, now: float) -> list[tuple[Any, ...] | None]:
        if lookups is None:
            return [(r.lookup, r.exact, r.kind, r.payload, r.seq) for r in self._ordered(now)]
        if not lookups:
            return []
        clock, *raws = self.command("HMGET", self._tables()[0], b"", *lookups)
        self.feed.saw(int(clock or 0))
        found = [None if raw is None else _record(lookup, raw) for lookup, raw in zip(lookups, raws)]
        return [(r.lookup, r.exact, r.kind, r.payload, r.seq) if r is not None and live(r.expires, now) else None
                for r in found]

    def find(self, lookup: bytes, now: float) -> Record | None:
        raw = self._fetch(lookup)
        record = None if raw is None else _record(lookup, raw)
        return record if record is not None and live(record.expires, now) else None

    def times(self, lookup: bytes, now: float) -> tuple[float, float] | None:
        tables = self._tables()
        with self.client.pipeline(transaction=True) as pipe:
            pipe.hget(tables[0], lookup)
            pipe.zscore(tables[2], lookup)
            try:
                raw, atime = pipe.execute()
            except redis.RedisError as exc:
                raise translate_error(exc, self.server) from None
        if raw is None:
            return None
        record = _record(lookup, raw)
        if not live(record.expires, now):
            return None
        return record.ctime, max(record.mtime, atime or 0.0, self.accesses.get(record.seq, 0.0))

    def newest(self, now: float) -> tuple[Record, int] | None:
        entries, order = self._tables()[:2]
        start = 0
        while True:
            lookups = self.command("ZRANGE", order, start, start + 63, "REV")
            if not lookups:
                return None
            for lookup, raw in zip(lookups, self.command("HMGET", entries, *lookups)):
                if raw is not None:
                    record = _record(lookup, raw)
                    if live(record.expires, now):
                        return record, record.seq
            start += 64

    # -- writes --------------------------------------------------------------------------------

    def footprint(self, items: Sequence[Item]) -> int:
        sizes = {item.lookup: record_length(item.lookup, item.exact, item.payload) for item in items}
        return sum(sizes.values())

    def put(self, items: Sequence[Item], now: float, expires: float, bounds: Bounds,
            once: bytes | None = None) -> Commit:
        flat: list[Any] = []
        for lookup, exact, kind, payload in items:
            flat += (lookup, exact or b"", kind, payload)
        result = self._write("put", [repr(now), repr(expires), *self._limits(bounds), once or b"",
                                     *self._pending(bounds), len(items), *flat])
        return result[1]

    def put_if_absent(self, item: Item, now: float, bounds: Bounds, refuse: BaseException | None = None
                      ) -> tuple[tuple[int, Any] | None, Commit]:
        result = self._write("put_if_absent", [repr(now), *self._limits(bounds), 1 if refuse is not None else 0,
                                               *self._pending(bounds), item.lookup, item.exact or b"", item.kind,
                                               item.payload])
        if result[0] == b"REFUSED":
            assert refuse is not None
            raise refuse
        if result[4]:
            record = _record(item.lookup, result[4])
            return (record.kind, record.payload), result[1]
        return None, result[1]

    def replace(self, item: Item, expected: Record | None, now: float, expires: float, bounds: Bounds,
                keep_key: bool = True) -> tuple[bool, Commit]:
        result = self._write("replace", [repr(now), repr(expires), *self._limits(bounds),
                                         b"" if expected is None else _pack(expected), 0 if expected is None else 1,
                                         1 if keep_key else 0, *self._pending(bounds), item.lookup, item.exact or b"", item.kind,
                                         item.payload])
        return result[4] == b"1", result[1]

    def remove(self, lookup: bytes, now: float, expected: Record | None = None) -> tuple[Record | None, Commit]:
        result = self._write("remove", [lookup, b"" if expected is None else _pack(expected),
                                        0 if expected is None else 1])
        record = _record(lookup, result[4]) if result[4] else None
        return (record if record is not None and live(record.expires, now) else None), result[1]

    def remove_at(self, where: int, expected: Record) -> tuple[Record | None, bytes, Commit]:
        result = self._write("remove_at", [where, _pack(expected)])
        return (expected if result[4] else None), expected.lookup, result[1]

    def retime(self, lookup: bytes, now: float, expires: float) -> tuple[bool, Commit]:
        result = self._write("retime", [repr(now), repr(expires), lookup])
        return result[4] == b"1", result[1]

    def clear(self) -> Commit:
        return self._write("clear", [])[1]  # type: ignore[no-any-return]

    # -- housekeeping --------------------------------------------------------------------------

    def write_atimes(self, batch: list[tuple[int, float]]) -> tuple[int, Commit]:
        if not self.read_only:
            try:
                result = self._write("write_atimes", [len(batch), *(value for pair in batch for value in pair)])
            except DatabasePermissionError:  # a read-only replica: its readers' access times are not stored
                self.read_only = True
        if self.read_only:
            return 0, Commit(self.feed.clock[0], False, True, [])
        return int(result[4]), result[1]

    def sweep(self, now: float, idle_cutoff: float | None, start_after: int, deadline: float,
              monotonic: Callable[[], float], alert: Callable[[Exception], None]) -> tuple[int, int | None]:
        if idle_cutoff is not None:  # reads not yet stored keep their entries
            for batch in self.accesses.drain(10_000):
                self.write_atimes(batch)
        removed = 0
        while True:
            result = self._write("sweep", [repr(now), "" if idle_cutoff is None else repr(idle_cutoff), SWEEP_BATCH])
            count, more = result[4].split(b":")
            removed += int(count)
            if more == b"0":
                return removed, None
            if monotonic() >= deadline:
                return removed, 0  # resume: the script picks the oldest victims again

    def take_lease(self, holder: str, now: float, seconds: float, days: float | None) -> bool:
        return bool(self.run_script("lease", [self.table("LEASE")],
                                    [holder, repr(now), repr(seconds), "" if days is None else repr(float(days))]))

    def release_lease(self, holder: str) -> None:
        self.run_script("release_lease", [self.table("LEASE")], [holder])

    def claim(self, name: bytes, holder: bytes, now: float, until: float) -> bool:
        # the holder's expiry is the mapping's clock; Redis drops the key too once it has passed
        milliseconds = max(1, int((until - now) * 1000) + 1)
        return bool(self.run_script("claim", [self.prefix + b"mutex:" + name],
                                    [holder.hex(), repr(now), repr(until), milliseconds]))

    def unclaim(self, name: bytes, holder: bytes) -> bool:
        return bool(self.run_script("unclaim", [self.prefix + b"mutex:" + name], [holder.hex()]))

    def format(self, wanted: bytes) -> bytes | None:
        try:
            return self.run_script("format", [self.table("E"), self.table("M")], [wanted])  # type: ignore[no-any-return]
        except DatabasePermissionError:  # a read-only replica: what the primary stored
            return self.command("HGET", self.table("M"), b"format")  # type: ignore[no-any-return]

    def info(self) -> dict[str, int]:
        used = self.command("HGET", self._tables()[4], b"bytes")
        return {"records_bytes": int(used or 0), "bytes_on_disk": 0, "map_size": 0, "readers_in_use": 0}

    def sync(self) -> None:
        pass  # durability is the server's (appendonly, appendfsync)

    def close(self) -> None:
        self.feed.stop()
        _live.discard(self)
        if self.owns_client:
            try:
                self.client.close()
            except redis.RedisError:
                pass

    def after_fork_in_child(self) -> None:
        self._writer = threading.RLock()
        self.init_transactions()
        self.feed.after_fork_in_child()


_live: weakref.WeakSet[RedisEngine] = weakref.WeakSet()


def _reset_after_fork_in_child() -> None:
    for engine in list(_live):
        engine.after_fork_in_child()


os.register_at_fork(after_in_child=_reset_after_fork_in_child)
