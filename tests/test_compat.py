"""Drop-in compatibility with PersistDict 0.2.x: its constructor arguments read back as attributes."""

from __future__ import annotations

import json
import pickle
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from loguru import logger

from PersistDict import PersistDict

SETTINGS = ("database_path", "expiration_days", "key_serializer", "key_unserializer", "key_size_limit",
            "value_serializer", "value_unserializer", "caching", "verbose", "background_thread",
            "background_timeout", "name")


def test_every_0_2_argument_reads_back(db_path: Path) -> None:
    """Each 0.2.x constructor argument, given by position, is an attribute with the value 0.2.x gave it."""
    with PersistDict(str(db_path), 7, json.dumps, json.loads, 100, None, None, False, True, "DISABLED", 60,
                     "cache") as d:
        assert d.database_path == db_path and isinstance(d.database_path, Path)
        assert d.expiration_days == 7
        assert d.key_serializer is json.dumps and d.key_unserializer is json.loads
        assert d.key_size_limit == 100
        assert d.value_serializer is None and d.value_unserializer is None
        assert d.caching is False and d.verbose is True
        assert d.background_thread == "disabled"
        assert d.background_timeout == 60
        assert d.name == "cache"
    logger.disable("PersistDict")  # verbose=True turned the library's logger on


def test_0_2_defaults_read_back(db_path: Path, make_db: Callable[..., PersistDict]) -> None:
    """Defaults read back as 0.2.x's: pickle values, caching on, quiet, 30 s, the directory's name."""
    d = make_db(background_thread=True)
    assert d.expiration_days == 0 and d.key_size_limit == 511
    assert d.value_serializer is pickle.dumps and d.value_unserializer is pickle.loads
    assert d.caching is True and d.verbose is False
    assert d.background_thread is True and d.background_timeout == 30
    assert d.name == db_path.name


def test_settings_read_back_as_in_effect(make_db: Callable[..., PersistDict]) -> None:
    """Values 0.2.x normalised read back normalised: timeout at least 5, key_size_limit at most
    511 (the effective one), expiration_days None as 0, background_thread False as False."""
    d = make_db(expiration_days=None, key_size_limit=4096, background_thread=False, background_timeout=1)
    assert d.background_timeout == 5 and d._maintenance.timeout == 5
    assert d.key_size_limit == 511 and d._keys.key_size_limit == 511
    assert d.expiration_days == 0
    assert d.background_thread is False


@pytest.mark.parametrize("attribute", SETTINGS)
def test_settings_are_read_only(attribute: str, make_db: Callable[..., PersistDict]) -> None:
    """Assigning a setting raises AttributeError and leaves it as it was."""
    d = make_db()
    before = getattr(d, attribute)
    replacement: Any = "changed"
    with pytest.raises(AttributeError):
        setattr(d, attribute, replacement)
    assert getattr(d, attribute) == before


def test_settings_survive_pickling(make_db: Callable[..., PersistDict]) -> None:
    """An instance handed to another process (pickled) reads back the same settings."""
    d = make_db(expiration_days=3, key_size_limit=64, caching=False, background_timeout=2, name="n")
    copy = pickle.loads(pickle.dumps(d))
    try:
        assert {name: getattr(copy, name) for name in SETTINGS} == {name: getattr(d, name) for name in SETTINGS}
    finally:
        copy.close()
