"""backup, export / import_from, compact and the progress callbacks, on every engine."""

from __future__ import annotations

import io
import json
import pickle
from pathlib import Path
from typing import Any

import pytest

from PersistDict import (
    CodecMismatchError,
    DestinationNotEmptyError,
    ExportFormatError,
    PersistDict,
    TransactionError,
    serializers,
)

from ._engines import KEY_VARIABLE, Stores


def filled(stores: Stores, clock: list[float], **options: Any) -> PersistDict:
    """A store with every kind of key and value, reads, overwrites and TTLs, on a controlled clock."""
    d = stores.open(clock=lambda: clock[0], **options)
    d["text"] = "plain"
    d[7] = {"nested": [1, 2.5, None, True], "s": "é"}
    d[(1, "a")] = (1, 2)  # a tuple value: not JSON-faithful
    d[b"raw"] = b"\x00\xff"
    d[2.5] = {"$ref": "looks like a tag"}
    d[frozenset({1, 2})] = {1, 2}
    clock[0] += 10
    d.set("short-lived", "v", ttl=100)
    d["text"] = "overwritten"  # keeps its place and ctime
    clock[0] += 5
    assert d[7]["s"] == "é"  # a read: moves atime
    return d


def exported(d: PersistDict) -> list[dict[str, Any]]:
    buffer = io.StringIO()
    d.export(buffer)
    return [json.loads(line) for line in buffer.getvalue().splitlines()]


def test_export_then_import_gives_an_equal_store(stores: Stores) -> None:
    """Contents, order, ctime/atime and TTLs survive export + import into an empty store."""
    clock = [1_000_000.0]
    d = filled(stores, clock)
    buffer = io.StringIO()
    assert d.export(buffer) == len(d) == 7
    buffer.seek(0)
    copy = stores.open(clock=lambda: clock[0])
    assert copy.import_from(buffer) == 7
    assert list(copy) == list(d)
    assert dict(copy.items()) == dict(d.items())
    for key in d:
        assert copy.metadata(key) == d.metadata(key)
    assert exported(copy)[1:] == exported(d)[1:]  # expiry too: every line is the same
    clock[0] += 200  # past the TTL in both
    assert "short-lived" not in copy and "short-lived" not in d


def test_the_export_format(stores: Stores) -> None:
    """A header, then one line per entry: JSON-able keys and values as themselves, others tagged."""
    clock = [1_000_000.0]
    d = filled(stores, clock)
    header, *lines = exported(d)
    assert header["persistdict"] == "export" and header["version"] == 1 and header["entries"] == 7
    by_key = {json.dumps(line["key"], sort_keys=True): line for line in lines}
    assert by_key['"text"']["value"] == "overwritten" and by_key['"text"']["ctime"] == 1_000_000.0
    assert by_key["7"]["value"] == {"nested": [1, 2.5, None, True], "s": "é"}
    assert by_key["7"]["atime"] == 1_000_015.0
    assert set(by_key['{"$bytes": "cmF3"}']["value"]) == {"$bytes"}
    assert by_key['"short-lived"']["expires"] == 1_000_110.0 and by_key['"text"']["expires"] is None
    tagged = [line["value"] for line in lines if isinstance(line["value"], dict) and "$stored" in line["value"]]
    assert len(tagged) == 3  # the tuple, the set and the dict whose member starts with "$"
    assert any("$key" in line["key"] for line in lines if isinstance(line["key"], dict))


def test_export_streams_a_batch_at_a_time(stores: Stores) -> None:
    """Lines are written before the export ends: the file holds the first batch when progress first reports."""
    d = stores.open()
    d.update({f"k{i}": i for i in range(1200)})
    buffer = io.StringIO()
    seen: list[tuple[int, int, int]] = []
    d.export(buffer, progress=lambda done, total: seen.append((done, total, buffer.getvalue().count("\n"))))
    assert seen[0] == (500, 1200, 501)  # header + the first 500 entries
    assert seen[-1][:2] == (1200, 1200)


def test_import_checks_the_whole_file_first(stores: Stores, tmp_path: Path) -> None:
    """A damaged line fails the import with its line number, and nothing is written."""
    d = stores.open()
    d.update({"a": 1, "b": 2})
    source = stores.open()
    source.update({f"k{i}": i for i in range(600)})
    path = tmp_path / "export.jsonl"
    source.export(path)
    lines = path.read_text().splitlines()
    lines[550] = lines[550].replace('"ctime"', '"ctyme"')
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(ExportFormatError, match="line 551: no ctime"):
        d.import_from(path)
    assert dict(d.items()) == {"a": 1, "b": 2}
    path.write_text('{"not": "a header"}\n')
    with pytest.raises(ExportFormatError, match="not a PersistDict export"):
        d.import_from(path)


def test_import_into_a_store_with_entries(stores: Stores) -> None:
    """A present key keeps its place and takes the file's value and times; new keys go last; expired lines are skipped."""
    clock = [2_000_000.0]
    source = stores.open(clock=lambda: clock[0])
    source["b"] = "from file"
    source["c"] = "new"
    source.set("gone", 1, ttl=5)
    buffer = io.StringIO()
    source.export(buffer)
    clock[0] += 10  # "gone" has expired by the import
    d = stores.open(clock=lambda: clock[0])
    d.update({"a": 1, "b": 2})
    buffer.seek(0)
    assert d.import_from(buffer) == 2
    assert list(d.items()) == [("a", 1), ("b", "from file"), ("c", "new")]
    assert d.metadata("b").ctime.timestamp() == 2_000_000.0


