"""Reading past damage: every entry that can be read, and which ones cannot, without deleting any.

``items()``, ``values()``, ``copy()`` and ``get_many()`` raise on the first damaged entry: a
store that lost data should not look whole. :meth:`PersistDict.readable_items` is the way to get
everything else out of it, and to learn which keys to restore or drop (``check()``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any, NamedTuple

from ._redact import key_text
from .exceptions import CodecError, CorruptedRecordError, KeyEncodingError, PersistDictError

if TYPE_CHECKING:
    from ._codec.keys import KeyCodec

_UNKNOWN: Any = object()


class DamagedEntry(NamedTuple):
    """An entry :meth:`PersistDict.readable_items` could not read."""

    key: Any  # the key (as looked up), or None where the damage hides it
    error: PersistDictError  # why: CorruptedRecordError (damaged bytes) or CodecError (the codec failed)


class ReadableItems(NamedTuple):
    """What :meth:`PersistDict.readable_items` returns."""

    items: dict[Any, Any]  # every entry that could be read, in insertion order (or in the order asked)
    damaged: list[DamagedEntry]  # every one that could not; nothing was deleted


def readable_items(engine: Any, now: float, codec: KeyCodec, decode_value: Callable[..., Any],
                   keys: Iterable[Any] | None) -> ReadableItems:
    """The body of :meth:`PersistDict.readable_items`: the engine reads in one snapshot (see
    ``Engine.readable``), decoding runs after it."""
    if keys is None:
        found = engine.readable(None, now)
        raw = [None if entry is None else (_UNKNOWN, *entry) for entry in found]
    else:
        wanted = [(key, codec.encode(key)[0]) for key in keys]
        found = engine.readable([lookup for _, lookup in wanted], now)
        raw = [None if entry is None else (key, *entry) for (key, _), entry in zip(wanted, found)]
        for entry in found:
            if entry is not None and len(entry) == 5:
                engine.accesses.note(entry[4], now)  # a read, as in get_many
    return _decode(raw, codec.decode, decode_value)


def _decode(raw: list[tuple[Any, ...] | None], decode_key: Callable[[bytes, bytes | None], Any],
            decode_value: Callable[..., Any]) -> ReadableItems:
    items: dict[Any, Any] = {}
    damaged: list[DamagedEntry] = []
    for entry in raw:
        if entry is None:
            continue
        key = entry[0]
        if len(entry) == 3:  # the record could not be read: its key is the one its place spells, if any
            if key is _UNKNOWN:
                key = _spelled_key(entry[1], decode_key)
            damaged.append(DamagedEntry(key, _named(key, entry[2])))
            continue
        _, lookup, exact, kind, payload, _ = entry
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


def _spelled_key(lookup: bytes | None, decode_key: Callable[[bytes, bytes | None], Any]) -> Any:
    """The key a damaged entry's place spells (its lookup encoding, when the engine knows it); None if none."""
    if not lookup:
        return None
    try:
        return decode_key(lookup, None)
    except Exception:  # noqa: BLE001 - a damaged place may not decode
        return None


def _named(key: Any, exc: CorruptedRecordError) -> CorruptedRecordError:
    if key is None:
        return CorruptedRecordError(f"an entry whose key is not known is corrupted: {exc}")
    return CorruptedRecordError(f"entry for key {key_text(key)} is corrupted: {exc}")
