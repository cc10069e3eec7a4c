"""Floors: how fast a cold read or ``in`` could be on py-lmdb with this product's guarantees.

Each "floor" is the least Python a read can run and still keep what PersistDict promises,
written inline against raw py-lmdb on records in PersistDict's own layout: the key's type
tag, one transaction and get, the checksum (a damaged record is never returned as a value), for
a get the record's own key against the one asked for (a damaged LMDB key never leads to another
key's value),
the header (expiry, and the entry's seq for its access time), the access-time note and the
pickle decode; ``in`` needs the tag, the get and the expiry. No front cache, no guards for
fork or map resize, no counters. The reference is the raw LMDB contender itself
(contenders.LmdbAdapter: one transaction per get, pickle). Both read a freshly opened environment
(first touches of the map, like the benchmark's fresh process), interleaved, best of 7; the get
floors, PersistDict's own get and raw LMDB's in one loop.

If a floor is below a target's ratio, no pure-Python implementation on py-lmdb that keeps
those guarantees can reach the target: that is the measurement benchmarks/README.md cites.
"contains, after get" measures ``in`` as the benchmark does: after get cold on the other half
of the keys, in the same process; "PersistDict itself" is ``in`` on a real store in that order,
with one key read twice first, as the benchmark does (so its front cache is not empty); "with
PersistDict's guards" is the ``in`` floor plus, inline, the front-cache look, the fork check and
the map-resize gate that PersistDict keeps around every ``in`` (see floor_contains_guarded).
"iterate keys" is every key in insertion order from PersistDict's order table (one join, decode
and split, as PersistDict does for str keys), against the raw contender's sorted iteration; the
benchmark times a fresh process's first passes, these the best of 7 in one process.
"get, compiled parse" is the get floor with the record parse
in C (PersistDict/_speedups.c, as PersistDict does when it was built with a C compiler); "get:
PersistDict itself" the benchmark's own get loop (contenders.PersistDictAdapter) on a real store. Every
py-lmdb call passes its arguments by position and every transaction ends with abort() rather
than a ``with`` block, as PersistDict does: keywords cost ~0.15 µs a call in py-lmdb, the context
manager ~0.1 µs.

    python benchmarks/floors.py [results_dir]   # prints a Markdown table, writes results_dir/floors.json

floors.json (default directory: benchmarks/results) holds these rows; report.py checks the
target "get cold >= 0.8x the guarantee floor" on them: PersistDict's own get against the floor
measured beside it (the compiled-parse floor when PersistDict runs its compiled parsers).
"""

from __future__ import annotations

import datetime
import json
import os
import pickle
import random
import shutil
import subprocess
import sys
import tempfile
import time
import zlib
from collections import deque
from collections.abc import Callable
from types import SimpleNamespace

import lmdb

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from common import RESULTS_DIR, make_value  # noqa: E402  (this directory is sys.path[0])
from contenders import LmdbAdapter, PersistDictAdapter  # noqa: E402
from PersistDict import SPEEDUPS, PersistDict, _speedups  # noqa: E402  (_speedups: built by pip install -e .)
from PersistDict._records import _CRC_RESIDUE, _READ_HEADER, HEADER_SIZE, pack_record  # noqa: E402

N = 10_000
KINDS = ["str100", "record2k", "embedding", "embedding_np"]


def build(raw_path: str, records_path: str, pd_path: str, kind: str, keys: list[str]) -> None:
    """The same values three times: as the raw LMDB contender writes them, as PersistDict
    records alone, and as a PersistDict store."""
    values = [make_value(kind, i % 16) for i in range(len(keys))]
    with PersistDict(pd_path) as store:
        store.set_many(zip(keys, values, strict=True))
    raw = _raw_contender(raw_path)
    raw.batch_set(list(zip(keys, values, strict=True)))
    raw.close()
    env = lmdb.open(records_path, map_size=1 << 30, max_dbs=1)
    records = env.open_db(b"records")
    now = time.time()
    with env.begin(write=True, db=records) as txn:
        for i, (key, value) in enumerate(zip(keys, values, strict=True)):
            lookup = b"s" + key.encode()
            txn.put(lookup, pack_record(i, now, now, 0.0, 0, lookup, None, pickle.dumps(value)))
    env.close()


