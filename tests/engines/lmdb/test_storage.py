"""Storage: environment sharing, permissions, growth, large values, durability modes,
and clear errors for bad paths, full disks and damaged files."""

from __future__ import annotations

import os
import pickle
import resource
import signal
import stat
import subprocess
import sys
import textwrap
import threading
from collections.abc import Callable
from pathlib import Path

import pytest

from PersistDict import (
    CorruptedRecordError,
    NotADatabaseDirectoryError,
    PersistDict,
    PersistDictError,
)

from ._lmdb_access import engine_of

ROOT = str(Path(__file__).resolve().parents[3])


def run_child(code: str, *, preexec: Callable[[], None] | None = None) -> subprocess.CompletedProcess[str]:
    """Run ``code`` in a fresh interpreter that imports this checkout."""
    script = f"import sys\nsys.path.insert(0, {ROOT!r})\n" + textwrap.dedent(code)
    return subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120,
                          preexec_fn=preexec)


def test_two_instances_share_one_environment(db_path: Path, make_db: Callable[..., PersistDict]) -> None:
    """Two instances on one path in one process share the LMDB environment and see each other's writes."""
    first, second = make_db(), make_db()
    assert engine_of(first) is engine_of(second)
    first["a"] = 1
    assert second["a"] == 1
    second["a"] = 2
    assert first["a"] == 2
    del first["a"]
    assert "a" not in second
    first.close()
    second["b"] = 3  # the environment stays open while one instance uses it
    assert second["b"] == 3


def test_data_persists_across_reopen(db_path: Path) -> None:
    """Entries, their order and their values survive close and reopen."""
    with PersistDict(db_path, background_thread="disabled") as d:
        d.update({"x": 1, "y": [2], "z": {"k": "v"}})
        del d["x"]
        d["x"] = 10
    with PersistDict(db_path, background_thread="disabled") as d:
        assert list(d.items()) == [("y", [2]), ("z", {"k": "v"}), ("x", 10)]


def test_directory_and_file_permissions(db_path: Path, db: PersistDict) -> None:
    """The database directory is created 0o700 and its files 0o600."""
    db["k"] = "v"
    assert stat.S_IMODE(os.stat(db_path).st_mode) == 0o700
    for name in os.listdir(db_path):
        assert stat.S_IMODE(os.stat(db_path / name).st_mode) == 0o600, name


def test_path_is_a_file(tmp_path: Path) -> None:
    """A database path that is a regular file raises an error naming the path."""
    target = tmp_path / "file"
    target.write_text("not a directory")
    with pytest.raises(NotADatabaseDirectoryError) as info:
        PersistDict(target)
    assert str(target) in str(info.value)
    assert isinstance(info.value, NotADirectoryError) and isinstance(info.value, PersistDictError)


def test_permission_denied_names_the_path(tmp_path: Path) -> None:
    """A directory the process may not enter raises PermissionError naming the path."""
    target = tmp_path / "private"
    PersistDict(target, background_thread="disabled").close()
    os.chmod(tmp_path, 0o755)
    code = f"""
    import os
    from PersistDict import PersistDict, DatabasePermissionError
    if os.geteuid() == 0:  # root ignores modes: continue as 'nobody' (after the imports)
        os.setgid(65534)
        os.setuid(65534)
    try:
        PersistDict({str(target)!r}, background_thread="disabled")
    except DatabasePermissionError as exc:
        assert isinstance(exc, PermissionError)
        assert {str(target)!r} in str(exc), str(exc)
        print("denied")
    """
    if os.geteuid() != 0:
        os.chmod(target, 0)
    result = run_child(code)
    os.chmod(target, 0o700)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "denied"


def _limit_file_size() -> None:
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # get EFBIG instead of a signal
    resource.setrlimit(resource.RLIMIT_FSIZE, (4 * 1024 * 1024, 4 * 1024 * 1024))


