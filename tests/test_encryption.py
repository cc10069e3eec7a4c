"""encryption_key=: nothing of a key or a value on disk, tampering refused, the key check, key sources
and pickling, equal keys meeting across processes. Rotation is tests/test_encryption_rotation.py's."""

from __future__ import annotations

import base64
import os
import pickle
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from PersistDict import (
    CodecMismatchError,
    CorruptedRecordError,
    EncryptionError,
    KeyNotPicklableError,
    PersistDict,
    TamperedRecordError,
    WrongEncryptionKeyError,
)
from PersistDict.engines.base import Bounds, Item

KEY = bytes(range(32))
OTHER_KEY = bytes(range(1, 33))
ENV_NAME = "PERSISTDICT_TEST_ENCRYPTION_KEY"


def open_store(location: Any, key: Any = KEY, **options: Any) -> PersistDict:
    options.setdefault("background_thread", "disabled")
    return PersistDict(location, encryption_key=key, **options)


@pytest.fixture(params=["lmdb", "memory"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[PersistDict]:
    """An encrypted store on each engine."""
    d = open_store(tmp_path / "db" if request.param == "lmdb" else ":memory:")
    yield d
    d.close()


def raw_engine(d: PersistDict) -> Any:
    """The engine below the sealing layer: what someone who can write the files controls."""
    return d._engine.engine


def files_hold(directory: Path, needle: bytes) -> list[str]:
    return [path.name for path in directory.iterdir() if path.is_file() and needle in path.read_bytes()]


# -- nothing in clear --------------------------------------------------------------------------------

def test_no_key_or_value_anywhere_in_the_files(tmp_path: Path) -> None:
    """Canaries in keys (str, bytes, tuples, long keys) and values are in no file of the directory, after
    writes, overwrites, TTLs, deletes (the change log), popitem, a transaction, an access-time flush,
    get_or_set, incr and memoize; nor is the master key or a data key."""
    path = tmp_path / "db"
    d = open_store(path)
    canaries = [f"CANARY{i:03d}" for i in range(12)]
    d[canaries[0]] = canaries[1]
    d[(canaries[2], 7)] = {"nested": canaries[3]}
    d[canaries[4].encode()] = canaries[5].encode()
    d.set(canaries[6] + "x" * 600, [canaries[7]] * 3, ttl=3600)
    d.update({canaries[8]: canaries[9], "plain": 1})
    d[canaries[0]] = canaries[1] + "-again"
    with d.transaction():
        d[canaries[10]] = canaries[11]
        del d["plain"]
    d.popitem()
    _ = d[canaries[0]], d[canaries[0]]
    d.flush_atimes()
    del d[canaries[8]]
    assert d.get_or_set("CANARY-computed", lambda: "CANARY-answer") == "CANARY-answer"
    assert d.incr("CANARY-counter") == 1

    @d.memoize()
    def ask(prompt: str) -> str:
        return prompt + " CANARY-memoized"

    assert ask("CANARY-prompt") == ask("CANARY-prompt")
    assert d[(canaries[2], 7)] == {"nested": canaries[3]}
    secrets = [KEY, KEY.hex().encode(), d._sealer.bundle.index_key, *d._sealer.bundle.data_keys.values()]
    d.close()
    for canary in canaries:
        for form in (canary.encode(), canary.encode("utf-16-le")):
            assert files_hold(path, form) == [], canary
    for secret in secrets:
        assert files_hold(path, secret) == []
    assert files_hold(path, b"CANARY") == []


def test_equal_keys_meet_across_processes(tmp_path: Path) -> None:
    """A key written by another process is found here, under each key equal to it (1, 1.0, True)."""
    path = tmp_path / "db"
    open_store(path).close()
    code = (f"from PersistDict import PersistDict\n"
            f"d = PersistDict({str(path)!r}, encryption_key={KEY!r}, background_thread='disabled')\n"
            "d['prompt: hello'] = 'answer'\nd[1] = 'one'\nd[('a', 2)] = 'tuple'\nd.close()\n")
    subprocess.run([sys.executable, "-c", code], check=True)
    d = open_store(path)
    assert d["prompt: hello"] == "answer"
    assert d[1] == d[1.0] == d[True] == "one"
    assert d[("a", 2)] == "tuple"
    assert list(d) == ["prompt: hello", 1, ("a", 2)]
    d.close()


# -- tampering ----------------------------------------------------------------------------------------

def _copy_record(d: PersistDict, source: Any, target: Any) -> None:
    """Write ``source``'s record (sealed key and value as stored) into ``target``'s entry."""
    record = raw_engine(d).find(d._keys.lookup(source), 0.0)
    _replace_record(d, target, record.kind, record.exact, bytes(record.payload))


def _replace_record(d: PersistDict, key: Any, kind: int, exact: bytes, payload: bytes) -> None:
    """Store a record of these sealed parts as ``key``'s entry (removed first: an overwrite keeps the key)."""
    engine, lookup = raw_engine(d), d._keys.lookup(key)
    engine.remove(lookup, 0.0)
    engine.put([Item(lookup, exact, kind, payload)], 0.0, 0.0, Bounds(None, None))


def test_a_value_moved_to_another_key_fails_authentication(store: PersistDict) -> None:
    """Bob's sealed record copied over Alice's: reading Alice raises TamperedRecordError naming her, never
    returns Bob's value; keys(), items() and get_many() refuse too; readable_items lists it as damaged."""
    store["alice:salary"] = 100
    store["bob:salary"] = 999
    _copy_record(store, "bob:salary", "alice:salary")
    with pytest.raises(TamperedRecordError, match="alice:salary"):
        store["alice:salary"]
    with pytest.raises(CorruptedRecordError):
        store.get_many(["alice:salary"])
    with pytest.raises(TamperedRecordError):
        list(store.keys())
    with pytest.raises(TamperedRecordError):
        dict(store.items())
    report = store.check()
    assert report.undecodable_records == 1 and report.entries == 2
    readable = store.readable_items()
    assert readable.items == {"bob:salary": 999}
    assert len(readable.damaged) == 1 and isinstance(readable.damaged[0].error, CorruptedRecordError)
    assert store["bob:salary"] == 999


def test_a_record_replayed_from_another_store_fails(tmp_path: Path) -> None:
    """A record of another store sealed with the same master key does not authenticate here."""
    first, second = open_store(tmp_path / "one"), open_store(tmp_path / "two")
    first["k"], second["k"] = "first", "second"
    engine = raw_engine(second)
    record = raw_engine(first).find(first._keys.lookup("k"), 0.0)
    # the two stores hash keys with different index keys: put it where the second store looks
    engine.put([Item(second._keys.lookup("k"), record.exact, record.kind, record.payload)], 0.0, 0.0,
               Bounds(None, None))
    second._front and second._front.clear()
    with pytest.raises(TamperedRecordError):
        second["k"]
    first.close()
    second.close()


@pytest.mark.parametrize("damage", ["flip", "truncate", "kind", "key"])
def test_a_damaged_sealed_record_is_refused(store: PersistDict, damage: str) -> None:
    """A flipped ciphertext byte, a truncated value, a changed kind byte or a sealed key of another entry:
    each a clear TamperedRecordError naming the key, reported by check() and dropped on request."""
    store["k"] = "secret"
    store["other"] = "x"
    engine = raw_engine(store)
    lookup = store._keys.lookup("k")
    record = engine.find(lookup, 0.0)
    kind, exact, payload = record.kind, record.exact, bytes(record.payload)
    if damage == "flip":
        payload = payload[:-1] + bytes([payload[-1] ^ 1])
    elif damage == "truncate":
        payload = payload[:20]
    elif damage == "kind":
        kind = 2  # raw bytes: the pickled value would come back as bytes
    else:
        exact = engine.find(store._keys.lookup("other"), 0.0).exact
    _replace_record(store, "k", kind, exact, payload)
    if damage == "key":
        assert store["k"] == "secret"  # the value is still bound to its entry
        with pytest.raises(TamperedRecordError, match="another entry"):
            list(store)
    else:
        with pytest.raises(TamperedRecordError, match="'k'"):
            store["k"]
    report = store.check()  # the damage is found, whichever part of the record it is in
    assert not report.ok and report.undecodable_records == 1
    assert store.check(drop_unreadable=True).dropped == 1
    assert list(store) == ["other"] and store.check().ok


# -- the key check ------------------------------------------------------------------------------------

def test_wrong_key_refused_at_open_nothing_changed(tmp_path: Path) -> None:
    """Another key is refused by the key check at open (WrongEncryptionKeyError); the right key then
    reads everything; an unencrypted open of an encrypted store and the reverse are refused too."""
    path = tmp_path / "db"
    d = open_store(path)
    d.update({f"k{i}": i for i in range(50)})
    d.close()
    with pytest.raises(WrongEncryptionKeyError, match="wrong encryption key"):
        open_store(path, OTHER_KEY, background_thread=True)  # maintenance would not start either
    with pytest.raises(CodecMismatchError, match="hmac-sha256"):
        PersistDict(path, background_thread="disabled")
    d = open_store(path)
    assert dict(d) == {f"k{i}": i for i in range(50)}
    d.close()
    plain = PersistDict(tmp_path / "plain", background_thread="disabled")
    plain["a"] = 1
    plain.close()
    with pytest.raises(CodecMismatchError):
        open_store(tmp_path / "plain")


@pytest.mark.parametrize(("bad", "error"), [(b"short", EncryptionError), (32, TypeError), ("", EncryptionError),
                                            (lambda: b"short", EncryptionError)])
def test_bad_keys_are_refused_clearly(tmp_path: Path, bad: Any, error: type[Exception]) -> None:
    """A key of the wrong type raises TypeError, a malformed one EncryptionError (a ValueError): no store is created."""
    with pytest.raises(error):
        open_store(tmp_path / "db", bad)
    assert not (tmp_path / "db").exists()


# -- key sources and pickling -------------------------------------------------------------------------

def test_raw_key_refuses_pickling_unless_allowed(tmp_path: Path) -> None:
    """Pickling a store whose key was given as bytes raises KeyNotPicklableError (a PicklingError), with
    no key in the message; allow_pickling_key=True lets it through."""
    d = open_store(tmp_path / "db")
    with pytest.raises(KeyNotPicklableError, match="allow_pickling_key") as info:
        pickle.dumps(d)
    assert isinstance(info.value, pickle.PicklingError) and KEY.hex() not in str(info.value)
    d.close()
    d = open_store(tmp_path / "db", allow_pickling_key=True)
    clone = pickle.loads(pickle.dumps(d))
    d["k"] = 1
    assert clone["k"] == 1
    clone.close()
    d.close()


def test_env_key_pickles_without_the_secret_and_workers_read(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A key from an environment variable (hex or base64): the pickle holds the variable's name, not
    the key, and a spawned process given the pickled store reads what this one wrote."""
    monkeypatch.setenv(ENV_NAME, base64.b64encode(KEY).decode())
    d = open_store(tmp_path / "db", ENV_NAME)
    d["k"] = "v"
    data = pickle.dumps(d)
    assert KEY not in data and KEY.hex().encode() not in data and base64.b64encode(KEY) not in data
    code = ("import pickle, sys\nd = pickle.loads(sys.stdin.buffer.read())\nassert d['k'] == 'v'\n"
            "d['from child'] = 1\nd.close()\n")
    subprocess.run([sys.executable, "-c", code], input=data, check=True)
    assert d["from child"] == 1
    monkeypatch.setenv(ENV_NAME, KEY.hex())
    assert open_store(tmp_path / "db", ENV_NAME)["k"] == "v"
    d.close()


def test_missing_env_variable_is_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An unset or malformed variable raises EncryptionError naming the variable, not its content; no store is created."""
    monkeypatch.delenv(ENV_NAME, raising=False)
    with pytest.raises(EncryptionError, match=ENV_NAME):
        open_store(tmp_path / "db", ENV_NAME)
    monkeypatch.setenv(ENV_NAME, "not-a-key")
    with pytest.raises(EncryptionError, match="64 hex digits or base64") as info:
        open_store(tmp_path / "db", ENV_NAME)
    assert "not-a-key" not in str(info.value)
    assert not (tmp_path / "db").exists()


def key_from_vault() -> bytes:
    """A picklable key provider (module level), as a secrets manager's client would be."""
    return KEY


def test_callable_key_pickles_as_the_callable(tmp_path: Path) -> None:
    """A module-level callable pickles by name (no key in the pickle); a lambda is refused clearly."""
    d = open_store(tmp_path / "db", key_from_vault)
    d["k"] = 1
    data = pickle.dumps(d)
    assert KEY not in data
    clone = pickle.loads(data)
    assert clone["k"] == 1
    clone.close()
    d.close()
    d = open_store(tmp_path / "db", lambda: KEY)
    with pytest.raises(KeyNotPicklableError, match="lambda"):
        pickle.dumps(d)
    d.close()


def test_repr_and_settings_never_show_the_key(tmp_path: Path) -> None:
    """Neither the store's repr nor its key source's shows the key."""
    d = open_store(tmp_path / "db")
    assert KEY.hex() not in repr(d) and KEY.hex() not in repr(d._settings)
    assert repr(KEY) not in repr(d._settings)
    d.close()


def test_an_engine_operation_the_sealing_layer_does_not_know_is_refused(store: PersistDict) -> None:
    """An engine operation that could hand out hashes or sealed bytes (a prefix scan, say) is refused
    with EncryptionError instead of being passed through; the known ones pass."""
    with pytest.raises(EncryptionError, match="not available on an encrypted store"):
        store._engine.keys_with_prefix  # noqa: B018
    assert store._engine.count() == 0


def test_rotation_on_a_plain_store_is_refused(tmp_path: Path) -> None:
    """rotate_encryption_key on a store opened without encryption_key raises EncryptionError, changes nothing."""
    d = PersistDict(tmp_path / "db", background_thread="disabled")
    d["a"] = 1
    with pytest.raises(EncryptionError, match="not encrypted"):
        d.rotate_encryption_key(KEY)
    assert dict(d) == {"a": 1}
    d.close()


def test_a_key_record_of_a_newer_version_says_so(tmp_path: Path) -> None:
    """A key record written by a newer version is refused naming its version, not reported as damaged."""
    import json

    path = tmp_path / "db"
    d = open_store(path)
    d["a"] = 1
    engine = raw_engine(d)
    raw = engine.setting(b"encryption")
    record = json.loads(raw)
    record["version"] = 99
    assert engine.put_setting(b"encryption", json.dumps(record).encode(), raw)
    d.close()
    with pytest.raises(EncryptionError, match="has version 99") as info:
        open_store(path)
    assert "damaged" not in str(info.value)


def test_without_cryptography_the_error_names_the_extra_and_creates_nothing(tmp_path: Path) -> None:
    """With the cryptography package missing, encryption_key= raises an ImportError naming the extra
    to install, before any file is created."""
    script = (
        "import sys\n"
        "sys.modules['cryptography'] = None  # as if it were not installed\n"
        "from PersistDict import PersistDict\n"
        "try:\n"
        f"    PersistDict({str(tmp_path / 'db')!r}, encryption_key=bytes(32))\n"
        "except ImportError as exc:\n"
        "    print(exc)\n"
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True).stdout
    assert "PersistDict[crypto]" in out
    assert not (tmp_path / "db").exists()
