"""Keys and values on the command line: keys are typed as text and read as ``--key-type`` says;
keys and values are printed as text (``repr`` when not str) or as JSON (``--json``)."""

from __future__ import annotations

import ast
import base64
import json
import math
from typing import Any

KEY_TYPES = ("str", "int", "float", "bytes-hex", "json", "python")


def parse_key(text: str, key_type: str) -> Any:
    """The key ``text`` names: ``str`` itself; ``int``/``float`` a number; ``bytes-hex`` bytes given
    in hex (``00ff``); ``json`` a JSON value (arrays become tuples: a key must be hashable);
    ``python`` a Python literal (``(1, 'a')``, ``b'x'``, ``frozenset({1})``)."""
    try:
        if key_type == "str":
            return text
        if key_type == "int":
            return int(text)
        if key_type == "float":
            return float(text)
        if key_type == "bytes-hex":
            return bytes.fromhex(text)
        if key_type == "json":
            return _hashable(json.loads(text))
        if key_type == "python":
            if text.startswith("frozenset(") and text.endswith(")"):
                return frozenset(ast.literal_eval(text[len("frozenset("):-1] or "()"))
            return ast.literal_eval(text)
    except (ValueError, SyntaxError, TypeError) as exc:
        raise ValueError(f"{text!r} is not a {key_type} key ({exc})") from None
    raise ValueError(f"unknown key type {key_type!r}")


def _hashable(value: Any) -> Any:
    if isinstance(value, list):
        return tuple(_hashable(item) for item in value)
    if isinstance(value, dict):
        raise TypeError("a JSON object is not hashable: it cannot be a key")
    return value


def as_text(obj: Any) -> str:
    """How a key or value is printed: a str as itself, anything else as its repr."""
    return obj if type(obj) is str else repr(obj)


def as_json(obj: Any) -> Any:
    """A key or value as JSON: itself when JSON carries it, ``{"$bytes": base64}`` for bytes,
    ``{"$tuple": [...]}`` for tuples, else ``{"$repr": "..."}``."""
    kind = type(obj)
    if obj is None or kind in (str, int, bool) or (kind is float and math.isfinite(obj)):
        return obj
    if kind is bytes:
        return {"$bytes": base64.b64encode(obj).decode("ascii")}
    if kind is tuple:
        return {"$tuple": [as_json(item) for item in obj]}
    if kind is list:
        return [as_json(item) for item in obj]
    if kind is dict and all(type(name) is str and not name.startswith("$") for name in obj):
        return {name: as_json(item) for name, item in obj.items()}
    return {"$repr": repr(obj)}
