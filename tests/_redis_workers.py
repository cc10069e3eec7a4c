"""Worker processes of the Redis tests: each stands for another host (its own client, front cache
and change feed). Module-level functions, so that spawned processes can import them."""

from __future__ import annotations

import os
import time
from typing import Any

from PersistDict import PersistDict


def open_store(url: str, namespace: str, **options: Any) -> PersistDict:
    options.setdefault("background_thread", "disabled")
    store = PersistDict(url, namespace=namespace, **options)
    if not options.get("strict_reads"):
        wait_subscribed(store)
    return store


def wait_subscribed(store: PersistDict, seconds: float = 30) -> None:
    """Wait until the store's change feed listens (until then every read asks the server)."""
    from PersistDict.engines.redis.feed import wait_connected

    assert wait_connected(store._engine.feed, seconds), "the change feed did not subscribe"


def writer(url: str, namespace: str, count: int, acked: Any, stamps: Any) -> None:
    """Write v = 1..count; after each acknowledged write publish it (``acked``) and when (``stamps``)."""
    with open_store(url, namespace) as store:
        for value in range(1, count + 1):
            store["v"] = value
            stamps[value] = time.monotonic()  # CLOCK_MONOTONIC: one clock for the processes of a host
            acked.value = value
            time.sleep(0.002)


def strict_reader(url: str, namespace: str, acked: Any, stale: Any, reads: Any, done: Any) -> None:
    """Read v in a loop (strict reads, front cache on); count reads older than a write acknowledged
    before the read began."""
    with open_store(url, namespace, strict_reads=True) as store:
        while not done.value:
            floor = acked.value
            value = store.get("v", 0)
            reads.value += 1
            if value < floor:
                stale.value += 1


def notified_reader(url: str, namespace: str, count: int, stamps: Any, seen: Any, hits: Any) -> None:
    """Read v in a loop (notified front cache); note when each value was first seen, until the last one."""
    with open_store(url, namespace) as store:
        last = 0
        while last < count:
            value = store.get("v", 0)
            if value > last:
                now = time.monotonic()
                for missed in range(last + 1, value + 1):
                    seen[missed] = now
                last = value
        hits.value = store.stats()["front_cache_hits"]


def lock_then_die(url: str, namespace: str, ready: Any) -> None:
    """Take the lock "job" (ttl 1 s), say so, and wait to be SIGKILLed."""
    store = open_store(url, namespace)
    assert store.lock("job", ttl=1).acquire()
    ready.value = 1
    time.sleep(600)
    os._exit(0)


def restarted_writer(url: str, namespace: str, count: int, acked: Any, errors: Any, stop: Any) -> None:
    """Write k0..k<count>, retrying each on ServerUnavailableError; publish how many were acknowledged."""
    from PersistDict import ServerUnavailableError

    with open_store(url, namespace) as store:
        for index in range(count):
            while not stop.value:
                try:
                    store[f"k{index}"] = index
                    break
                except ServerUnavailableError:
                    errors.value += 1
                    time.sleep(0.01)
            acked.value = index + 1
