"""The maintenance scheduler: when atime flushes and maintenance passes run.

``background_thread=True`` runs them in a daemon thread (a pass at open, then
every ``maintenance_interval`` seconds; atimes every ``atime_flush_interval``);
``False`` runs one pass in the constructor; ``"disabled"`` runs nothing. What a
pass does is its owner's (``PersistDict.run_maintenance``): the scheduler takes
the two callables, held weakly so that the thread never keeps a store alive.
"""

from __future__ import annotations

import os
import threading
import weakref
from collections.abc import Callable
from typing import Any

from loguru import logger

from .engines.base import LONGEST_LEASE
from .exceptions import ClosedError


class Maintenance:
    """Schedules the maintenance of one store: ``run_pass`` and ``flush`` are its bound methods."""

    def __init__(self, run_pass: Callable[[], Any], flush: Callable[[], Any], name: str, mode: Any,
                 timeout: float, interval: float, atime_interval: float) -> None:
        self._run_pass = weakref.WeakMethod(run_pass)
        self._flush = weakref.WeakMethod(flush)
        self.name = name
        self.mode = mode
        self.timeout = timeout
        self.interval = interval
        self.atime_interval = atime_interval
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.pass_done = threading.Event()  # set after each full pass (tests and stats wait on it)
        self.resume_after: int | None = None  # where an interrupted expiry pass continues
        # held while this process is alive and renewing it every pass
        self.lease_seconds = min(2 * interval + timeout, LONGEST_LEASE)

    @property
    def holder(self) -> str:
        """Who holds the maintenance lease: this process and instance."""
        return f"{os.getpid()}:{id(self)}"

    def start(self) -> None:
        if self.mode == "disabled":
            return
        if self.mode is False:
            run_pass = self._run_pass()
            if run_pass is not None:
                run_pass()
            return
        self._thread = threading.Thread(target=self._loop, name="PersistDict-maintenance", daemon=True)
        self._thread.start()

    def restart_after_fork(self) -> None:
        """In a forked child: the parent's thread does not exist here; start our own."""
        if self._thread is not None and not self._stop.is_set():
            self._stop = threading.Event()
            self._thread = threading.Thread(target=self._loop, name="PersistDict-maintenance", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=self.timeout + 5)
        self._thread = None

    def _loop(self) -> None:
        since_pass = self.interval  # run a full pass at open
        while not self._stop.is_set():
            work = self._run_pass() if since_pass >= self.interval else self._flush()
            if work is None:
                return  # the store is gone
            try:
                work()
                if since_pass >= self.interval:
                    since_pass = 0.0
                    self.pass_done.set()
            except ClosedError:
                return
            except Exception as exc:  # keep the thread alive; report once per failure
                logger.warning("[{}] maintenance pass failed: {!r}", self.name, exc)
            del work  # do not keep the store alive while sleeping
            self._stop.wait(self.atime_interval)
            since_pass += self.atime_interval
