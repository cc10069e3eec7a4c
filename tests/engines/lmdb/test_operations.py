"""Backup, compaction and restore of stores on disk, with other processes using them."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import _operations as ops
import pytest

from PersistDict import DestinationNotEmptyError, NotADatabaseDirectoryError, PersistDict, StoreInUseError


def opened(path: Path, **options: object) -> PersistDict:
    return PersistDict(path, background_thread="disabled", **options)  # type: ignore[arg-type]


def test_backup_is_one_snapshot_while_another_process_writes(tmp_path: Path) -> None:
    """Every backup taken while another process commits holds a + b == 0 (one consistent snapshot)."""
    store = tmp_path / "store"
    opened(store).close()
    writer = ops.start(ops.BALANCED_WRITER, store, tmp_path / "stop")
    d = opened(store)
    try:
        rounds = []
        for n in range(6):
            for compact in (True, False):
                target = tmp_path / f"backup-{n}-{compact}"
                d.backup(target, compact=compact)
                rounds.append(ops.assert_balanced(target))
    finally:
        d.close()
        total = ops.stop_writer(writer, tmp_path / "stop")
    assert rounds == sorted(rounds) and rounds[-1] <= total
    assert len(set(rounds)) > 1  # the writer went on meanwhile


def test_backup_leaves_out_the_maintenance_lease_and_held_locks(tmp_path: Path) -> None:
    """A lock held in the original is free in the copy; the copy's format record is the original's."""
    d = opened(tmp_path / "store", value_serializer=None, value_unserializer=None)
    d["k"] = "v"
    held = d.lock("job", ttl=600)
    assert held.acquire()
    d.backup(tmp_path / "copy")
    copy = opened(tmp_path / "copy", value_serializer=None, value_unserializer=None)
    try:
        assert copy["k"] == "v"
        assert not d.lock("job", ttl=600, blocking=False).acquire()  # held in the original
        assert copy.lock("job", ttl=600, blocking=False).acquire()
        assert copy.info()["values"] == "raw"
    finally:
        copy.close()
        held.release()
        d.close()


def test_compact_gives_space_back_and_keeps_everything(tmp_path: Path) -> None:
    """After deleting 90% of the entries, compaction shrinks the file; entries, order and times stay; writes go on."""
    d = opened(tmp_path / "store")
    try:
        d.update({f"k{i}": "x" * 1000 for i in range(3000)})
        for i in range(3000):
            if i % 10:
                del d[f"k{i}"]
        before = (list(d.items()), [d.metadata(k) for k in d])
        sizes = d.compact()
        assert sizes["bytes_after"] < sizes["bytes_before"] / 4
        assert os.path.getsize(tmp_path / "store" / "data.mdb") == sizes["bytes_after"]
        assert (list(d.items()), [d.metadata(k) for k in d]) == before
        d["after"] = 1
        assert d["after"] == 1 and d.check().ok
    finally:
        d.close()


def test_compact_is_refused_while_another_process_has_the_store_open(tmp_path: Path) -> None:
    """StoreInUseError, nothing changed, while another process holds the store; allowed once it closed."""
    d = opened(tmp_path / "store")
    try:
        d.update({f"k{i}": i for i in range(100)})
        holder = ops.start(ops.HOLDER, tmp_path / "store")
        try:
            size = os.path.getsize(tmp_path / "store" / "data.mdb")
            with pytest.raises(StoreInUseError, match="another process"):
                d.compact()
            assert os.path.getsize(tmp_path / "store" / "data.mdb") == size and len(d) == 100
        finally:
            ops.release(holder)
        d.compact()
        assert len(d) == 100
    finally:
        d.close()


def test_a_killed_process_does_not_keep_the_store_in_use(tmp_path: Path) -> None:
    """A process SIGKILLed with the store open no longer counts as a user: compaction goes ahead."""
    d = opened(tmp_path / "store")
    try:
        d["k"] = 1
        holder = ops.start(ops.HOLDER, tmp_path / "store")
        with pytest.raises(StoreInUseError):
            d.compact()
        holder.send_signal(signal.SIGKILL)
        holder.wait(timeout=30)
        d.compact()
        assert d["k"] == 1
    finally:
        d.close()


def test_an_opener_waits_for_a_compaction_and_its_write_lands(tmp_path: Path) -> None:
    """A process that opens the store during a compaction waits for it, then writes into the new file: kept."""
    store = tmp_path / "store"
    d = opened(store)
    d.update({f"k{i}": "x" * 500 for i in range(2000)})
    started: list[subprocess.Popen[str]] = []

    def progress(done: int, total: int) -> None:
        if not started:  # the copy is being written: the store is held exclusively
            code = ("import sys; from PersistDict import PersistDict; print('opening', flush=True); "
                    "d = PersistDict(sys.argv[1], background_thread='disabled'); d['late'] = 'kept'; d.close()")
            process = subprocess.Popen([sys.executable, "-c", code, str(store)], stdout=subprocess.PIPE, text=True)
            started.append(process)
            assert process.stdout.readline().strip() == "opening"  # type: ignore[union-attr]
            threading.Event().wait(0.5)  # time to reach the open, which must wait

    try:
        d.compact(progress=progress)
        assert started and started[0].wait(timeout=60) == 0
        assert d["late"] == "kept" and len(d) == 2001
    finally:
        d.close()


def test_compact_while_this_process_writes_loses_no_write(tmp_path: Path) -> None:
    """Threads writing during a compaction: every acknowledged write is there after it."""
    d = opened(tmp_path / "store")
    acknowledged: list[list[int]] = [[], [], []]
    stop = threading.Event()

    errors: list[BaseException] = []

    def write(n: int) -> None:
        i = 0
        try:
            while not stop.is_set() or i < 50:
                d[f"t{n}-{i}"] = i if n else d.get(f"t{n}-{i}", i)  # thread 0 reads too
                acknowledged[n].append(i)
                i += 1
        except BaseException as exc:  # noqa: BLE001 - the test fails on it below
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(n,)) for n in range(3)]
    try:
        for thread in threads:
            thread.start()
        ops.wait_until(lambda: all(len(a) > 20 for a in acknowledged), "the writers")
        d.compact()
        d.compact()
        stop.set()
        for thread in threads:
            thread.join(60)
        assert errors == []
        for n, done in enumerate(acknowledged):
            assert [d[f"t{n}-{i}"] for i in done] == done
        assert d.check().ok
    finally:
        stop.set()
        d.close()


def test_front_cache_stays_coherent_across_the_clock_reset(tmp_path: Path) -> None:
    """Compaction restarts the commit clock; a value cached before is not served once the clock comes back."""
    store = tmp_path / "store"
    d = opened(store)
    try:
        for i in range(40):
            d[f"pad{i}"] = i
        d["k"] = "old"
        assert d["k"] == "old" and d["k"] == "old"  # cached (admitted on the second read)
        d.flush_atimes()  # now, so that compact() commits nothing before its copy
        clock_before = d._feed.last_commit()
        assert d._front.valid_at == clock_before  # the cache is valid at the last commit
        d.compact()
        assert d._feed.last_commit() < clock_before
        body = f"""
