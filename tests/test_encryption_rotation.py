"""rotate_encryption_key: every entry re-sealed, the old key refused afterwards, readers in other
processes reading throughout, and a rotation SIGKILLed in the middle that leaves a store opening
with either key and resumes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from PersistDict import EncryptionError, PersistDict, TamperedRecordError, TransactionError, WrongEncryptionKeyError

OLD = bytes(range(32))
NEW = bytes(range(100, 132))


def open_store(location: Any, key: bytes, **options: Any) -> PersistDict:
    options.setdefault("background_thread", "disabled")
    return PersistDict(location, encryption_key=key, **options)


def generations(d: PersistDict) -> set[int]:
    """The data-key generations the store's records (values and keys) are sealed with."""
    engine = d._engine.engine
    sealer = d._sealer
    found = set()
    for _, exact, _, payload in engine.items(d._clock()):
        found |= {sealer.generation(payload), sealer.generation(exact)}
    return found


def key_record(d: PersistDict) -> dict[str, Any]:
    return json.loads(d._engine.setting(b"encryption"))


@pytest.mark.parametrize("location", ["lmdb", "memory", "redis"])
def test_rotation_reseals_everything_and_retires_the_old_key(tmp_path: Path, location: str,
                                                             request: pytest.FixtureRequest) -> None:
    """Every entry (TTL and order kept) is re-sealed with the new generation in batches, with progress;
    the store then opens only with the new key; rotating to the current key is refused."""
    where: dict[str, Any] = {"lmdb": {"location": tmp_path / "db"}, "memory": {"location": ":memory:"}}.get(
        location) or {"location": request.getfixturevalue("redis_url"), "namespace": f"rotation-{tmp_path.name}"}
    d = open_store(key=OLD, **where)
    data = {f"k{i}": [i] * i for i in range(100)}
    d.update(data)
    d.set("ttl", "v", ttl=3600)
    expires = d._engine.engine.find(d._keys.lookup("ttl"), 0.0).expires
    seen: list[tuple[int, int]] = []
    assert d.rotate_encryption_key(NEW, batch=7, progress=lambda done, total: seen.append((done, total))) == 101
    assert len(seen) == 15 and seen[-1] == (101, 101) and seen == sorted(seen)
    assert generations(d) == {2}
    assert dict(d) == {**data, "ttl": "v"} and list(d)[-1] == "ttl"
    assert d._engine.engine.find(d._keys.lookup("ttl"), 0.0).expires == expires
    record = key_record(d)
    assert record["rotating_to"] is None and len(record["wraps"]) == 1
    with pytest.raises(ValueError, match="current key"):
        d.rotate_encryption_key(NEW)
    d["after"] = 1
    assert generations(d) == {2}
    d.close()
    if location != "memory":
        with pytest.raises(WrongEncryptionKeyError):
            open_store(key=OLD, **where)
        d = open_store(key=NEW, **where)
        assert d["k5"] == [5] * 5 and d["after"] == 1
        d.close()


def test_an_instance_with_the_old_key_is_stopped_after_rotation(tmp_path: Path) -> None:
    """An instance opened with the old key reads during a rotation, and after it cannot read re-sealed
    entries nor write (WrongEncryptionKeyError): it never seals with a retired data key."""
    path = tmp_path / "db"
    old, rotating = open_store(path, OLD, caching=False), open_store(path, OLD)
    old["a"] = 1
    rotating.rotate_encryption_key(NEW)
    with pytest.raises(WrongEncryptionKeyError, match="rotated"):
        old["a"]
    with pytest.raises(WrongEncryptionKeyError, match="rotated"):
        old["b"] = 2
    assert rotating["a"] == 1 and "b" not in rotating
    old.close()
    rotating.close()


def test_a_rotation_to_another_key_must_finish_first(tmp_path: Path) -> None:
    """While a rotation to one key is under way, a rotation to a third key is refused."""
    d = open_store(tmp_path / "db", OLD)
    d["a"] = 1
    d._begin_rotation(d._engine, NEW)  # step 1 only, as a killed rotation leaves it
    with pytest.raises(EncryptionError, match="under way"):
        d.rotate_encryption_key(bytes(32))
    assert d.rotate_encryption_key(NEW) == 1
    d.close()


READER = """
import json, os, sys
from PersistDict import PersistDict
d = PersistDict(sys.argv[1], encryption_key=bytes(range(32)), background_thread='disabled', caching=False)
during = 0
sys.stdout.write('ready\\n'); sys.stdout.flush()
while not os.path.exists(sys.argv[2]):
    rotating = json.loads(d._engine.setting(b'encryption'))['rotating_to'] is not None
    for i in range(0, 2000, 97):
        assert d['k%d' % i] == 'value %d' % i
    during += rotating
print(during)
"""


