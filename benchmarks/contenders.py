"""One adapter per contender: the same operations, each in its library's natural form.

Every adapter imports its library lazily (in ``open``), so a worker process
only ever loads the contender it measures. The loops live inside the adapter
methods so that the per-operation overhead of the harness is the same plain
``for`` loop for everyone.

Conventions: keys are ``str``; ``get_keys`` raises ``KeyError`` on a missing
key; ``batch_*`` use the library's single-transaction form where it has one
(see ``BATCH_NOTES``), otherwise a loop.
"""

from __future__ import annotations

import os
import pickle
import sys
from collections.abc import Iterable
from typing import Any

from common import ORIGINAL_DIR, ORIGINAL_VERSION, REPO_ROOT

LMDB_MAP_SIZE = 1 << 35  # virtual address space only

BATCH_NOTES = {
    "dict": "dict.update / dict comprehension",
    "lmdb_sync": "one write txn / one read txn",
    "lmdb_nosync": "one write txn / one read txn",
    "pd": "set_many / get_many (one txn each)",
    "pd_fast": "set_many / get_many (one txn each)",
    "diskcache": "loop inside cache.transact() / plain loop of gets (no get_many)",
    "sqlitedict": "update() = executemany + one commit / plain loop of gets",
    "shelve": "loop then sync() / plain loop of gets",
    "pd_orig": "loop of d[k] = v (its update() is dict.update: never reaches disk) / loop of gets",
}


class Adapter:
    name = "base"

    def load(self) -> None:
        """Import the library (untimed: open times exclude imports)."""

    def open(self, path: str) -> None:
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError

    def version(self) -> str:
        return ""

    # single-op loops ------------------------------------------------------
    def set_items(self, pairs: list[tuple[str, Any]]) -> None:
        d = self.d
        for k, v in pairs:
            d[k] = v

    def get_keys(self, keys: list[str]) -> Any:
        d = self.d
        v = None
        for k in keys:
            v = d[k]
        return v

    def contains_keys(self, keys: list[str]) -> int:
        d = self.d
        n = 0
        for k in keys:
            if k in d:
                n += 1
        return n

    def delete_keys(self, keys: list[str]) -> None:
        d = self.d
        for k in keys:
            del d[k]

    def iter_keys(self) -> int:
        n = 0
        for _ in self.d.keys():
            n += 1
        return n

    # batches --------------------------------------------------------------
    def batch_set(self, pairs: list[tuple[str, Any]]) -> None:
        self.set_items(pairs)

    def batch_get(self, keys: list[str]) -> dict[str, Any]:
        d = self.d
        return {k: d[k] for k in keys}

    # single ops for the mixed workloads ----------------------------------
    def get(self, k: str) -> Any:
        return self.d[k]

    def set(self, k: str, v: Any) -> None:
        self.d[k] = v

    # untimed bulk load (fastest form the library offers)
    def populate(self, pairs: Iterable[tuple[str, Any]], chunk: int = 10_000) -> None:
        buf: list[tuple[str, Any]] = []
        for pair in pairs:
            buf.append(pair)
            if len(buf) >= chunk:
                self.batch_set(buf)
                buf = []
        if buf:
            self.batch_set(buf)


class DictAdapter(Adapter):
    name = "dict"

    def open(self, path: str) -> None:
        self.d: dict[str, Any] = {}

    def close(self) -> None:
        self.d = {}

    def version(self) -> str:
        return sys.version.split()[0]

    def batch_set(self, pairs: list[tuple[str, Any]]) -> None:
        self.d.update(pairs)


