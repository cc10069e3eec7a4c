"""The open stores of this process: flushed at exit, reset in a forked child.

A store registers itself when it opens and leaves at close. Held weakly (by id:
instances are unhashable, like dict), so the registry never keeps one alive.
"""

from __future__ import annotations

import atexit
import os
import weakref
from typing import Protocol


class Registered(Protocol):
    def close(self) -> None: ...
    def _after_fork_in_child(self) -> None: ...


_live: weakref.WeakValueDictionary[int, Registered] = weakref.WeakValueDictionary()


def register(store: Registered) -> None:
    _live[id(store)] = store


def unregister(store: Registered) -> None:
    _live.pop(id(store), None)


def stores_at(path: str) -> list[Registered]:
    """The open stores of this process at ``path``."""
    return [store for store in list(_live.values()) if getattr(store, "path", None) == path]


@atexit.register
def _flush_at_exit() -> None:
    for store in list(_live.values()):
        try:
            store.close()
        except Exception:  # exit must not fail because one database cannot be written
            pass


def _reset_after_fork_in_child() -> None:
    # Runs after the engines' own hooks (registered at import of the engine, which the
    # mapping imports first): the engine is reopened before the mapping's locks and caches.
    for store in list(_live.values()):
        store._after_fork_in_child()


os.register_at_fork(after_in_child=_reset_after_fork_in_child)