def _raw_contender(path: str) -> LmdbAdapter:
    raw = LmdbAdapter(sync=True)
    raw.load()
    raw.open(path)
    return raw


def floor_get(env: lmdb.Environment, db: object, keys: list[str]) -> None:
    loads, crc32, unpack, clock = pickle.loads, zlib.crc32, _READ_HEADER.unpack_from, time.time
    accessed: dict[int, float] = {}

    def get(key: str) -> object:  # d[key] is a call: so is the floor
        lookup = b"s" + key.encode()
        txn = env.begin(db)  # positional: py-lmdb parses keywords ~0.15 µs slower
        data = txn.get(lookup)
        txn.abort()  # not `with`: the context manager costs ~0.1 µs more
        if data is None or crc32(data) != _CRC_RESIDUE:
            raise KeyError(key)
        version, kind, seq, expires, lookup_len, exact_len = unpack(data)
        if data[HEADER_SIZE:HEADER_SIZE + lookup_len] != lookup:  # the record is this key's (not a damaged LMDB key's)
            raise KeyError(key)
        now = clock()
        if expires and expires <= now:
            raise KeyError(key)
        accessed[seq] = now
        return loads(data[HEADER_SIZE + lookup_len + exact_len:-4])

    for k in keys:
        get(k)


def floor_get_compiled(env: lmdb.Environment, db: object, keys: list[str]) -> None:
    """floor_get with the record parse (checksum, header, payload slice) in C: PersistDict/_speedups.c."""
    loads, parse, clock = pickle.loads, _speedups.unpack_value, time.time
    accessed: dict[int, float] = {}

    def get(key: str) -> object:
        lookup = b"s" + key.encode()
        txn = env.begin(db)
        data = txn.get(lookup)
        txn.abort()
        if data is None:
            raise KeyError(key)
        seq, expires, kind, payload = parse(data, lookup)
        now = clock()
        if expires and expires <= now:
            raise KeyError(key)
        accessed[seq] = now
        return loads(payload)

    for k in keys:
        get(k)


def floor_contains(env: lmdb.Environment, db: object, keys: list[str]) -> int:
    unpack, clock = _READ_HEADER.unpack_from, time.time

    def contains(key: str) -> bool:
        lookup = b"s" + key.encode()
        txn = env.begin(db, None, False, True)  # buffers=True, positionally
        data = txn.get(lookup)
        expires = None if data is None else unpack(data)[3]
        txn.abort()
        return expires is not None and (not expires or expires > clock())

    return _count(contains, keys)


def floor_contains_guarded(env: lmdb.Environment, db: object, keys: list[str]) -> int:
    """floor_contains plus, inline, the three guards PersistDict keeps around every ``in``: the look
    into the front cache (a hot key is answered from memory; the benchmark's cache holds one key),
    the fork check (a forked child must reopen the environment) and the map-resize gate (LMDB's
    set_mapsize needs no transaction open in the process: every read is counted while it runs)."""
    unpack, clock = _READ_HEADER.unpack_from, time.time
    hot, plain = {"r:hot": None}, frozenset({str, bytes})
    generation, opened_in = [0], 0
    open_txns: deque[None] = deque()
    gate = SimpleNamespace(resizing=False, quiescing=False)

    def contains(key: str) -> bool:
        if hot and type(key) in plain and key in hot:
            return True
        if generation[0] != opened_in:
            raise RuntimeError("forked")
        lookup = b"s" + key.encode()
        open_txns.append(None)
        if gate.resizing or gate.quiescing:
            raise RuntimeError("resizing")
        try:
            txn = env.begin(db, None, False, True)
            data = txn.get(lookup)
            expires = None if data is None else unpack(data)[3]
            txn.abort()
        finally:
            open_txns.pop()
        return expires is not None and (not expires or expires > clock())

    return _count(contains, keys)


def _count(contains: Callable[[str], bool], keys: list[str]) -> int:
    n = 0
    for k in keys:
        if contains(k):
            n += 1
    return n


