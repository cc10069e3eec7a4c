"""The LMDB engine's internals that the tests of tests/engines/lmdb/ reach into, gathered in one place:
when the engine's modules move, only this file changes. Tests elsewhere use the public API."""

from __future__ import annotations

from typing import Any

from PersistDict import PersistDict
from PersistDict._codec.record import pack_record, unpack_record
from PersistDict.engines.lmdb.entries import pack_order
from PersistDict.engines.lmdb.feed import CHANGE_LOG_KEPT
from PersistDict.engines.lmdb.housekeeping import CLOCK_SLACK, LEASE, LONGEST_LEASE, try_take_lease
from PersistDict.engines.lmdb.slots import probe_slot
from PersistDict.engines.lmdb.txn import TABLES, change_log_slot, encode_seq

# the modules that child-process scripts import by name
STORAGE_MODULE = "PersistDict.engines.lmdb.env"
MAINTENANCE_MODULE = "PersistDict.engines.lmdb.housekeeping"

__all__ = ["CHANGE_LOG_KEPT", "CLOCK_SLACK", "LEASE", "LONGEST_LEASE", "MAINTENANCE_MODULE", "STORAGE_MODULE",
           "TABLES", "change_log_slot", "encode_seq", "lease_holder", "pack_order", "pack_record", "probe_slot",
           "slot_of", "engine_of", "eviction_rng", "try_take_lease", "unpack_record"]


def engine_of(store: PersistDict) -> Any:
    """The LMDB engine object under an open store (its environment, tables and transactions)."""
    return store._engine.storage


def eviction_rng(store: PersistDict) -> Any:
    """The random source the engine samples eviction candidates with (seed it for a reproducible test)."""
    return store._engine._rng


def slot_of(store: PersistDict, key: Any) -> bytes:
    """The records-table slot where ``key``'s collision chain starts in ``store``."""
    return store._engine.slots.slot(store._keys.lookup(key))


def lease_holder(store: PersistDict) -> str:
    """The name under which ``store``'s maintenance takes the lease."""
    return store._maintenance.holder
