"""The store's format record (codec names, layout version) read back: a JSON object, or damage."""

from __future__ import annotations

import json
from typing import Any

from ..exceptions import CorruptedRecordError

# as engines/lmdb/rows.py names a damaged row: table, row, problem, remedy
_DAMAGED = ("table 'meta', row 'format', is damaged (not the JSON object of the store's format); "
            "check(repair=True) repairs it")


def check_format_row(value: bytes) -> dict[str, Any]:
    """The store's format its format record ``value`` holds; CorruptedRecordError if it is not one."""
    try:
        parsed = json.loads(value)
    except ValueError:  # UnicodeDecodeError included
        parsed = None
    if not isinstance(parsed, dict):
        raise CorruptedRecordError(_DAMAGED)
    return parsed