def test_disk_full_raises_storage_full_and_keeps_data(db_path: Path) -> None:
    """When the file cannot grow, writes raise StorageFullError and acknowledged data stays intact."""
    code = f"""
    from PersistDict import PersistDict, StorageFullError
    d = PersistDict({str(db_path)!r}, background_thread="disabled")
    d["kept"] = "safe"
    try:
        for i in range(100):
            d[f"big{{i}}"] = b"x" * (1024 * 1024)
    except StorageFullError as exc:
        assert isinstance(exc, OSError)
        assert {str(db_path)!r} in str(exc)
        print("full at", i)
    assert d["kept"] == "safe"
    """
    result = run_child(code, preexec=_limit_file_size)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("full at")
    with PersistDict(db_path, background_thread="disabled") as d:
        assert d["kept"] == "safe"
        assert d.check().ok


@pytest.mark.slow
def test_large_value_64_mib(db: PersistDict) -> None:
    """A 64 MiB value is written and read back intact."""
    value = os.urandom(1024) * (64 * 1024)
    db["big"] = value
    assert db["big"] == value
    db["big"] = b"small"
    assert db["big"] == b"small"


@pytest.mark.slow
def test_map_grows_past_600_mib(make_db: Callable[..., PersistDict]) -> None:
    """Writing 600 MiB through a 16 MiB initial map grows the map automatically."""
    db = make_db(map_size=16 * 1024 * 1024, durability="fast")
    chunk = os.urandom(1024 * 1024)
    for i in range(600):
        db[i] = chunk
    db.update({f"batch{i}": chunk for i in range(20)})  # one transaction of 20 MiB
    assert len(db) == 620
    assert db[599] == chunk and db["batch19"] == chunk
    assert engine_of(db).info()["map_size"] > 600 * 1024 * 1024


def test_one_write_larger_than_twice_the_map(make_db: Callable[..., PersistDict]) -> None:
    """A single write needing several doublings of the map grows it until it fits (it used to retry forever)."""
    db = make_db(map_size=1 << 20)
    db["big"] = b"x" * (7 << 20)
    db.set_many({f"k{i}": b"y" * (1 << 20) for i in range(12)})
    assert len(db["big"]) == 7 << 20 and len(db) == 13
    assert engine_of(db).info()["map_size"] >= 16 << 20


@pytest.mark.parametrize(("value_size", "count"), [(3000, 232), (5000, 119), (1500, 232)])
def test_a_transaction_that_outgrows_the_map_as_it_commits_can_run_again(
        db_path: Path, make_db: Callable[..., PersistDict], value_size: int, count: int) -> None:
    """A transaction() whose writes fit the map but whose commit does not (the change log's row, or
    LMDB's own pages; these sizes hit both on a 1 MiB map) raises StorageFullError, releases the
    writer lock, grows the map, and commits when run again."""
    from PersistDict import StorageFullError
    db = make_db(map_size=1 << 20, value_serializer=None, value_unserializer=None)

    def run() -> None:
        with db.transaction():
            for j in range(count):
                db[f"key{j:05d}" + "k" * 40] = "x" * value_size

    with pytest.raises(StorageFullError, match="outgrew the map"):
        run()
    other = run_child(f"""
        from PersistDict import PersistDict
        d = PersistDict({str(db_path)!r}, background_thread="disabled")
        d["other"] = 1
        d.close()
    """)
    assert other.returncode == 0, other.stderr
    run()
    assert len(db) == count + 1


@pytest.mark.parametrize("first_read", ["getitem", "contains"])
def test_map_growth_seen_by_other_process(db_path: Path, make_db: Callable[..., PersistDict], first_read: str) -> None:
    """When another process grows the map, this one adopts the new size and keeps working, whichever
    read meets the grown map first (``d[k]`` and ``in`` each run their own transaction)."""
    db = make_db(map_size=2 * 1024 * 1024)
    db["before"] = 1
    code = f"""
    from PersistDict import PersistDict
    d = PersistDict({str(db_path)!r}, background_thread="disabled", map_size=2 * 1024 * 1024)
    for i in range(40):
        d[i] = bytes(256 * 1024)
    """
    result = run_child(code)
    assert result.returncode == 0, result.stderr
    assert engine_of(db).env.info()["map_size"] == 2 * 1024 * 1024, "test precondition: not adopted yet"
    if first_read == "contains":
        assert 39 in db and 40 not in db
    assert db[39] == bytes(256 * 1024)
    assert engine_of(db).env.info()["map_size"] > 2 * 1024 * 1024
    db["after"] = 2
    assert len(db) == 42


