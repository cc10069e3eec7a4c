"""The engine factory of the conformance suite: every test here runs once per engine in ENGINES."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from PersistDict import PersistDict

from ._engines import ENGINES, Stores


@pytest.fixture(params=ENGINES)
def stores(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Stores]:
    """The engine factory: opens fresh stores on the engine this run of the test is for."""
    url = request.getfixturevalue("redis_url") if request.param.startswith("redis") else None
    factory = Stores(request.param, tmp_path, url)
    yield factory
    factory.close_all()


@pytest.fixture
def db(stores: Stores) -> PersistDict:
    """A fresh store on the engine under test, no background thread (tests/conftest.py's db, per engine)."""
    return stores.open()