class LmdbAdapter(Adapter):
    """py-lmdb + pickle, one transaction per single operation."""

    def __init__(self, sync: bool) -> None:
        self.sync = sync
        self.name = "lmdb_sync" if sync else "lmdb_nosync"

    def load(self) -> None:
        import lmdb

        self._lmdb = lmdb

    def open(self, path: str) -> None:
        os.makedirs(path, exist_ok=True)
        self.env = self._lmdb.open(path, map_size=LMDB_MAP_SIZE, sync=self.sync, metasync=self.sync,
                             max_readers=512)

    def close(self) -> None:
        self.env.close()

    def version(self) -> str:
        return self._lmdb.__version__

    def set_items(self, pairs: list[tuple[str, Any]]) -> None:
        env = self.env
        dumps = pickle.dumps
        for k, v in pairs:
            with env.begin(write=True) as txn:
                txn.put(k.encode(), dumps(v))

    def get_keys(self, keys: list[str]) -> Any:
        env = self.env
        loads = pickle.loads
        v = None
        for k in keys:
            with env.begin() as txn:
                raw = txn.get(k.encode())
            if raw is None:
                raise KeyError(k)
            v = loads(raw)
        return v

    def contains_keys(self, keys: list[str]) -> int:
        env = self.env
        n = 0
        for k in keys:
            with env.begin() as txn:
                if txn.get(k.encode()) is not None:
                    n += 1
        return n

    def delete_keys(self, keys: list[str]) -> None:
        env = self.env
        for k in keys:
            with env.begin(write=True) as txn:
                if not txn.delete(k.encode()):
                    raise KeyError(k)

    def iter_keys(self) -> int:
        n = 0
        with self.env.begin() as txn:
            for raw in txn.cursor().iternext(keys=True, values=False):
                raw.decode()
                n += 1
        return n

    def batch_set(self, pairs: list[tuple[str, Any]]) -> None:
        dumps = pickle.dumps
        with self.env.begin(write=True) as txn:
            for k, v in pairs:
                txn.put(k.encode(), dumps(v))

    def batch_get(self, keys: list[str]) -> dict[str, Any]:
        loads = pickle.loads
        out = {}
        with self.env.begin() as txn:
            for k in keys:
                raw = txn.get(k.encode())
                if raw is not None:
                    out[k] = loads(raw)
        return out

    def get(self, k: str) -> Any:
        with self.env.begin() as txn:
            raw = txn.get(k.encode())
        if raw is None:
            raise KeyError(k)
        return pickle.loads(raw)

    def set(self, k: str, v: Any) -> None:
        with self.env.begin(write=True) as txn:
            txn.put(k.encode(), pickle.dumps(v))


OURS_ROOT = str(REPO_ROOT)  # the worker points this at run.py's snapshot (or, for pd_base, the baseline)


def _import_ours():
    root = OURS_ROOT
    if sys.path[0] != root:
        sys.path.insert(0, root)
    import PersistDict as package

    where = os.path.dirname(os.path.abspath(package.__file__))
    if where != os.path.join(root, "PersistDict"):
        raise ImportError(f"imported PersistDict from {where}, expected it from {root}")
    return package


def _import_original():
    target = str(ORIGINAL_DIR)
    if not os.path.isfile(os.path.join(target, "PersistDict", "__init__.py")):
        raise ImportError(f"original PersistDict not installed in {target} (run.py installs it)")
    # Nothing else may provide a PersistDict: drop path entries holding one (a
    # checkout of this repository, an editable install's .pth entry) and
    # setuptools' editable-install finders, then put the --target dir first.
    sys.path[:] = [target] + [p for p in sys.path
                              if not os.path.isdir(os.path.join(p or ".", "PersistDict"))]
    sys.meta_path[:] = [f for f in sys.meta_path if "editable" not in type(f).__module__.lower()
                        and "editable" not in getattr(f, "__name__", "").lower()]
    import PersistDict as package

    where = os.path.dirname(os.path.abspath(package.__file__))
    if where != os.path.join(target, "PersistDict") or package.__VERSION__ != ORIGINAL_VERSION:
        raise ImportError(f"imported PersistDict {getattr(package, '__VERSION__', '?')} from {where}, "
                          f"expected {ORIGINAL_VERSION} from {target}")
    return package


class PersistDictAdapter(Adapter):
    """This repository's PersistDict, with its defaults except the durability mode."""

    def __init__(self, durability: str | None, name: str = "", **options: Any) -> None:
        self.durability = durability
        self.options = options
        self.name = name or ("pd" if durability is None else f"pd_{durability}")

    def load(self) -> None:
        self._package = _import_ours()

    def open(self, path: str) -> None:
        package = self._package
        kwargs = dict(self.options)
        if self.durability is not None:
            kwargs["durability"] = self.durability
        self.d = package.PersistDict(path, **kwargs)

    def close(self) -> None:
        self.d.close()

    def version(self) -> str:
        return self._package.__version__

    def batch_set(self, pairs: list[tuple[str, Any]]) -> None:
        self.d.set_many(pairs)

    def batch_get(self, keys: list[str]) -> dict[str, Any]:
        return self.d.get_many(keys)


class OriginalPersistDictAdapter(Adapter):
    """PersistDict 0.2.14 from PyPI (installed with --target into benchmarks/work/original)."""

    name = "pd_orig"

    def __init__(self, **options: Any) -> None:
        self.options = options

    def load(self) -> None:
        self._package = _import_original()

    def open(self, path: str) -> None:
        package = self._package
        self.d = package.PersistDict(path, **self.options)

    def close(self) -> None:
        d = self.d
        stop = getattr(d, "_stop_background_thread", None)
        if stop is not None:
            stop()
        self.d = None

    def version(self) -> str:
        return self._package.__VERSION__


