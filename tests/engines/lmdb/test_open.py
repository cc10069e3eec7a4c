"""Opening a store: a data file shorter than its last page number (healthy when LMDB lists the
missing pages free, truncated otherwise), a missing data file, and directories others can write."""

from __future__ import annotations

import os
import random
import signal
import stat
import struct
import warnings
from pathlib import Path

import pytest

import PersistDict as package
from PersistDict import CorruptedDatabaseError, InsecureDatabaseWarning, PersistDict

from .test_storage import run_child

# LMDB's meta page (64-bit): MDB_page header (16 bytes), then MDB_meta: FREE_DBI's md_root at 24 + 40,
# mm_last_pg at 120, mm_txnid at 128
_FREE_ROOT, _LAST_PAGE, _TXNID = 16 + 24 + 40, 16 + 120, 16 + 128


def _current_meta(data_file: Path) -> tuple[int, int, int]:
    """(page size, last page number, free tree root) of the current meta page, read from the file."""
    data = data_file.read_bytes()
    page_size = struct.unpack_from("<I", data, 16 + 24)[0]
    metas = [(struct.unpack_from("<Q", data, base + _TXNID)[0], base) for base in (0, page_size)]
    base = max(metas)[1]
    last_page, free_root = (struct.unpack_from("<Q", data, base + offset)[0] for offset in (_LAST_PAGE, _FREE_ROOT))
    return page_size, last_page, free_root


def _is_short(db_path: Path) -> bool:
    """Whether the data file is shorter than (last page + 1) * page size: what used to be refused."""
    page_size, last_page, _ = _current_meta(db_path / "data.mdb")
    return os.path.getsize(db_path / "data.mdb") < (last_page + 1) * page_size


def _delete_all_in_one_transaction(db_path: Path) -> None:
    """The issue's reproduction: 200 entries written in a batch, then deleted in one transaction."""
    d = PersistDict(db_path, background_thread=False)
    d.set_many({f"k{i}": "x" * 500 for i in range(200)})
    with d.transaction():
        for i in range(200):
            del d[f"k{i}"]
    d["survivor"] = "here"
    d.close()


# LMDB itself (py-lmdb, no PersistDict) reads every table, then commits a write (which reads the
# free-page tree): a page in use that the file lacks kills it with SIGBUS
RAW_LMDB_CHILD = """
import lmdb
env = lmdb.open({path!r}, subdir=True, max_dbs=10)
names = [key for key, _ in env.begin().cursor()]
total = 0
for name in names:
    with env.begin(db=env.open_db(name, create=False)) as txn:
        total += sum(len(key) + len(value) for key, value in txn.cursor())
with env.begin(write=True) as txn:
    txn.put(b"probe", b"x")
    txn.delete(b"probe")
print("read", total)
"""

CORRUPTION_CHILD = """
from PersistDict import PersistDict, CorruptedDatabaseError
try:
    d = PersistDict({path!r}, background_thread="disabled")
    print("opened", len(d), sum(1 for _ in d.items()))
except CorruptedDatabaseError as exc:
    assert isinstance(exc, OSError)
    print("corrupted:", exc)
"""


def test_store_shortened_by_a_transaction_opens(db_path: Path) -> None:
    """The store of the issue's reproduction (file shorter than its last page number, the pages
    past its end free) opens with its data: it was refused as truncated before."""
    _delete_all_in_one_transaction(db_path)
    assert _is_short(db_path)  # the state the old size check refused
    raw = run_child(RAW_LMDB_CHILD.format(path=str(db_path)))  # LMDB itself reads every page of it
    assert raw.returncode == 0 and raw.stdout.startswith("read"), (raw.returncode, raw.stderr)
    with PersistDict(db_path, background_thread=False) as d:
        assert dict(d.items()) == {"survivor": "here"}
        assert d.check().ok
        d["after"] = "reopened"
    with PersistDict(db_path, background_thread=False) as d:
        assert d["after"] == "reopened"


