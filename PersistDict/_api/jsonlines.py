"""The export format (``d.export`` / ``d.import_from``): JSON lines, one entry a line.

The first line is a header::

    {"persistdict": "export", "version": 1, "keys": "<key codec>", "values": "<value codec>", "entries": N}

then one line per live entry, in insertion order::

    {"key": K, "value": V, "ctime": 1.7e9, "mtime": 1.7e9, "atime": 1.7e9, "expires": null}

Times are UNIX seconds (``expires``: null for never). A key or value that JSON carries exactly
(str, int, finite float, bool, null; values also lists and str-keyed dicts of those) is written
as itself; anything else is a one-member object whose name starts with ``$``:

- ``{"$bytes": "<base64>"}``: bytes;
- ``{"$key": "<base64>"}``: a key in the store's key encoding (the header's ``keys``);
- ``{"$stored": "<base64>", "kind": k}``: a value as the store keeps it, in its value codec (the
  header's ``values``): import it into a store with the same codec.

So a dict value with a member named ``$...`` is written as ``$stored`` too: on import, an object
with such a member is always a tag.
"""

from __future__ import annotations

import base64
import json
import math
from typing import Any

from ..exceptions import ExportFormatError

VERSION = 1
HEADER_NAME = "persistdict"
HEADER_VALUE = "export"
_PLAIN_KEYS = (str, int, float, bool, type(None))


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def faithful(value: Any) -> bool:
    """Whether JSON gives ``value`` back equal and of the same types (a tuple would come back a list)."""
    kind = type(value)
    if kind is str or kind is int or kind is bool or value is None:
        return True
    if kind is float:
        return math.isfinite(value)
    if kind is list:
        return all(faithful(item) for item in value)
    if kind is dict:
        return all(type(name) is str and faithful(item) for name, item in value.items())
    return False


def header(keys: str, values: str, entries: int) -> str:
    return json.dumps({HEADER_NAME: HEADER_VALUE, "version": VERSION, "keys": keys, "values": values,
                       "entries": entries})


def encode_key(key: Any, encoded: bytes) -> Any:
    """``key`` as the export writes it; ``encoded``: its exact encoding in the store's key codec."""
    if type(key) in _PLAIN_KEYS and faithful(key):
        return key
    if type(key) is bytes:
        return {"$bytes": _b64(key)}
    return {"$key": _b64(encoded)}


def encode_value(decoded: Any, readable: bool, kind: int, payload: bytes) -> Any:
    """A value as the export writes it: itself when JSON carries it, else tagged. ``readable``:
    whether ``decoded`` is the value (False: the value codec could not decode it)."""
    if readable:
        if faithful(decoded) and not (type(decoded) is dict and any(name.startswith("$") for name in decoded)):
            return decoded
        if type(decoded) is bytes:
            return {"$bytes": _b64(decoded)}
    return {"$stored": _b64(payload), "kind": kind}


def entry_line(key: Any, value: Any, ctime: float, mtime: float, atime: float, expires: float) -> str:
    return json.dumps({"key": key, "value": value, "ctime": ctime, "mtime": mtime, "atime": atime,
                       "expires": expires or None}, ensure_ascii=False, allow_nan=False)


def check_header(line: str, where: str) -> dict[str, Any]:
    try:
        head = json.loads(line)
    except ValueError:
        head = None
    if not isinstance(head, dict) or head.get(HEADER_NAME) != HEADER_VALUE:
        raise ExportFormatError(f"{where}: not a PersistDict export (its first line is not the export header)")
    if head.get("version") != VERSION:
        raise ExportFormatError(f"{where}: export format version {head.get('version')!r}; "
                                f"this version reads {VERSION}")
    return head


def _tag(obj: Any) -> str | None:
    if type(obj) is dict and any(type(name) is str and name.startswith("$") for name in obj):
        return next(name for name in obj if name.startswith("$"))
    return None


def _unb64(text: Any, where: str) -> bytes:
    try:
        return base64.b64decode(text, validate=True)
    except (TypeError, ValueError):
        raise ExportFormatError(f"{where}: not base64") from None


def parse_line(line: str, where: str) -> tuple[tuple[str, Any], tuple[str, Any], float, float, float, float]:
    """((key form, key), (value form, value), ctime, mtime, atime, expires) of an entry line. Forms:
    "plain" (the object), "bytes", "key" (encoded key bytes), "stored" ((kind, payload))."""
    try:
        entry = json.loads(line)
    except ValueError as exc:
        raise ExportFormatError(f"{where}: not JSON ({exc})") from None
    if type(entry) is not dict or "key" not in entry or "value" not in entry:
        raise ExportFormatError(f"{where}: not an entry (an object with \"key\" and \"value\")")
    times: list[float | None] = []
    for name in ("ctime", "mtime", "atime", "expires"):
        value = entry.get(name)
        if value is None:
            times.append(None)
        elif type(value) in (int, float) and math.isfinite(value):
            times.append(float(value))
        else:
            raise ExportFormatError(f"{where}: {name} is not a number of seconds")
    if times[0] is None:
        raise ExportFormatError(f"{where}: no ctime")
    ctime = times[0]
    mtime = times[1] if times[1] is not None else ctime
    atime = times[2] if times[2] is not None else mtime
    expires = times[3] or 0.0
    return _parse_key(entry["key"], where), _parse_value(entry["value"], where), ctime, mtime, atime, expires


def _parse_key(key: Any, where: str) -> tuple[str, Any]:
    tag = _tag(key)
    if tag is None:
        if type(key) not in _PLAIN_KEYS:
            raise ExportFormatError(f"{where}: a key that is a JSON {type(key).__name__} (tagged keys are objects "
                                    "with one $ member)")
        return "plain", key
    if tag == "$bytes":
        return "bytes", _unb64(key[tag], where)
    if tag == "$key":
        return "key", _unb64(key[tag], where)
    raise ExportFormatError(f"{where}: unknown key tag {tag!r}")


def _parse_value(value: Any, where: str) -> tuple[str, Any]:
    tag = _tag(value)
    if tag is None:
        return "plain", value
    if tag == "$bytes":
        return "bytes", _unb64(value[tag], where)
    if tag == "$stored":
        kind = value.get("kind")
        if type(kind) is not int:
            raise ExportFormatError(f"{where}: a $stored value without its kind")
        return "stored", (kind, _unb64(value[tag], where))
    raise ExportFormatError(f"{where}: unknown value tag {tag!r}")