class DiskcacheAdapter(Adapter):
    name = "diskcache"

    def load(self) -> None:
        import diskcache

        self._mod = diskcache

    def open(self, path: str) -> None:
        self.d = self._mod.Cache(path)

    def close(self) -> None:
        self.d.close()

    def version(self) -> str:
        return self._mod.__version__

    def iter_keys(self) -> int:
        n = 0
        for _ in self.d:
            n += 1
        return n

    def batch_set(self, pairs: list[tuple[str, Any]]) -> None:
        d = self.d
        with d.transact():
            for k, v in pairs:
                d[k] = v


class SqliteDictAdapter(Adapter):
    name = "sqlitedict"

    def load(self) -> None:
        import sqlitedict

        self._mod = sqlitedict

    def open(self, path: str) -> None:
        sqlitedict = self._mod
        os.makedirs(path, exist_ok=True)
        # autocommit=True: every single write is committed (and, with sqlite's default
        # synchronous=FULL and journal_mode=DELETE, fsynced) before it returns.
        # outer_stack=False only drops the caller's stack from error logs; it saves a
        # traceback.extract_stack() per call and changes no durability.
        self.d = sqlitedict.SqliteDict(os.path.join(path, "db.sqlite"), autocommit=True, outer_stack=False)

    def close(self) -> None:
        self.d.close()

    def version(self) -> str:
        return getattr(self._mod, "__version__", "")

    def batch_set(self, pairs: list[tuple[str, Any]]) -> None:
        self.d.update(pairs)  # one executemany, then one commit

    def populate_bulk(self, path: str, pairs: Iterable[tuple[str, Any]], chunk: int) -> None:
        """Write sqlitedict's own table with sqlite3 directly (large stores only).

        SqliteDict.update() queues every row separately through its worker
        thread (~8k rows/s here, minutes for 1M rows). The file is the same:
        sqlitedict creates the table, rows are encoded with sqlitedict.encode.
        """
        import sqlite3

        self.open(path)
        table, file = self.d.tablename, self.d.filename
        self.close()
        encode = self._mod.encode
        conn = sqlite3.connect(file)
        buf: list[tuple[str, Any]] = []
        for k, v in pairs:
            buf.append((k, encode(v)))
            if len(buf) >= chunk:
                conn.executemany(f'REPLACE INTO "{table}" (key, value) VALUES (?, ?)', buf)
                conn.commit()
                buf = []
        if buf:
            conn.executemany(f'REPLACE INTO "{table}" (key, value) VALUES (?, ?)', buf)
            conn.commit()
        conn.close()


class ShelveAdapter(Adapter):
    name = "shelve"

    def load(self) -> None:
        import dbm  # noqa: F401
        import shelve  # noqa: F401

    def open(self, path: str) -> None:
        import dbm
        import shelve

        os.makedirs(path, exist_ok=True)
        file = os.path.join(path, "shelf")
        self.d = shelve.open(file, flag="c", writeback=False)
        self.backend = dbm.whichdb(file) or "?"

    def close(self) -> None:
        self.d.close()

    def version(self) -> str:
        return f"python {sys.version.split()[0]}, backend {self.backend}"

    def batch_set(self, pairs: list[tuple[str, Any]]) -> None:
        d = self.d
        for k, v in pairs:
            d[k] = v
        d.sync()

    def populate(self, pairs: Iterable[tuple[str, Any]], chunk: int = 10_000) -> None:
        # dbm.dumb rewrites its whole index on every sync(): sync once at the end
        d = self.d
        for k, v in pairs:
            d[k] = v
        d.sync()


def make_adapter(name: str) -> Adapter:
    if name == "dict":
        return DictAdapter()
    if name == "lmdb_sync":
        return LmdbAdapter(sync=True)
    if name == "lmdb_nosync":
        return LmdbAdapter(sync=False)
    if name == "pd":
        return PersistDictAdapter(None)
    if name == "pd_fast":
        return PersistDictAdapter("fast")
    if name == "pd_base":  # the worker imports it from the baseline copy (run.py --baseline)
        return PersistDictAdapter(None, name="pd_base")
    if name == "diskcache":
        return DiskcacheAdapter()
    if name == "sqlitedict":
        return SqliteDictAdapter()
    if name == "shelve":
        return ShelveAdapter()
    if name == "pd_orig":
        return OriginalPersistDictAdapter()
    raise ValueError(name)
