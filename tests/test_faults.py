"""Faults from outside an instance: close() racing other threads, other processes holding the
write lock or dying with reader slots, and the database directory deleted under an open store."""

from __future__ import annotations

import contextlib
import os
import random
import select
import shutil
import signal
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import pytest

from PersistDict import ClosedError, PersistDict, StorageError

CLOSE_RACE_ROUNDS = 40
HANG = 60  # seconds: only reached when something hangs
ROOT = str(Path(__file__).resolve().parents[1])


def start_child(code: str) -> subprocess.Popen[str]:
    """A fresh interpreter running ``code`` against this checkout, talking through its stdin/stdout."""
    script = f"import sys\nsys.path.insert(0, {ROOT!r})\n" + textwrap.dedent(code)
    return subprocess.Popen([sys.executable, "-c", script], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def run_child(code: str) -> subprocess.CompletedProcess[str]:
    script = f"import sys\nsys.path.insert(0, {ROOT!r})\n" + textwrap.dedent(code)
    return subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=HANG)


def fill_reader_table_and_die(path: Path) -> int:
    """A process takes every free reader slot of the store and is SIGKILLed holding them; returns how many."""
    filler = start_child(f"""
        import lmdb, time
        env = lmdb.open({str(path)!r}, max_readers=8192, max_dbs=8, max_spare_txns=0)
        held = []
        while True:
            try:
                held.append(env.begin())
            except lmdb.ReadersFullError:
                break
        print(len(held), flush=True)
        time.sleep(600)
    """)
    taken = int(filler.stdout.readline())
    filler.send_signal(signal.SIGKILL)
    filler.wait()
    filler.stdout.close()
    filler.stderr.close()
    filler.stdin.close()
    return taken


def _use_until_closed(d: PersistDict, worker: int, started: threading.Barrier, errors: list[BaseException]) -> None:
    """Mixed reads and writes on ``d`` until one raises; keep what it raised."""
    rng = random.Random(worker)
    started.wait()
    try:
        for n in range(1_000_000):
            key = f"k{rng.randrange(50)}"
            operation = n % 9
            if operation == 0:
                d.get(key)
            elif operation == 1:
                _ = key in d
            elif operation == 2:
                d[key] = n
            elif operation == 3:
                d.get(f"missing{n}")
            elif operation == 4:
                d.get_many([key, "k1", "k2"])
            elif operation == 5:
                len(d)
            elif operation == 6:
                d.pop(key, None)
            elif operation == 7:
                list(d.items())
            else:
                with d.transaction():
                    d[key] = -n
    except BaseException as exc:  # noqa: BLE001 - the test inspects every kind
        errors.append(exc)


def test_operations_losing_the_race_to_close_raise_closed_error(db_path: Path) -> None:
    """Threads using an instance while another thread closes it only ever see ClosedError."""
    seen: list[BaseException] = []
    for round_ in range(CLOSE_RACE_ROUNDS):
        d = PersistDict(db_path, background_thread="disabled")
        d.update({f"k{i}": i for i in range(50)})
        started = threading.Barrier(5)
        errors: list[BaseException] = []
        threads = [threading.Thread(target=_use_until_closed, args=(d, round_ * 4 + i, started, errors),
                                    daemon=True) for i in range(4)]
        for thread in threads:
            thread.start()
        started.wait()
        for _ in range(random.Random(round_).randrange(1, 200)):
            d.get("k1")
        closer = threading.Thread(target=d.close, daemon=True)
        closer.start()
        closer.join(HANG)
        assert not closer.is_alive(), "close() hung"
        for thread in threads:
            thread.join(HANG)
        assert len(errors) == 4
        seen += errors
    wrong = [exc for exc in seen if not isinstance(exc, ClosedError)]
    assert not wrong, f"{len(wrong)} of {len(seen)} were not ClosedError: {sorted({repr(e) for e in wrong})[:5]}"


def test_writes_after_the_directory_was_deleted_raise(db_path: Path) -> None:
    """After rm -rf of an open store, writes raise StorageError naming the path; reads go on."""
    d = PersistDict(db_path, background_thread="disabled", caching=False)
    d.update({"a": 1, "b": 2})
    shutil.rmtree(db_path)
    with pytest.raises(StorageError, match=str(db_path)):
        d["c"] = 3
    with pytest.raises(StorageError, match="deleted"):
        with d.transaction():
            d["c"] = 3
    with pytest.raises(StorageError, match="deleted"):
        d.set_many({"d": 4})
    with pytest.raises(StorageError, match="deleted"):
        del d["a"]
    assert d["a"] == 1 and d.get("b") == 2 and "c" not in d
    with contextlib.suppress(StorageError):  # the access times it could not write are reported
        d.close()
    assert d.closed