def test_import_into_a_bounded_store_evicts_by_this_process_s_reads_too(stores: Stores) -> None:
    """An import that makes a bounded store evict weighs the front-cache hits not yet written
    down: the entry read most recently stays, the least recently used one goes."""
    clock = [1_000_000.0]
    source = stores.open(clock=lambda: clock[0])
    source["new"] = "imported"
    buffer = io.StringIO()
    source.export(buffer)
    d = stores.open(max_items=3, clock=lambda: clock[0])
    d["a"] = 1
    clock[0] += 1
    assert d["a"] == 1 and d["a"] == 1  # the second read caches it
    for key in ("b", "c"):
        clock[0] += 1
        d[key] = key
    clock[0] += 100
    assert d["a"] == 1  # a front-cache hit, only noted in this process so far
    buffer.seek(0)
    assert d.import_from(buffer) == 1
    assert sorted(d) == ["a", "c", "new"]


def test_import_of_stored_values_needs_the_same_codec(stores: Stores) -> None:
    """Values carried in the store's own encoding are refused by a store with another value codec; plain ones are not."""
    source = stores.open()
    source["tuple"] = (1, 2)
    buffer = io.StringIO()
    source.export(buffer)
    target = stores.open(value_serializer=serializers.json_codec.dumps, value_unserializer=serializers.json_codec.loads)
    buffer.seek(0)
    with pytest.raises(CodecMismatchError, match="line 2"):
        target.import_from(buffer)
    plain = stores.open()
    plain["list"] = [1, 2]
    buffer = io.StringIO()
    plain.export(buffer)
    buffer.seek(0)
    assert target.import_from(buffer) == 1 and target["list"] == [1, 2]


def test_backup_copy_opens_as_a_store(stores: Stores, tmp_path: Path) -> None:
    """The copy holds the same entries, order, times and TTLs, and reports its progress."""
    clock = [1_000_000.0]
    d = filled(stores, clock)
    seen: list[tuple[int, int]] = []
    d.backup(tmp_path / "copy", progress=lambda done, total: seen.append((done, total)))
    assert seen and seen[-1][0] == seen[-1][1] and all(a <= b for a, b in seen)
    key = {"encryption_key": KEY_VARIABLE} if stores.encrypted else {}  # an encrypted store's copy: same key
    copy = PersistDict(tmp_path / "copy", clock=lambda: clock[0], background_thread="disabled", **key)
    try:
        assert list(copy.items()) == list(d.items())
        assert exported(copy)[1:] == exported(d)[1:]
        assert copy.check().ok
    finally:
        copy.close()


def test_backup_refuses_a_directory_that_holds_something(stores: Stores, tmp_path: Path) -> None:
    """A backup never writes into a non-empty directory."""
    d = stores.open()
    d["a"] = 1
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "file").write_text("mine")
    with pytest.raises(DestinationNotEmptyError):
        d.backup(tmp_path / "taken")
    assert (tmp_path / "taken" / "file").read_text() == "mine"


def test_operations_refuse_inside_a_transaction(stores: Stores, tmp_path: Path) -> None:
    """backup, compact and import_from inside transaction() raise TransactionError and change nothing."""
    d = stores.open()
    with d.transaction():
        d["a"] = 1
        with pytest.raises(TransactionError):
            d.backup(tmp_path / "b")
        with pytest.raises(TransactionError):
            d.compact()
        with pytest.raises(TransactionError):
            d.import_from(io.StringIO(""))
    assert d["a"] == 1 and not (tmp_path / "b").exists()


def test_progress_of_check_expire_compact_and_import(stores: Stores) -> None:
    """Each long operation reports (done, total), never past total, and ends with done == total."""
    clock = [1_000_000.0]
    d = stores.open(clock=lambda: clock[0])
    for i in range(1500):
        d.set(f"k{i}", i, ttl=10 if i % 2 else None)
    clock[0] += 20
    calls: dict[str, list[tuple[int, int]]] = {}

    def recorder(name: str) -> Any:
        calls[name] = []
        return lambda done, total: calls[name].append((done, total))

    assert d.check(progress=recorder("check")).ok
    assert d.expire(progress=recorder("expire")) == 750
    d.compact(progress=recorder("compact"))
    buffer = io.StringIO()
    d.export(buffer)
    buffer.seek(0)
    assert stores.open().import_from(buffer, progress=recorder("import")) == 750
    for name, seen in calls.items():
        assert seen, name
        assert all(0 <= done <= total for done, total in seen), name
        assert seen[-1][0] == seen[-1][1], name
    assert calls["import"][-1] == (750, 750) and calls["check"][-1] == (1500, 1500)


def test_restore_refuses_memory(stores: Stores, tmp_path: Path) -> None:
    """Restoring into ':memory:' is refused with a clear error."""
    d = stores.open()
    d["a"] = 1
    d.backup(tmp_path / "b")
    with pytest.raises(ValueError, match="':memory:'"):
        PersistDict.restore(tmp_path / "b", ":memory:")


def _refusing_dumps(value: Any) -> bytes:
    """A value codec that refuses everything, quoting the value in its exception (as codecs do)."""
    raise ValueError(f"cannot encode {value!r}")


def test_an_import_error_never_shows_the_value(stores: Stores) -> None:
    """A value the store's codec refuses: ExportFormatError naming the line, without the value's
    text and without chaining the codec's exception (which quotes it)."""
    source = stores.open()
    source["k"] = "SECRET-CANARY"
    buffer = io.StringIO()
    source.export(buffer)
    d = stores.open(value_serializer=_refusing_dumps, value_unserializer=pickle.loads)
    buffer.seek(0)
    with pytest.raises(ExportFormatError, match="line 2") as caught:
        d.import_from(buffer)
    assert "SECRET-CANARY" not in str(caught.value) and caught.value.__cause__ is None
    assert caught.value.__suppress_context__ and len(d) == 0