def test_reopening_with_a_small_map_does_not_grow_the_store_each_time(db_path: Path) -> None:
    """A process that opens with a map smaller than the store maps the store's size; growing
    from its own small map doubled the store's map size at every such open (a 5 MiB store reached
    64 TiB and then could not be mapped at all)."""
    for n in range(12):
        with PersistDict(db_path, map_size=1 << 20, background_thread="disabled") as d:
            d[n] = bytes(200_000)
            map_size = engine_of(d).info()["map_size"]
    assert map_size <= 16 << 20  # 2.4 MB of data: it grew to 4, 8 or 16 MiB, not 2**12 MiB
    with PersistDict(db_path, map_size=64 << 20, background_thread="disabled") as d:
        assert engine_of(d).info()["map_size"] == 64 << 20  # a larger map asked for is still taken


def test_a_store_once_mapped_huge_opens_and_grows_where_address_space_is_limited(db_path: Path) -> None:
    """The map size recorded in a store is the largest any process used and never shrinks; a
    process whose address space cannot hold it still opens the store and grows its own map from
    the data (it adopted the recorded size and failed: 'Cannot allocate memory')."""
    with PersistDict(db_path, map_size=1 << 44, background_thread="disabled") as d:  # 16 TiB, virtual
        d["k"] = "v"
    result = run_child(f"""
        import os
        from PersistDict import PersistDict
        with PersistDict({str(db_path)!r}, map_size=1 << 20, background_thread="disabled") as d:
            for i in range(20):
                d[i] = os.urandom(300_000)  # outgrows the 1 MiB map a few times
            assert d["k"] == "v" and len(d) == 21
        """, preexec=lambda: resource.setrlimit(resource.RLIMIT_AS, (4 << 30, 4 << 30)))
    assert result.returncode == 0, result.stderr


def test_opening_while_another_process_grows_the_map(db_path: Path) -> None:
    """Opening retries when another process grows the map meanwhile (py-lmdb's and our first
    transactions raised MDB_MAP_RESIZED in about 1 open of 10 here)."""
    PersistDict(db_path, map_size=1 << 20, background_thread="disabled").close()
    grower = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import os, sys
        sys.path.insert(0, {ROOT!r})
        from PersistDict import PersistDict
        d = PersistDict({str(db_path)!r}, durability="fast", map_size=1 << 20, background_thread="disabled")
        for i in range(400):
            d[i % 32] = os.urandom(1 << 20)
        d.close()
        """)])
    opened = 0
    try:
        while grower.poll() is None:
            with PersistDict(db_path, durability="fast", map_size=1 << 20, background_thread="disabled") as d:
                d.get(0)
            opened += 1
    finally:
        grower.wait(timeout=120)
    assert grower.returncode == 0 and opened > 20


@pytest.mark.parametrize("mode", ["full", "safe", "fast"])
def test_durability_modes(make_db: Callable[..., PersistDict], mode: str) -> None:
    """Each durability mode stores and reads values."""
    db = make_db(durability=mode)
    db["k"] = mode
    assert db["k"] == mode


def test_durability_must_match_within_a_process(make_db: Callable[..., PersistDict]) -> None:
    """One process opens a database with one durability; a second one is refused clearly."""
    make_db(durability="fast")
    with pytest.raises(ValueError, match="durability"):
        make_db(durability="full")
    with pytest.raises(ValueError):
        make_db(durability="sometimes")  # type: ignore[arg-type]


def test_killed_writer_loses_no_acknowledged_write(db_path: Path) -> None:
    """A process killed right after d[k]=v returned leaves that write on disk."""
    code = f"""
    import os, signal
    from PersistDict import PersistDict
    d = PersistDict({str(db_path)!r}, background_thread="disabled")
    d["acknowledged"] = "yes"
    os.kill(os.getpid(), signal.SIGKILL)
    """
    result = run_child(code)
    assert result.returncode == -signal.SIGKILL
    with PersistDict(db_path, background_thread="disabled") as d:
        assert d["acknowledged"] == "yes"


CORRUPTION_CHILD = """
from PersistDict import PersistDict, CorruptedDatabaseError
try:
    d = PersistDict({path!r}, background_thread="disabled")
    print("opened", len(d), list(d.items())[:1])
except CorruptedDatabaseError as exc:
    assert isinstance(exc, OSError)
    print("corrupted:", exc)