def test_random_workloads_never_refuse_a_healthy_store(tmp_path: Path) -> None:
    """Seeded rounds of sets, deletes, batches and transactions with small and big values, each
    followed by a reopen: every store opens with exactly the expected entries, including the
    rounds that left the file shorter than its last page number."""
    rng = random.Random(15)
    short_rounds = 0
    for store in range(40):  # young stores: their transactions take new pages at the file's end
        db_path = tmp_path / f"db{store}"
        oracle: dict[str, bytes] = {}
        for _ in range(3):
            with PersistDict(db_path, background_thread="disabled", durability="fast") as d:
                for _ in range(rng.randrange(1, 4)):
                    _random_step(d, oracle, rng)
            short_rounds += _is_short(db_path)
            with PersistDict(db_path, background_thread="disabled", durability="fast") as d:
                assert dict(d.items()) == oracle
    assert short_rounds >= 4  # the workload does reach the shorter-file case (8 times with this seed)


def _random_step(d: PersistDict, oracle: dict[str, bytes], rng: random.Random) -> None:
    def value() -> bytes:  # past ~2 KB a value takes overflow pages
        return rng.randbytes(rng.choice((10, 300, 500, 500, 800, 1_000, 3_000, 40_000)))

    def new_keys(count: int) -> list[str]:
        return [f"k{rng.getrandbits(40)}" for _ in range(count)]

    kind = rng.choice(("set", "delete", "batch", "transaction", "purge"))
    if kind == "set":
        key = rng.choice(sorted(oracle)) if oracle and rng.random() < 0.5 else new_keys(1)[0]
        d[key] = oracle[key] = value()
    elif kind == "delete":
        for key in rng.sample(sorted(oracle), min(len(oracle), rng.randrange(1, 20))):
            del d[key], oracle[key]
    elif kind == "batch":
        batch = {key: value() for key in new_keys(rng.randrange(1, 300))}
        d.set_many(batch)
        oracle.update(batch)
    elif kind == "purge":  # the case: many deletes in one transaction
        with d.transaction():
            for key in rng.sample(sorted(oracle), int(len(oracle) * rng.uniform(0.3, 1))):
                del d[key], oracle[key]
    else:
        with d.transaction():
            for key in new_keys(rng.randrange(1, 300)):
                d[key] = oracle[key] = value()
                if rng.random() < 0.6:
                    victim = rng.choice(sorted(oracle))
                    del d[victim], oracle[victim]


def _assert_refused(db_path: Path, lmdb_would_crash: bool = True) -> str:
    """PersistDict refuses the store with CorruptedDatabaseError (its child exits normally); LMDB
    alone, in a child, is killed by SIGBUS on it (the missing page is really in use)."""
    result = run_child(CORRUPTION_CHILD.format(path=str(db_path)))
    assert result.returncode == 0, (result.returncode, result.stderr)
    assert result.stdout.startswith("corrupted:"), result.stdout
    assert str(db_path) in result.stdout
    if lmdb_would_crash:
        raw = run_child(RAW_LMDB_CHILD.format(path=str(db_path)))
        assert raw.returncode == -signal.SIGBUS, (raw.returncode, raw.stdout, raw.stderr)
    return result.stdout


