"""Shared fixtures of every folder: fresh database directories and instances closed after each test."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from PersistDict import PersistDict
from _redis import RedisServer


@pytest.hookimpl(tryfirst=True)  # before -m deselects by marker
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Tests under tests/reliability/ carry the ``reliability`` marker (run on one Python version in CI)."""
    reliability = Path(__file__).parent / "reliability"
    for item in items:
        if reliability in item.path.parents:
            item.add_marker(pytest.mark.reliability)


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "db"


@pytest.fixture
def make_db(db_path: Path) -> Iterator[Callable[..., PersistDict]]:
    """Open PersistDict instances (default: on ``db_path``, no background thread); close them at teardown."""
    opened: list[PersistDict] = []

    def make(path: Any = None, **kwargs: Any) -> PersistDict:
        kwargs.setdefault("background_thread", "disabled")
        instance = PersistDict(db_path if path is None else path, **kwargs)
        opened.append(instance)
        return instance

    yield make
    for instance in opened:
        instance.close()


@pytest.fixture
def db(make_db: Callable[..., PersistDict]) -> PersistDict:
    return make_db()


@pytest.fixture
def path(tmp_path: Path) -> str:
    """``db_path`` as a str (the thread and process tests hand it to workers)."""
    return str(tmp_path / "db")


@pytest.fixture
def opened() -> Iterator[Callable[..., PersistDict]]:
    """Open PersistDict instances on any path through this (no background thread); closed at teardown."""
    instances: list[PersistDict] = []

    def open_(path: str, **kwargs: Any) -> PersistDict:
        kwargs.setdefault("background_thread", "disabled")
        d = PersistDict(path, **kwargs)
        instances.append(d)
        return d

    yield open_
    for d in instances:
        d.close()


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The URL of a redis-server this test session started (stopped after it); fails if redis-server is missing."""
    server = RedisServer(tmp_path_factory.mktemp("redis"))
    server.start()
    yield server.url
    server.stop()
