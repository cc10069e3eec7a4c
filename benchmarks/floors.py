"""Floors: how fast a cold read or ``in`` could be on py-lmdb with this product's guarantees.

Each "floor" is the least Python a read can run and still keep what PersistDict promises,
written inline against raw py-lmdb on records in PersistDict's own layout: the key's type
tag, one transaction and get, the checksum (a damaged record is never returned as a value),
the header (expiry, and the entry's seq for its access time), the access-time note and the
pickle decode; ``in`` needs the tag, the get and the expiry. No front cache, no guards for
fork or map resize, no counters. The reference is the raw LMDB contender's loop from
contenders.py (one transaction per get, pickle). Both read a freshly opened environment
(first touches of the map, like the benchmark's fresh process), interleaved, best of 7.

If a floor is below a target's ratio, no pure-Python implementation on py-lmdb that keeps
those guarantees can reach the target: that is the measurement benchmarks/README.md cites.

    python benchmarks/floors.py          # prints a Markdown table
"""

from __future__ import annotations

import os
import pickle
import random
import sys
import tempfile
import time
import zlib

import lmdb

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from common import make_value  # noqa: E402  (this directory is sys.path[0])
from PersistDict._records import _CRC_RESIDUE, _READ_HEADER, HEADER_SIZE, pack_record  # noqa: E402

N = 10_000
KINDS = ["str100", "record2k", "embedding", "embedding_np"]


def build(path: str, kind: str, keys: list[str]) -> None:
    env = lmdb.open(path, map_size=1 << 30, max_dbs=2)
    raw, records = env.open_db(b"raw"), env.open_db(b"records")
    now = time.time()
    with env.begin(write=True) as txn:
        for i, key in enumerate(keys):
            payload = pickle.dumps(make_value(kind, i % 16), protocol=5)
            txn.put(key.encode(), payload, db=raw)
            lookup = b"s" + key.encode()
            txn.put(lookup, pack_record(i, now, now, 0.0, 0, lookup, None, payload), db=records)
    env.close()


def raw_get(env: lmdb.Environment, db: object, keys: list[str]) -> None:
    loads = pickle.loads
    for k in keys:  # contenders.LmdbAdapter.get_keys
        with env.begin(db=db) as txn:
            raw = txn.get(k.encode())
        loads(raw)


def raw_contains(env: lmdb.Environment, db: object, keys: list[str]) -> int:
    n = 0
    for k in keys:  # contenders.LmdbAdapter.contains_keys
        with env.begin(db=db) as txn:
            if txn.get(k.encode()) is not None:
                n += 1
    return n


def floor_get(env: lmdb.Environment, db: object, keys: list[str]) -> None:
    loads, crc32, unpack, clock = pickle.loads, zlib.crc32, _READ_HEADER.unpack_from, time.time
    accessed: dict[int, float] = {}

    def get(key: str) -> object:  # d[key] is a call: so is the floor
        lookup = b"s" + key.encode("utf-8", "surrogatepass")
        with env.begin(db=db) as txn:
            data = txn.get(lookup)
        if data is None or crc32(data) != _CRC_RESIDUE:
            raise KeyError(key)
        version, kind, seq, expires, lookup_len, exact_len = unpack(data)
        now = clock()
        if expires and expires <= now:
            raise KeyError(key)
        accessed[seq] = now
        return loads(data[HEADER_SIZE + lookup_len + exact_len:-4])

    for k in keys:
        get(k)


def floor_contains(env: lmdb.Environment, db: object, keys: list[str]) -> int:
    unpack, clock = _READ_HEADER.unpack_from, time.time

    def contains(key: str) -> bool:
        lookup = b"s" + key.encode("utf-8", "surrogatepass")
        with env.begin(db=db, buffers=True) as txn:
            data = txn.get(lookup)
            expires = None if data is None else unpack(data)[3]
        return expires is not None and (not expires or expires > clock())

    n = 0
    for k in keys:
        if contains(k):
            n += 1
    return n


def best_us(path: str, db_name: bytes, fn, keys: list[str]) -> float:
    env = lmdb.open(path, map_size=1 << 30, max_dbs=2, readonly=True)
    try:
        db = env.open_db(db_name, create=False)
        order = keys[:]
        random.shuffle(order)
        start = time.perf_counter()
        fn(env, db, order)
        return (time.perf_counter() - start) / len(order) * 1e6
    finally:
        env.close()


def main() -> None:
    keys = [f"r:{i:08d}" for i in range(N)]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for kind in KINDS:
            path = os.path.join(tmp, kind)
            build(path, kind, keys)
            pairs = {"get": (raw_get, floor_get), "contains": (raw_contains, floor_contains)}
            for op, (raw_fn, floor_fn) in pairs.items():
                raw_t, floor_t = [], []
                for _ in range(7):
                    raw_t.append(best_us(path, b"raw", raw_fn, keys))
                    floor_t.append(best_us(path, b"records", floor_fn, keys))
                raw_us, floor_us = min(raw_t), min(floor_t)
                rows.append((op, kind, raw_us, floor_us, raw_us / floor_us))
    print("| operation | value | raw LMDB µs | floor µs | floor / raw (ops/s ratio) |")
    print("|---|---|---:|---:|---:|")
    for op, kind, raw_us, floor_us, ratio in rows:
        print(f"| {op} | {kind} | {raw_us:.2f} | {floor_us:.2f} | {ratio:.2f}x |")


if __name__ == "__main__":
    main()
