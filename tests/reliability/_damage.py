"""Damaged copies of one known store, for test_damage.py: the store, its oracle, and the damages.

Each damage edits a copy of the store as a disk, a bad sector or another program would: bytes in
``data.mdb`` (truncation, meta pages, a value, an LMDB node key, random offsets), or one row of one
table rewritten through LMDB itself (a flipped byte, a row cut short).
"""

from __future__ import annotations

import os
import pickle
import random
import shutil
import struct
from pathlib import Path
from typing import Any

import lmdb

from PersistDict import PersistDict

DATA = "data.mdb"
TABLES = ("records", "order", "atimes", "meta", "changes")  # PersistDict/_storage.py's named tables
SHORT_ROW = b"\x00\x01\x02\x03\x04"  # issue 15, defect 4: five bytes where a row needs more
FLIP_VALUE = b"VALUE-flip-" * 900  # a value on overflow pages, found by its bytes
NODE_KEYS = ("s150", "s140", "s130", "s120")  # one of them is flipped to read as 's15/', 's14/'...


def build(path: Path) -> tuple[dict[Any, Any], dict[Any, list[Any]]]:
    """A store using every table: str, tuple, int and hashed keys, small and large values, TTLs,
    deletions, atimes, a d(...) call. Returns (oracle, keys whose last commit may be undone)."""
    oracle: dict[Any, Any] = {}
    d = PersistDict(str(path), background_thread="disabled")
    d(init="VALUE-init")
    oracle["init"] = "VALUE-init"
    batch = {f"s{i}": f"VALUE-{i}-" + "v" * (i % 40) for i in range(160)}
    d.set_many(batch)
    oracle.update(batch)
    for i in range(20):  # tuple, int and hashed (longer than key_size_limit) keys
        for key, value in ((("tuple", i), [f"VALUE-t{i}", i]), (10_000 + i, {"VALUE": i}),
                           ("L" * 600 + str(i), f"VALUE-long-{i}")):
            d[key] = oracle[key] = value
    d["flip.large"] = FLIP_VALUE
    oracle["flip.large"] = FLIP_VALUE
    d.set("ttl.live", "VALUE-ttl", ttl=10 * 365 * 86400)
    oracle["ttl.live"] = "VALUE-ttl"
    with d.transaction():
        for i in range(0, 20, 3):
            del d[("tuple", i)]
            del oracle[("tuple", i)]
    for key in list(oracle)[::7]:  # atimes rows
        d[key]
    d.flush_atimes()
    d["tail"] = 1  # the last commits: a damaged newest meta page may undo them
    d["tail"] = 2
    d.close()
    return oracle, {"tail": [1, 2]}


def copy_of(base: Path, where: Path) -> Path:
    shutil.copytree(base, where)
    return where


# -- damage to the file's bytes ---------------------------------------------------

def truncate(path: Path, fraction: float) -> None:
    data = path / DATA
    os.truncate(data, int(os.path.getsize(data) * fraction) // 4096 * 4096)


def overwrite(path: Path, offset: int, garbage: bytes) -> None:
    with open(path / DATA, "r+b") as handle:
        handle.seek(offset)
        handle.write(garbage)


def garbage_meta_pages(path: Path, pages: tuple[int, ...]) -> None:
    rng = random.Random(sum(pages))
    for page in pages:
        overwrite(path, page * 4096, rng.randbytes(4096))


def flip_value_byte(path: Path) -> None:
    content = (path / DATA).read_bytes()
    offset = content.index(FLIP_VALUE[:2000]) + 1000
    overwrite(path, offset, bytes([content[offset] ^ 0x40]))


def flip_node_key(path: Path) -> str:
    """Make the LMDB node key of one str key read as another, never-written key (issue 15, defect 3):
    the node header's flags (u16) and key size (u16) precede the key bytes. Returns the new key."""
    content = (path / DATA).read_bytes()
    for key in NODE_KEYS:
        slot = b"s" + key.encode()
        header = struct.pack("<HH", 0, len(slot))
        found = [i for i in _occurrences(content, slot) if content[i - 4:i] == header]
        for offset in found:  # the live leaf page and stale copies of it in free pages
            overwrite(path, offset + len(slot) - 1, b"/")  # '0' -> '/': the page stays sorted
        if found:
            return key[:-1] + "/"
    raise AssertionError("no node key to flip found in the store")


def random_bytes(path: Path, seed: int) -> None:
    rng = random.Random(seed)
    size = os.path.getsize(path / DATA)
    for _ in range(rng.randrange(1, 9)):
        overwrite(path, rng.randrange(size), rng.randbytes(rng.randrange(1, 17)))


def _occurrences(content: bytes, needle: bytes) -> list[int]:
    found, start = [], content.find(needle)
    while start >= 0:
        found.append(start)
        start = content.find(needle, start + 1)
    return found


# -- damage to one row of a table, through LMDB -----------------------------------

def table_rows(path: Path, table: str) -> list[bytes]:
    with _env(path) as env:
        db = env.open_db(table.encode(), create=False)
        with env.begin(db=db) as txn:
            return [bytes(key) for key, _ in txn.cursor()]


def damage_row(path: Path, table: str, key: bytes, how: str) -> None:
    """Rewrite one row: ``flip`` one byte of its value, ``garbage`` after its first byte (so it stays
    the same kind of row), or ``short`` (5 bytes); seeded by the row's key."""
    with _env(path) as env:
        db = env.open_db(table.encode(), create=False)
        with env.begin(db=db, write=True) as txn:
            value = bytearray(txn.get(key))
            rng = random.Random(key)
            if how == "short":
                value = bytearray(SHORT_ROW)
            elif how == "garbage":
                value[1:] = rng.randbytes(len(value) - 1)
            else:
                value[rng.randrange(len(value))] ^= 0x10
            txn.put(key, bytes(value))


class _env:
    def __init__(self, path: Path) -> None:
        self.env = lmdb.open(str(path), subdir=True, max_dbs=len(TABLES) + 1, map_size=1 << 30)

    def __enter__(self) -> lmdb.Environment:
        return self.env

    def __exit__(self, *exc: Any) -> None:
        self.env.close()


def write_case(path: Path, oracle: dict[Any, Any], either: dict[Any, list[Any]], repairable: bool,
               extra_keys: tuple[Any, ...] = ()) -> str:
    """The case file a read_damaged probe loads."""
    case = path.with_suffix(".case")
    case.write_bytes(pickle.dumps({"path": str(path), "oracle": oracle, "either": either,
                                   "repairable": repairable, "extra_keys": list(extra_keys)}))
    return str(case)