def _best_per_key_us(one_pass: Callable[[], int]) -> float:
    """Per key of the fastest of 7 calls of ``one_pass``, which returns how many keys it went over."""
    best = float("inf")
    for _ in range(7):
        start = time.perf_counter()
        n = one_pass()
        best = min(best, (time.perf_counter() - start) / n * 1e6)
    return best


def floor_iterate(path: str) -> float:
    """Per key: every key of a PersistDict store in insertion order (its order table, whose rows
    are the keys' encodings when they carry no TTL), decoded as PersistDict does it for str keys
    (one join, one decode, one split), then a Python loop over them as the benchmark's. Best of 7."""
    env = lmdb.open(path, max_dbs=8, readonly=True, lock=False)
    try:
        order = env.open_db(b"order", create=False)

        def one_pass() -> int:
            txn = env.begin(order)
            rows = list(txn.cursor(order).iternext(False, True))
            txn.abort()
            keys = b"\x00".join(rows)[1:].decode("utf-8", "surrogatepass").split("\x00s")
            n = 0
            for _key in keys:
                n += 1
            return n

        return _best_per_key_us(one_pass)
    finally:
        env.close()


def iterate_us(contender: LmdbAdapter | PersistDictAdapter) -> float:
    """Per key of a benchmark contender's own iterate loop (closed after). Best of 7."""
    try:
        return _best_per_key_us(contender.iter_keys)
    finally:
        contender.close()


def _persistdict_adapter(path: str) -> PersistDictAdapter:
    """The benchmark's PersistDict contender (its loops are the ones timed), opened on ``path``."""
    ours = PersistDictAdapter(None)
    ours.load()
    ours.open(path)
    return ours


def per_key_us(run: Callable[[list[str]], object], keys: list[str]) -> float:
    order = keys[:]
    random.shuffle(order)
    start = time.perf_counter()
    run(order)
    return (time.perf_counter() - start) / len(order) * 1e6


def raw_us(path: str, op: str, keys: list[str], read_first: list[str] | None = None) -> float:
    """Per key of ``op`` on ``keys``, after an untimed get of ``read_first`` in the same process."""
    raw = _raw_contender(path)
    try:
        if read_first:
            raw.get_keys(read_first)
        return per_key_us(getattr(raw, op), keys)
    finally:
        raw.close()


def floor_us(path: str, floor: Callable[..., object], keys: list[str], read_first: list[str] | None = None) -> float:
    """As raw_us, for a floor (the untimed reads go through the get floor with the compiled parse)."""
    env = lmdb.open(path, map_size=1 << 30, max_dbs=1, readonly=True)
    try:
        db = env.open_db(b"records", create=False)
        if read_first:
            floor_get_compiled(env, db, read_first)
        return per_key_us(lambda order: floor(env, db, order), keys)
    finally:
        env.close()


def persistdict_get_us(path: str, keys: list[str]) -> float:
    """Per key of the benchmark's own PersistDict get loop on a freshly opened store: its first
    reads of those keys, in random order."""
    ours = _persistdict_adapter(path)
    try:
        return per_key_us(ours.get_keys, keys)
    finally:
        ours.close()