@pytest.mark.parametrize("cut", ["half", "one page", "one byte"])
def test_truncated_file_is_refused_without_a_signal(db_path: Path, cut: str) -> None:
    """A data file missing a page in use (cut to half, by its last page, by one byte) is refused
    with CorruptedDatabaseError, in a child whose exit is not a signal."""
    with PersistDict(db_path, background_thread="disabled") as d:
        d.update({f"key{i}": "v" * 200 for i in range(3000)})
        d["big"] = b"b" * 200_000
    data_file = db_path / "data.mdb"
    page_size, last_page, _ = _current_meta(data_file)
    size = os.path.getsize(data_file)
    assert size == (last_page + 1) * page_size  # the fast path's case: the file ends at its last page
    os.truncate(data_file, {"half": size // 2, "one page": size - page_size, "one byte": size - 1}[cut])
    # one byte short, LMDB reads the page's last byte as zero (the file's last memory page is mapped)
    _assert_refused(db_path, lmdb_would_crash=cut != "one byte")


def test_short_store_with_a_damaged_free_tree_is_refused(db_path: Path) -> None:
    """When the file is shorter than its last page number and the free-page tree that would vouch
    for the missing pages is damaged, the store is refused (CorruptedDatabaseError, no signal)."""
    _delete_all_in_one_transaction(db_path)
    data_file = db_path / "data.mdb"
    page_size, _, free_root = _current_meta(data_file)
    with open(data_file, "r+b") as handle:
        handle.seek(free_root * page_size)
        handle.write(b"\xff" * page_size)
    _assert_refused(db_path, lmdb_would_crash=False)  # the page is there, only damaged


def test_short_store_missing_a_page_in_use_is_refused(db_path: Path) -> None:
    """A store already shorter than its last page number (healthy), cut before a page in use (its
    free-page tree's root), is refused: the pages past the end are not all free."""
    _delete_all_in_one_transaction(db_path)
    data_file = db_path / "data.mdb"
    page_size, last_page, free_root = _current_meta(data_file)
    assert os.path.getsize(data_file) < (last_page + 1) * page_size  # the slow path's case
    os.truncate(data_file, free_root * page_size)
    _assert_refused(db_path)


def test_pages_past_the_end_not_listed_free_are_refused(db_path: Path) -> None:
    """A current meta page whose last page number lies past pages the free-page tree does not list
    (pages LMDB would take as in use) is refused, naming the first such page."""
    _delete_all_in_one_transaction(db_path)
    data_file = db_path / "data.mdb"
    page_size, last_page, _ = _current_meta(data_file)
    data = bytearray(data_file.read_bytes())
    current = max((struct.unpack_from("<Q", data, base + _TXNID)[0], base) for base in (0, page_size))[1]
    struct.pack_into("<Q", data, current + _LAST_PAGE, last_page + 5)
    data_file.write_bytes(bytes(data))
    stdout = _assert_refused(db_path, lmdb_would_crash=False)  # LMDB reads no page past its trees
    assert f"page {last_page + 1} is in use" in stdout


def test_missing_data_file_is_refused_when_the_marker_exists(db_path: Path) -> None:
    """A store whose marker says it was initialised but whose data file was deleted is refused with
    CorruptedDatabaseError naming the path and the missing file; nothing is created."""
    with PersistDict(db_path, background_thread="disabled") as d:
        d["k"] = "v"
    os.remove(db_path / "data.mdb")
    before = sorted(os.listdir(db_path))
    with pytest.raises(CorruptedDatabaseError) as info:
        PersistDict(db_path, background_thread="disabled")
    assert str(db_path) in str(info.value) and "data.mdb is missing" in str(info.value)
    assert sorted(os.listdir(db_path)) == before


def _insecure_warnings(db_path: Path) -> list[warnings.WarningMessage]:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        PersistDict(db_path, background_thread="disabled").close()
    found = [w for w in caught if issubclass(w.category, InsecureDatabaseWarning)]
    assert all(w.filename == __file__ for w in found)  # points at the caller's line
    return found


def test_store_created_by_persistdict_gives_no_insecure_warning(db_path: Path) -> None:
    """A store PersistDict created (0o700 directory, 0o600 files, our owner) opens without warning."""
    assert _insecure_warnings(db_path) == []
    assert _insecure_warnings(db_path) == []


def test_world_writable_directory_warns(db_path: Path) -> None:
    """A database directory others may write (chmod 0o777) gives an InsecureDatabaseWarning naming it."""
    db_path.mkdir(mode=0o700)
    os.chmod(db_path, 0o777)
    found = _insecure_warnings(db_path)
    assert len(found) == 1
    assert str(db_path) in str(found[0].message) and "all users" in str(found[0].message)
    assert "InsecureDatabaseWarning" in package.__all__
    with warnings.catch_warnings():  # the README's way to refuse such stores
        warnings.simplefilter("error", InsecureDatabaseWarning)
        with pytest.raises(InsecureDatabaseWarning):
            PersistDict(db_path, background_thread="disabled")


def test_group_writable_data_file_warns(db_path: Path) -> None:
    """A data file its group may write gives an InsecureDatabaseWarning naming the file."""
    PersistDict(db_path, background_thread="disabled").close()
    os.chmod(db_path / "data.mdb", 0o660)
    found = _insecure_warnings(db_path)
    assert [str(db_path / "data.mdb") in str(w.message) and "its group" in str(w.message) for w in found] == [True]


def test_store_owned_by_another_user_warns_even_root(db_path: Path) -> None:
    """A store owned by another uid warns, root included (that user could make root run code)."""
    PersistDict(db_path, background_thread="disabled").close()
    assert os.geteuid() == 0, "this test chowns the store to another uid: run it as root"
    for path in (db_path, db_path / "data.mdb"):
        os.chown(path, 4242, -1)
        assert stat.S_IMODE(os.stat(path).st_mode) & 0o022 == 0
    found = _insecure_warnings(db_path)
    assert len(found) == 2
    assert all("owned by uid 4242" in str(w.message) for w in found)