"""


def _damaged_db(db_path: Path, damage: Callable[[Path], None]) -> subprocess.CompletedProcess[str]:
    with PersistDict(db_path, background_thread="disabled") as d:
        d.update({f"key{i}": "v" * 200 for i in range(3000)})
    damage(db_path / "data.mdb")
    return run_child(CORRUPTION_CHILD.format(path=str(db_path)))


def test_truncated_to_zero_is_reported(db_path: Path) -> None:
    """A data file truncated to zero is reported as corrupted, not opened as a new empty store."""
    result = _damaged_db(db_path, lambda f: os.truncate(f, 0))
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("corrupted:")


def test_half_truncated_file_does_not_crash_the_process(db_path: Path) -> None:
    """A half-truncated data file raises CorruptedDatabaseError instead of killing the process (SIGBUS)."""
    result = _damaged_db(db_path, lambda f: os.truncate(f, os.path.getsize(f) // 2))
    assert result.returncode == 0, (result.returncode, result.stderr)
    assert result.stdout.startswith("corrupted:")
    assert str(db_path) in result.stdout


def test_overwritten_header_is_reported(db_path: Path) -> None:
    """A data file whose header was overwritten with garbage is reported clearly."""
    def scribble(f: Path) -> None:
        with open(f, "r+b") as handle:
            handle.write(os.urandom(8192 * 2))

    result = _damaged_db(db_path, scribble)
    assert result.returncode == 0, (result.returncode, result.stderr)
    assert result.stdout.startswith("corrupted:")


def test_flipped_byte_in_a_record_names_the_key(db_path: Path) -> None:
    """A flipped byte in a stored value raises CorruptedRecordError naming the key, never a wrong value."""
    marker = b"UNIQUE-MARKER-" * 4
    with PersistDict(db_path, background_thread="disabled") as d:
        d["victim"] = marker
        d["bystander"] = "fine"
    data = (db_path / "data.mdb").read_bytes()
    # copy-on-write leaves older copies of the page in the file: damage every copy
    (db_path / "data.mdb").write_bytes(data.replace(marker, b"X" + marker[1:]))
    with PersistDict(db_path, background_thread="disabled") as d:
        with pytest.raises(CorruptedRecordError, match="victim"):
            d["victim"]
        assert d["bystander"] == "fine"
        report = d.check()
        assert not report.ok and len(report.corrupted) == 1
        assert "victim" in d  # reported, not deleted
        d["victim"] = "rewritten"  # an overwrite replaces the damaged record
        assert d["victim"] == "rewritten"
        assert d.check(repair=True).repaired >= 0
        assert d.check().ok


def test_truncated_record_raises_and_leaves_no_transaction_open(db_path: Path) -> None:
    """A record cut shorter than its header: 'in' and reads raise CorruptedRecordError naming the key, and the
    failed read leaves no transaction counted open (a later map resize would otherwise wait for it forever)."""
    with PersistDict(db_path, background_thread="disabled", map_size=1 << 20) as d:
        for i in range(60):
            d[f"k{i}"] = "v" * 10_000  # over half of the 1 MiB map: the next transaction() grows it
        engine = engine_of(d)
        with engine.env.begin(write=True) as txn:  # damage the record of key "bad" behind the library's back
            txn.put(b"sbad", b"tiny", db=engine._records_db)
        with pytest.raises(CorruptedRecordError, match="bad"):
            assert "bad" in d  # raises before it can assert
        with pytest.raises(CorruptedRecordError, match="bad"):
            d["bad"]
        finished = threading.Event()

        def grow_and_write() -> None:
            with d.transaction():
                d["x"] = 1
            finished.set()

        thread = threading.Thread(target=grow_and_write, daemon=True)
        thread.start()
        assert finished.wait(20), "transaction() never finished: a read left its transaction counted open"
        assert d["x"] == 1 and engine.env.info()["map_size"] > 1 << 20


def test_instance_pickles_as_path_and_settings(db_path: Path, db: PersistDict) -> None:
    """A pickled instance reopens the same database with the same settings."""
    db["k"] = "v"
    clone = pickle.loads(pickle.dumps(db))
    try:
        assert clone.path == db.path and clone["k"] == "v"
        assert clone._settings == db._settings
    finally:
        clone.close()
