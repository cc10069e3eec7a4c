"""Opening the named tables of an existing store without waiting for other processes' writes.

py-lmdb opens a named database (``env.open_db`` without a transaction) in a write transaction, which
waits for LMDB's writer lock: a new process froze in its constructor while another process held a
long ``transaction()`` or was stopped inside one. A handle opened in a read transaction would do, but
only if that transaction is committed (LMDB exports the handle to the environment at commit), and
py-lmdb's ``commit()`` of a read transaction is a reset, which closes it: the handle then fails with
EINVAL in every later transaction. So Storage opens an existing store's tables inside each read
transaction (:func:`open_existing`), and for good, for the whole process, in an empty write
transaction just before its first write, which waits for the writer lock anyway.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import lmdb


def all_exist(env: lmdb.Environment, names: Iterable[str]) -> bool:
    """Whether every table in ``names`` exists: each is a key of the main database, which is always open."""
    with env.begin() as txn:
        return all(txn.get(name.encode()) is not None for name in names)


def open_existing(env: lmdb.Environment, txn: lmdb.Transaction, names: Iterable[str]) -> tuple[Any, ...]:
    """Handles on the tables ``names``, valid in ``txn`` (and after it, if it is a write that commits).

    LMDB: no other transaction of the process may open a table until ``txn`` ends (Storage's
    ``_tables_lock``)."""
    return tuple(env.open_db(name.encode(), txn=txn, create=False) for name in names)
