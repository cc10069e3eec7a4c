"""What the mapping's parts (reads.py, writes.py, housekeeping.py and _core's PersistDict) share:
the type variables, the declared state of a store, and small helpers."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

from beartype import BeartypeConf, beartype

from .._redact import key_text
from .._settings import SettingsAttributes
from ..exceptions import CorruptedRecordError

if TYPE_CHECKING:  # defaults (PEP 696): a bare PersistDict(path) is a PersistDict[Any, Any]
    from typing_extensions import TypeVar as _DefaultedTypeVar
    K = _DefaultedTypeVar("K", default=Any)
    V = _DefaultedTypeVar("V", default=Any)
else:  # typing.TypeVar takes default= only from Python 3.13
    K, V = TypeVar("K"), TypeVar("V")
T = TypeVar("T")

typechecked = beartype(conf=BeartypeConf(violation_type=TypeError))

MISSING: Any = object()
# Keys whose Python equality is exactly the canonical codec's equality (no
# str equals a bytes or a number): the front cache is keyed by the object
# itself for them, so a hit needs no encoding. Other keys use (lookup,).
PLAIN_KEY_TYPES = frozenset({str, bytes})

if TYPE_CHECKING:
    from .._accesses import PendingAccesses
    from .._codec.record import Record
    from .._codec.values import ValueCodec
    from .._frontcache.cache import CachedEntry, FrontCache
    from .._maintenance import Maintenance
    from ..engines.base import Bounds, ChangeFeed, Commit, Engine


def corrupted(key: Any, exc: CorruptedRecordError) -> CorruptedRecordError:
    """The engine's CorruptedRecordError (which names no key), naming ``key``."""
    return type(exc)(f"entry for key {key_text(key)} is corrupted: {exc}")  # TamperedRecordError stays one


class StoreState(SettingsAttributes):
    """The attributes and methods a store's parts use from each other (declarations only)."""

    if TYPE_CHECKING:
        _values: ValueCodec
        _engine: Engine
        _feed: ChangeFeed
        _front: FrontCache | None
        _lock: threading.RLock
        _clock: Callable[[], float]
        _touched: PendingAccesses
        _maintenance: Maintenance
        _closed: bool
        _hits: int
        _misses: int
        _plain_cache_keys: bool
        counters: dict[str, int]
        max_items: int | None
        max_bytes: int | None
        _decode_value: Callable[..., Any]
        _encode_value: Callable[[Any], tuple[int, bytes]]
        _decode_cached: Callable[[bytes], Any]

        def _check_open(self) -> Engine: ...
        def _log(self, message: str, *args: Any) -> None: ...
        def _hand_over_hits(self) -> None: ...
        def _write_bounds(self) -> Bounds: ...
        def _record_key(self, record: Record) -> Any: ...
        def _is_live(self, expires: float, now: float) -> bool: ...
        def _cache_key(self, key: Any, lookup: bytes) -> Any: ...
        def _after_commit(self, lookups: list[bytes], commit: Commit) -> None: ...
        def _format(self) -> dict[str, Any]: ...
        def _hot_entry(self, key: Any) -> CachedEntry | None: ...
        def flush_atimes(self, batch: int = 500) -> int: ...
        def __len__(self) -> int: ...