def test_other_processes_keep_reading_during_rotation(tmp_path: Path) -> None:
    """A process opened with the old key reads every value correctly, over and over, while another
    process rotates the key batch by batch (some of its reads while the key record says rotating)."""
    path, stop = tmp_path / "db", tmp_path / "stop"
    d = open_store(path, OLD)
    d.update({f"k{i}": f"value {i}" for i in range(2000)})
    reader = subprocess.Popen([sys.executable, "-c", READER, str(path), str(stop)], stdout=subprocess.PIPE,
                              text=True)
    assert reader.stdout is not None and reader.stdout.readline().strip() == "ready"
    d.rotate_encryption_key(NEW, batch=10)
    stop.touch()
    out, _ = reader.communicate(timeout=120)
    assert reader.returncode == 0 and int(out) > 0
    d.close()


ROTATOR = """
import sys
from PersistDict import PersistDict
d = PersistDict(sys.argv[1], encryption_key=bytes(range(32)), background_thread='disabled', durability='full')
d.rotate_encryption_key(bytes(range(100, 132)), batch=2)
"""


@pytest.mark.slow
def test_sigkill_during_rotation_leaves_a_store_both_keys_open_and_rotation_resumes(tmp_path: Path) -> None:
    """A rotating process SIGKILLed between batches: the old key and the new key both open the store and
    read every entry; rotate_encryption_key(new) resumes and finishes; then only the new key opens it."""
    path = tmp_path / "db"
    d = open_store(path, OLD)
    data = {f"k{i}": f"value {i}" for i in range(3000)}
    d.update(data)
    rotator = subprocess.Popen([sys.executable, "-c", ROTATOR, str(path)])
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:  # kill it once some entries, not all, carry the new generation
        if key_record(d)["rotating_to"] is not None and generations(d) == {1, 2}:
            break
        time.sleep(0.005)
    os.kill(rotator.pid, signal.SIGKILL)
    rotator.wait()
    assert rotator.returncode == -signal.SIGKILL
    assert generations(d) == {1, 2}, "the rotation was not caught in the middle"
    d.close()
    for key in (OLD, NEW):
        with open_store(path, key) as reopened:
            assert dict(reopened) == data
    with open_store(path, NEW) as resumed:
        assert 0 < resumed.rotate_encryption_key(NEW) < 3000
        assert generations(resumed) == {generations(resumed).pop()} and dict(resumed) == data
    with pytest.raises(WrongEncryptionKeyError):
        open_store(path, OLD)
    with open_store(path, NEW) as done:
        assert dict(done) == data


@pytest.mark.parametrize("location", ["lmdb", "memory"])
def test_rotation_inside_a_transaction_is_refused(tmp_path: Path, location: str) -> None:
    """rotate_encryption_key() inside transaction() raises TransactionError and changes nothing: the block
    could roll the key record back under an instance that already took the new key."""
    d = open_store(tmp_path / "db" if location == "lmdb" else ":memory:", key=OLD)
    d["a"] = 1
    record = key_record(d)
    with pytest.raises(TransactionError, match="inside transaction"), d.transaction():
        d.rotate_encryption_key(NEW)
    assert key_record(d) == record
    d["b"] = 2  # the instance still writes with its key
    assert dict(d) == {"a": 1, "b": 2}
    d.close()


def test_rotation_skips_an_entry_whose_sealed_key_is_damaged(tmp_path: Path) -> None:
    """One entry with a damaged sealed key does not stop the rotation: the others are re-sealed, the
    rotation finishes (only the new key opens the store) and the damaged entry is left as it was."""
    from PersistDict.engines.base import Bounds, Item

    d = open_store(tmp_path / "db", key=OLD)
    d.update({"a": 1, "b": 2, "c": 3})
    engine = d._engine.engine
    lookup = d._keys.lookup("b")
    record = engine.find(lookup, 0.0)
    exact = bytes(record.exact)
    damaged = exact[:-1] + bytes([exact[-1] ^ 1])
    engine.remove(lookup, 0.0)
    engine.put([Item(lookup, damaged, record.kind, bytes(record.payload))], 0.0, 0.0, Bounds(None, None))
    assert d.rotate_encryption_key(NEW) == 2
    assert key_record(d)["rotating_to"] is None
    assert d["a"] == 1 and d["c"] == 3
    d.close()
    d = open_store(tmp_path / "db", key=NEW)
    assert d["a"] == 1 and d["b"] == 2  # a value is bound to its lookup, not to the damaged sealed key
    with pytest.raises(TamperedRecordError):
        list(d)
    d.close()
