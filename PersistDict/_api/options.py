"""The constructor's options: their checks, their 0.2.x spellings, and the store's format record.

Every numeric option (constructor settings, ``ttl``, ``batch``) passes ``check_number``. A NaN passes every ``<`` and ``<=`` test written for it, so each option is
checked here for what it is: a real number (never a bool), finite unless
infinity has a meaning, and inside its range. Called before anything is opened,
so a refused option leaves the store as it was.
"""

from __future__ import annotations

import json
import math
import mmap
import sys
import threading
from typing import Any

from .._codec.format import check_format_row
from ..exceptions import CodecMismatchError, CorruptedRecordError

FORMAT_VERSION = 1
DURABILITY_MODES = ("fast", "full", "safe")


def check_number(name: str, value: Any, rule: str, minimum: float = 0.0, *, strict: bool = True,
                 maximum: float = math.inf) -> Any:
    """``value`` itself if it is a finite int or float above ``minimum`` (or equal to it unless
    ``strict``) and at most ``maximum``; TypeError for a bool or a non-number, else ValueError
    saying ``rule`` (what ``name`` must be)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a number, not {type(value).__name__} {value!r}")
    finite = isinstance(value, int) or math.isfinite(value)  # an int is finite, however large
    if not finite or not (value > minimum if strict else value >= minimum) or value > maximum:
        raise ValueError(f"{name} must be {rule}, not {value!r}")
    return value


def ttl_seconds(ttl: int | float | None) -> float | None:
    """``ttl`` as float seconds, or None; ValueError unless it is positive and finite (a NaN
    expiry would be live for some reads and expired for others)."""
    if ttl is None:
        return None
    return float(check_number("ttl", ttl, "positive, finite seconds", maximum=sys.float_info.max))


def settings_of(database_path: str, expiration_days: Any, key_serializer: Any, key_unserializer: Any,
                key_size_limit: Any, value_serializer: Any, value_unserializer: Any, caching: bool, verbose: bool,
                background_thread: Any, background_timeout: Any, name: str | None, *, durability: str,
                cache_max_entries: Any, cache_max_bytes: Any, maintenance_interval: Any,
                atime_flush_interval: Any, map_size: Any, max_items: Any, max_bytes: Any,
                clock: Any) -> dict[str, Any]:
    """The constructor's arguments checked and normalised (0.2.x spellings included): what
    ``__reduce__`` hands to another process, and what the 0.2.x attributes read back."""
    if durability not in DURABILITY_MODES:
        raise ValueError(f"durability must be one of {sorted(DURABILITY_MODES)}, not {durability!r}")
    if expiration_days is not None and expiration_days is not False:  # 0.2.x: 0, None (or False): no expiry
        check_number("expiration_days", expiration_days, "finite days >= 0 (0 or None: no expiry)",
                     strict=False)
    expiration_days = expiration_days or 0
    # 0.2.x clamps background_timeout up to 5 s, so a smaller one is no error; waits take at most TIMEOUT_MAX
    check_number("background_timeout", background_timeout, "finite seconds (below 5 counts as 5)", -math.inf,
                 maximum=threading.TIMEOUT_MAX - 5)
    check_number("maintenance_interval", maintenance_interval, "positive, finite seconds")
    check_number("atime_flush_interval", atime_flush_interval, "positive, finite seconds",
                 maximum=threading.TIMEOUT_MAX)
    check_number("key_size_limit", key_size_limit, "at least 1", 1, strict=False)
    check_number("cache_max_entries", cache_max_entries, "positive")
    check_number("cache_max_bytes", cache_max_bytes, "positive")
    check_number("map_size", map_size, "at least 1 MiB", 1 << 20, strict=False)
    if max_items is not None:
        check_number("max_items", max_items, "positive when given")
    if max_bytes is not None:  # a database page: the least one entry takes
        check_number("max_bytes", max_bytes, f"at least one database page ({mmap.PAGESIZE} bytes)",
                     mmap.PAGESIZE, strict=False)
    if isinstance(background_thread, str):
        background_thread = background_thread.lower()  # 0.2.x accepted "DISABLED"
    if background_thread not in (True, False, "disabled"):
        raise ValueError(f"background_thread must be True, False or 'disabled', not {background_thread!r}")
    if (key_serializer is None) != (key_unserializer is None):
        raise ValueError("key_serializer and key_unserializer must both be given or both be None")
    if (value_serializer is None) != (value_unserializer is None):
        raise ValueError("value_serializer and value_unserializer must both be given or both be None")
    return dict(
        expiration_days=expiration_days, key_serializer=key_serializer, key_unserializer=key_unserializer,
        key_size_limit=key_size_limit, value_serializer=value_serializer,
        value_unserializer=value_unserializer, caching=caching, verbose=verbose,
        background_thread=background_thread, background_timeout=background_timeout, name=name,
        durability=durability, cache_max_entries=cache_max_entries, cache_max_bytes=cache_max_bytes,
        maintenance_interval=maintenance_interval, atime_flush_interval=atime_flush_interval,
        map_size=map_size, max_items=max_items, max_bytes=max_bytes, clock=clock,
    )


def format_record(keys_description: str, key_size_limit: int, values_description: str) -> dict[str, Any]:
    """The store's format record: the layout version and the codecs its entries need."""
    return {"format": FORMAT_VERSION, "keys": keys_description, "key_size_limit": key_size_limit,
            "values": values_description}


def encode_format(record: dict[str, Any]) -> bytes:
    return json.dumps(record).encode()


def stored_format(raw: bytes | None) -> tuple[dict[str, Any] | None, str | None]:
    """(the stored format record or None, a warning when its row is damaged: unknown codecs,
    opened unchecked like a store without the row)."""
    if raw is None:
        return None, None
    try:
        return check_format_row(raw), None
    except CorruptedRecordError as exc:
        return None, str(exc)


def compare_formats(path: str, stored: dict[str, Any], wanted: dict[str, Any]) -> str | None:
    """CodecMismatchError if the store's entries would be unreachable with ``wanted`` (another
    layout or key encoding); the warning to give if only the value codec differs; else None."""
    if stored.get("format") != FORMAT_VERSION:
        raise CodecMismatchError(f"database {path!r} has format {stored.get('format')}, "
                                 f"this version reads format {FORMAT_VERSION}")
    if stored.get("keys") != wanted["keys"] or stored.get("key_size_limit") != wanted["key_size_limit"]:
        raise CodecMismatchError(
            f"database {path!r} was written with key encoding {stored.get('keys')!r} and "
            f"key_size_limit={stored.get('key_size_limit')}; opening it with {wanted['keys']!r} and "
            f"key_size_limit={wanted['key_size_limit']} would make its entries unreachable"
        )
    stored_values = str(stored.get("values"))
    # development versions recorded a function without its module ("dumps"): no mismatch by itself
    legacy_match = "." not in stored_values and wanted["values"].endswith("." + stored_values)
    if stored_values != wanted["values"] and not legacy_match:
        return (f"database {path!r} was written with value codec {stored.get('values')!r} and is "
                f"opened with {wanted['values']!r}: entries the new codec cannot decode raise CodecError "
                "on read and are listed by check(); nothing is deleted")
    return None