@pytest.mark.parametrize("writes_before", [0, 1, 300])
def test_writes_after_the_data_file_alone_was_unlinked_raise(db_path: Path, writes_before: int) -> None:
    """Unlinking data.mdb alone (the directory stays) is noticed at the next write too, however many
    writes ran since the last full check of the file's link count."""
    d = PersistDict(db_path, background_thread="disabled", caching=False)
    for i in range(writes_before):
        d[f"w{i}"] = i
    os.unlink(db_path / "data.mdb")
    with pytest.raises(StorageError, match="deleted"):
        d["c"] = 3
    with contextlib.suppress(StorageError):
        d.close()


def test_a_new_process_opens_a_store_whose_reader_table_is_full_of_dead_slots(db_path: Path) -> None:
    """A reader table filled by a SIGKILLed process (another one keeps the store open) does not stop an open."""
    with PersistDict(db_path, background_thread="disabled") as d:
        d["a"] = 1
    keeper = start_child(f"""
        from PersistDict import PersistDict
        d = PersistDict({str(db_path)!r}, background_thread="disabled")
        print(d["a"], flush=True)
        sys.stdin.readline()
    """)
    try:
        assert keeper.stdout.readline().strip() == "1"
        assert fill_reader_table_and_die(db_path) == 8191  # all but the keeper's
        opened = run_child(f"""
            from PersistDict import PersistDict
            d = PersistDict({str(db_path)!r}, background_thread="disabled", caching=False)
            print(d["a"], "a" in d)
        """)
        assert opened.stdout.split() == ["1", "True"], opened.stderr[-2000:]
    finally:
        keeper.communicate("done\n", timeout=HANG)


def test_an_open_process_reads_when_the_reader_table_fills_with_dead_slots(db_path: Path) -> None:
    """A process already open reaps dead processes' slots when a read finds the table full, then reads."""
    with PersistDict(db_path, background_thread="disabled") as d:
        d["a"] = 1
    keeper = start_child(f"""
        import os
        from PersistDict import PersistDict
        d = PersistDict({str(db_path)!r}, background_thread="disabled", caching=False)
        assert d["a"] == 1
        pid = os.fork()  # fork() drops this process's spare read transaction: the next read needs a slot
        if pid == 0:
            os._exit(0)
        os.waitpid(pid, 0)
        print("ready", flush=True)
        sys.stdin.readline()
        print(d["a"], "a" in d, d.get_many(["a"]), flush=True)
    """)
    try:
        assert keeper.stdout.readline().strip() == "ready"
        assert fill_reader_table_and_die(db_path) == 8192
        out, err = keeper.communicate("go\n", timeout=HANG)
        assert out.split() == ["1", "True", "{'a':", "1}"], err[-2000:]
    finally:
        if keeper.poll() is None:
            keeper.kill()
            keeper.wait()


def read_line_within(process: subprocess.Popen[str], seconds: float) -> str:
    """The next line ``process`` prints, or "" if it printed none within ``seconds`` (it hangs)."""
    ready, _, _ = select.select([process.stdout], [], [], seconds)
    return process.stdout.readline().strip() if ready else ""


@pytest.mark.parametrize("writer_state", ["in a transaction", "stopped in a transaction"])
def test_a_new_process_opens_and_reads_while_another_holds_the_write_lock(db_path: Path, writer_state: str) -> None:
    """Opening an existing store and reading it never wait for another process's write transaction."""
    writer = start_child(f"""
        from PersistDict import PersistDict
        d = PersistDict({str(db_path)!r})
        d.update({{"a": 1, "b": 2}})
        with d.transaction():
            d["b"] = 3
            print("holding", flush=True)
            sys.stdin.readline()
    """)
    reader = None
    try:
        assert read_line_within(writer, HANG) == "holding"
        if writer_state == "stopped in a transaction":
            writer.send_signal(signal.SIGSTOP)
        reader = start_child(f"""
            from PersistDict import PersistDict
            d = PersistDict({str(db_path)!r})
            print(d["a"], d.get("b"), "a" in d, len(d), sorted(d.items()), flush=True)
        """)
        # bounded: before the fix the open waited for the writer's commit, which never comes here
        assert read_line_within(reader, 20) == "1 2 True 2 [('a', 1), ('b', 2)]"
    finally:
        writer.send_signal(signal.SIGCONT)
        out, err = writer.communicate("done\n", timeout=HANG)
        assert writer.returncode == 0, err[-2000:]
        if reader is not None:
            _, err = reader.communicate(timeout=HANG)
            assert reader.returncode == 0, err[-2000:]
