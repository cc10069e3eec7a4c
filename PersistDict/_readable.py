"""Reading past damage: every entry that can be read, and which ones cannot, without deleting any.

``items()``, ``values()``, ``copy()`` and ``get_many()`` raise on the first damaged entry: a
store that lost data should not look whole. :meth:`PersistDict.readable_items` is the way to get
everything else out of it, and to learn which keys to restore or drop (``check()``).
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any, NamedTuple

from .engines.lmdb import entries
from .engines.lmdb.slots import Slots, is_hashed_slot
from ._codec.record import unpack_record
from ._redact import key_text
from .exceptions import CodecError, CorruptedRecordError, KeyEncodingError, PersistDictError

if TYPE_CHECKING:
    from ._accesses import PendingAccesses
    from ._codec.keys import KeyCodec
    from .engines.lmdb.env import Storage, Txn

_UNKNOWN: Any = object()


class DamagedEntry(NamedTuple):
    """An entry :meth:`PersistDict.readable_items` could not read."""

    key: Any  # the key (as looked up), or None where the damage hides it
    error: PersistDictError  # why: CorruptedRecordError (damaged bytes) or CodecError (the codec failed)


class ReadableItems(NamedTuple):
    """What :meth:`PersistDict.readable_items` returns."""

    items: dict[Any, Any]  # every entry that could be read, in insertion order (or in the order asked)
    damaged: list[DamagedEntry]  # every one that could not; nothing was deleted


# (key or _UNKNOWN, slot, lookup, exact, kind, payload, seq), or (key or _UNKNOWN, slot, error)
_Raw = tuple[Any, ...]


def readable_items(storage: Storage, now: float, codec: KeyCodec, slots: Slots, touched: PendingAccesses,
                   decode_value: Callable[..., Any], keys: Iterable[Any] | None) -> ReadableItems:
    """The body of :meth:`PersistDict.readable_items`: one read transaction, decoding after it."""
    raw: list[_Raw | None] = []
    if keys is None:
        with storage.reading() as txn:
            for _, row in txn.iter_order():
                raw.append(_read_row(txn, bytes(row), now))
    else:
        wanted = [(key, codec.encode(key)[0]) for key in keys]
        with storage.reading() as txn:
            for key, lookup in wanted:
                try:
                    record = entries.find(txn, lookup, slots.slot(lookup)).record
                except CorruptedRecordError as exc:
                    raw.append((key, b"", exc))
                    continue
                if record is not None and (not record.expires or record.expires > now):
                    raw.append((key, b"", record.lookup, record.exact, record.kind, bytes(record.payload), record.seq))
        for entry in raw:
            if entry is not None and len(entry) == 7:
                touched.note(entry[6], now)  # a read, as in get_many
    return _decode(raw, codec.decode, decode_value)


def _read_row(txn: Txn, row: bytes, now: float) -> _Raw | None:
    """What the order row ``row`` leads to, copied out of the transaction (None: expired)."""
    try:
        expires, _, slot = entries.unpack_order(row)
    except (struct.error, IndexError):
        return (_UNKNOWN, b"", CorruptedRecordError("order row shorter than its header"))
    if expires and expires <= now:
        return None
    data = txn.record(slot)
    if data is None:
        return (_UNKNOWN, slot, CorruptedRecordError("order index points to a missing record"))
    try:
        record = unpack_record(data)
    except CorruptedRecordError as exc:
        return (_UNKNOWN, slot, exc)
    if record.expires and record.expires <= now:
        return None
    return (_UNKNOWN, slot, record.lookup, record.exact, record.kind, bytes(record.payload), record.seq)


def _decode(raw: list[_Raw | None], decode_key: Callable[[bytes, bytes | None], Any],
            decode_value: Callable[..., Any]) -> ReadableItems:
    items: dict[Any, Any] = {}
    damaged: list[DamagedEntry] = []
    for entry in raw:
        if entry is None:
            continue
        key, slot = entry[0], entry[1]
        if len(entry) == 3:  # the record could not be read: its key is its slot's, if that is one
            if key is _UNKNOWN:
                key = _slot_key(slot, decode_key)
            damaged.append(DamagedEntry(key, _named(key, entry[2])))
            continue
        _, _, lookup, exact, kind, payload, _ = entry
        if key is _UNKNOWN:
            try:
                key = decode_key(lookup, exact)
            except Exception:  # noqa: BLE001 - a key codec's own error: report the entry, go on
                damaged.append(DamagedEntry(None, KeyEncodingError("a stored key cannot be decoded by the key codec")))
                continue
        try:
            items[key] = decode_value(kind, payload, key)
        except (CodecError, CorruptedRecordError) as exc:
            damaged.append(DamagedEntry(key, exc))
    return ReadableItems(items, damaged)


def _slot_key(slot: bytes, decode_key: Callable[[bytes, bytes | None], Any]) -> Any:
    """The key an exact slot spells (the slot is its lookup encoding); None for a hashed slot."""
    if not slot or is_hashed_slot(slot):
        return None
    try:
        return decode_key(slot, None)
    except Exception:  # noqa: BLE001 - a damaged slot may not decode
        return None


def _named(key: Any, exc: CorruptedRecordError) -> CorruptedRecordError:
    if key is None:
        return CorruptedRecordError(f"an entry whose key is not known is corrupted: {exc}")
    return CorruptedRecordError(f"entry for key {key_text(key)} is corrupted: {exc}")
