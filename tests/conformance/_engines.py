"""The engines the conformance suite runs on, and the factory that opens their stores."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

from PersistDict import PersistDict


ENGINES = ["lmdb", "memory", "redis"]  # every engine the package ships


class Stores:
    """Opens stores of one engine for a test; each open() is a new, empty store. All are closed at teardown."""

    def __init__(self, engine: str, directory: Path, redis_url: str | None = None) -> None:
        self.engine = engine
        self.redis_url = redis_url  # the test server's (engine "redis"): each open() takes a new namespace
        self.persists = engine != "memory"  # whether close() then reopen() keeps the contents
        self._directory = directory
        self._opened: list[PersistDict] = []

    def open(self, **options: Any) -> PersistDict:
        if self.engine == "memory":
            return self._open(":memory:", options)
        if self.engine == "redis":
            options.setdefault("namespace", f"test-{uuid.uuid4().hex}")
            return self._open(self.redis_url, options)
        return self._open(self._directory / f"store-{len(self._opened)}", options)

    def reopen(self, store: PersistDict, **options: Any) -> PersistDict:
        """Close ``store`` and open its location again (only for engines that persist)."""
        assert self.persists, f"the {self.engine} engine keeps nothing after close()"
        store.close()
        if self.engine == "redis":
            options.setdefault("namespace", store._settings["namespace"])
        return self._open(store.path, options)

    def _open(self, location: Any, options: dict[str, Any]) -> PersistDict:
        options.setdefault("background_thread", "disabled")
        store = PersistDict(location, **options)
        self._opened.append(store)
        return store

    def close_all(self) -> None:
        for store in self._opened:
            store.close()
