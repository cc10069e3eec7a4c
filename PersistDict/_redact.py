"""Describe a codec's exception without the value bytes it may hold.

A codec's own exception can carry the value it failed on: ``UnicodeDecodeError`` keeps the
whole input in ``.object`` (and shows it in its repr), ``json.JSONDecodeError`` in ``.doc``,
pickle's "invalid load key, 'x'" quotes a byte of it. So PersistDict never chains them (neither
``__cause__`` nor ``__context__``): its ``CodecError`` says the exception's type and, where the
codec reports one, the position, in words that hold no byte of the value.
"""

from __future__ import annotations

import json


def describe(exc: BaseException) -> str:
    """``exc``'s type and position, e.g. "UnicodeDecodeError ('utf-8': invalid start byte at
    bytes 3-4)"; never its message or arguments, which may quote the value."""
    name = type(exc).__name__
    if isinstance(exc, UnicodeError) and isinstance(getattr(exc, "start", None), int):
        encoding = getattr(exc, "encoding", "?")
        return f"{name} ({encoding!r}: {exc.reason} at bytes {exc.start}-{exc.end})"  # type: ignore[attr-defined]
    if isinstance(exc, json.JSONDecodeError):  # msg is one of json's fixed phrases
        return f"{name} ({exc.msg} at line {exc.lineno} column {exc.colno}, char {exc.pos})"
    return name


def key_text(key: object) -> str:
    """How a message names a key: its repr, cut to 80 characters."""
    text = repr(key)
    return text if len(text) <= 80 else text[:77] + "..."