def after_gets(keys: list[str]) -> tuple[list[str], list[str]]:
    """The benchmark's order for ``in``: get cold on a random half of the keys, then ``in`` on the rest."""
    order = keys[:]
    random.shuffle(order)
    return order[: len(order) // 2], order[len(order) // 2 :]


def persistdict_contains_after_get_us(path: str, read: list[str], checked: list[str]) -> float:
    """Per key of the benchmark's ``in`` loop on ``checked`` through a fresh PersistDict, after its
    get loop on ``read``."""
    ours = _persistdict_adapter(path)
    try:
        ours.get_keys(read)
        ours.get(read[0])  # as the benchmark's check_value: a second read, so the front cache is not empty
        return per_key_us(ours.contains_keys, checked)
    finally:
        ours.close()


def main() -> None:
    started = datetime.datetime.now(datetime.timezone.utc)
    keys = [f"r:{i:08d}" for i in range(N)]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for kind in KINDS:
            raw_path, records_path = os.path.join(tmp, f"{kind}-raw"), os.path.join(tmp, f"{kind}-records")
            pd_path = os.path.join(tmp, f"{kind}-persistdict")
            build(raw_path, records_path, pd_path, kind, keys)
            # one interleaved loop: the get target compares PersistDict with its floor (report.py)
            raw_t, floor_t, compiled_t, ours_t = [], [], [], []
            for _ in range(7):
                raw_t.append(raw_us(raw_path, "get_keys", keys))
                floor_t.append(floor_us(records_path, floor_get, keys))
                compiled_t.append(floor_us(records_path, floor_get_compiled, keys))
                ours_t.append(persistdict_get_us(pd_path, keys))
            for op, times in (("get", floor_t), ("get, compiled parse", compiled_t),
                              ("get: PersistDict itself", ours_t)):
                rows.append((op, kind, min(raw_t), min(times), min(raw_t) / min(times)))
            raw_t, floor_t = [], []
            for _ in range(7):
                raw_t.append(raw_us(raw_path, "contains_keys", keys))
                floor_t.append(floor_us(records_path, floor_contains, keys))
            rows.append(("contains", kind, min(raw_t), min(floor_t), min(raw_t) / min(floor_t)))
            raw_t, floor_t, guarded_t, ours_t = [], [], [], []
            for _ in range(7):
                read, checked = after_gets(keys)
                raw_t.append(raw_us(raw_path, "contains_keys", checked, read))
                floor_t.append(floor_us(records_path, floor_contains, checked, read))
                guarded_t.append(floor_us(records_path, floor_contains_guarded, checked, read))
                ours_t.append(persistdict_contains_after_get_us(pd_path, read, checked))
            for op, times in (("contains, after get (the benchmark's order)", floor_t),
                              ("contains, after get, with PersistDict's guards", guarded_t),
                              ("contains, after get: PersistDict itself", ours_t)):
                rows.append((op, kind, min(raw_t), min(times), min(raw_t) / min(times)))
            raw_it = iterate_us(_raw_contender(raw_path))  # sorted keys, decoded one by one
            pd_copy = pd_path + "-copy"  # a closed copy: the floor opens it without LMDB's lock file
            shutil.copytree(pd_path, pd_copy)
            floor_it = floor_iterate(pd_copy)
            rows.append(("iterate keys (insertion order)", kind, raw_it, floor_it, raw_it / floor_it))
            ours = iterate_us(_persistdict_adapter(pd_path))
            rows.append(("iterate keys: PersistDict itself", kind, raw_it, ours, raw_it / ours))
    print("| operation | value | raw LMDB µs | floor µs | floor / raw (ops/s ratio) |")
    print("|---|---|---:|---:|---:|")
    for op, kind, raw_best, floor_best, ratio in rows:
        print(f"| {op} | {kind} | {raw_best:.2f} | {floor_best:.2f} | {ratio:.2f}x |")
    save(rows, started)


def save(rows: list[tuple[str, str, float, float, float]], started: datetime.datetime) -> None:
    """Write the rows to floors.json in the results directory (argv[1], else benchmarks/results)."""
    out_dir = sys.argv[1] if len(sys.argv) > 1 else str(RESULTS_DIR)
    root = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
    git = ["git", "-C", root]
    commit = subprocess.run([*git, "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    dirty = subprocess.run([*git, "status", "--porcelain", "PersistDict"], capture_output=True, text=True).stdout
    os.makedirs(out_dir, exist_ok=True)
    with open(os.path.join(out_dir, "floors.json"), "w") as out:
        json.dump({
            "started_utc": started.isoformat(timespec="seconds"),
            "commit": commit + (" + uncommitted changes" if dirty.strip() else ""),
            "compiled_parsers": SPEEDUPS,
            "rows": [{"operation": op, "value": kind, "raw_us": raw_best, "floor_us": floor_best, "ratio": ratio}
                     for op, kind, raw_best, floor_best, ratio in rows],
        }, out, indent=1)


if __name__ == "__main__":
    main()