d['k'] = 'new'
while d._feed.last_commit() < {clock_before}:
    d['pad'] = d._feed.last_commit()
"""
        code = ("import sys; from PersistDict import PersistDict; "
                "d = PersistDict(sys.argv[1], background_thread='disabled')\n" + body + "d.close()")
        subprocess.run([sys.executable, "-c", code, str(store)], check=True, timeout=60)
        assert d["k"] == "new"
    finally:
        d.close()


def test_restore_puts_a_backup_in_place(tmp_path: Path) -> None:
    """restore() refuses an open or non-empty store (unless overwrite), then the store equals the backup."""
    d = opened(tmp_path / "store")
    d.update({"a": 1, "b": 2})
    d.backup(tmp_path / "backup")
    d["c"] = 3
    with pytest.raises(StoreInUseError):
        PersistDict.restore(tmp_path / "backup", tmp_path / "store", overwrite=True)
    d.close()
    with pytest.raises(DestinationNotEmptyError):
        PersistDict.restore(tmp_path / "backup", tmp_path / "store")
    holder = ops.start(ops.HOLDER, tmp_path / "store")
    try:
        with pytest.raises(StoreInUseError):
            PersistDict.restore(tmp_path / "backup", tmp_path / "store", overwrite=True)
    finally:
        ops.release(holder)
    PersistDict.restore(tmp_path / "backup", tmp_path / "store", overwrite=True)
    PersistDict.restore(tmp_path / "backup", tmp_path / "fresh")
    for where in ("store", "fresh"):
        restored = opened(tmp_path / where)
        try:
            assert dict(restored.items()) == {"a": 1, "b": 2} and restored.check().ok
            restored["more"] = 1
        finally:
            restored.close()


def test_restore_refuses_what_is_not_a_store(tmp_path: Path) -> None:
    """A directory without a store is named in the error and nothing is created in its place."""
    (tmp_path / "empty").mkdir()
    with pytest.raises(NotADatabaseDirectoryError, match="not a PersistDict store"):
        PersistDict.restore(tmp_path / "empty", tmp_path / "store")
    assert not (tmp_path / "store").exists()


def test_a_copy_refused_by_its_target_leaks_no_descriptor(tmp_path: Path) -> None:
    """A copy whose target file cannot be created (here: it exists) raises and leaves no pipe open."""
    from PersistDict.engines.lmdb import copies

    d = opened(tmp_path / "store")
    d["a"] = 1
    target = tmp_path / "taken"
    target.write_bytes(b"")
    storage = d._engine.storage
    try:
        before = len(os.listdir("/proc/self/fd"))
        for _ in range(3):
            with storage.reading() as txn, pytest.raises(FileExistsError):
                copies._copy(storage.env, txn.raw, str(target), True, None, 0)
        assert len(os.listdir("/proc/self/fd")) == before
    finally:
        d.close()
