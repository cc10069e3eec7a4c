"""The Redis engine against plain redis-py, side by side in one run, on the same local server.

    python benchmarks/redis_engine.py [--url redis://host:port/0] [--rounds 5] [--keys 2000]

Without ``--url`` it starts its own redis-server (appendonly yes, appendfsync always, the tests'
settings) on a free port and stops it at the end. Values: a 1 KB LLM-response dict, pickled by both.

- hot get: ``d[k]`` of a key the coherent front cache holds, against redis-py ``GET`` + ``pickle.loads``
  (target >= 20x);
- cold get: ``d[k]`` with ``caching=False`` (one ``HMGET``: the entry and the clock), against ``GET`` +
  unpickle (target >= 0.8x);
- set_many / get_many of 100 keys (one Lua script / one ``HMGET``) against a hand-written pipeline of
  ``SET``s (``pickle.dumps`` each) / one ``MGET`` + unpickle (target >= 0.8x);
- 4 processes sharing one namespace, 90% reads and 10% writes over ``--keys`` keys for 3 s each:
  total operations/s against LangChain ``RedisCache``-style usage (plain ``GET``/``SET`` of pickles).

Prints ops/s per contender (median of the rounds) and PersistDict's ratio to redis-py.
"""

from __future__ import annotations

import argparse
import multiprocessing
import pickle
import random
import shutil
import socket
import statistics
import subprocess
import tempfile
import time
import uuid
from collections.abc import Callable
from typing import Any

import redis

from PersistDict import PersistDict

VALUE = {"model": "gpt", "text": "lorem ipsum " * 80, "tokens": 240}


def start_server() -> tuple[str, subprocess.Popen[bytes], str]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    directory = tempfile.mkdtemp(prefix="pd-redis-bench-")
    process = subprocess.Popen(["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                                "--appendonly", "yes", "--appendfsync", "always", "--dir", directory],
                               stdout=subprocess.DEVNULL)
    client = redis.Redis(port=port)
    for _ in range(500):
        try:
            client.ping()
            break
        except redis.ConnectionError:
            time.sleep(0.01)
    client.close()
    return f"redis://127.0.0.1:{port}/0", process, directory


def rate(operation: Callable[[], Any], seconds: float = 0.5, batch: int = 1) -> float:
    """Operations per second of ``operation`` (each call counts ``batch``) over about ``seconds``."""
    calls, start = 0, time.perf_counter()
    while (elapsed := time.perf_counter() - start) < seconds:
        for _ in range(20):
            operation()
        calls += 20
    return calls * batch / elapsed


def single_process(url: str, rounds: int) -> list[tuple[str, float, float, float]]:
    plain = redis.Redis.from_url(url)
    hot = PersistDict(url, namespace=f"bench-{uuid.uuid4().hex}", background_thread="disabled")
    cold = PersistDict(url, namespace=f"bench-{uuid.uuid4().hex}", background_thread="disabled", caching=False)
    from PersistDict.engines.redis.feed import wait_connected

    wait_connected(hot._engine.feed, 10)
    keys = [f"key-{i}" for i in range(100)]
    for store in (hot, cold):
        store.set_many({key: VALUE for key in keys})
    for key in keys:
        plain.set("plain:" + key, pickle.dumps(VALUE))
    hot["k"] = VALUE
    hot["k"], hot["k"]  # the second miss caches it
    plain.set("plain:k", pickle.dumps(VALUE))
    batch = {f"b{i}": VALUE for i in range(100)}

    def plain_set_many() -> None:
        with plain.pipeline(transaction=False) as pipe:
            for key, value in batch.items():
                pipe.set("plain:" + key, pickle.dumps(value))
            pipe.execute()

    def plain_get_many() -> None:
        [pickle.loads(raw) for raw in plain.mget(["plain:" + key for key in keys])]

    cases: list[tuple[str, Callable[[], Any], Callable[[], Any], int, float]] = [
        ("hot get", lambda: hot["k"], lambda: pickle.loads(plain.get("plain:k")), 1, 20.0),
        ("cold get", lambda: cold["key-7"], lambda: pickle.loads(plain.get("plain:key-7")), 1, 0.8),
        ("set_many (100)", lambda: cold.set_many(batch), plain_set_many, 100, 0.8),
        ("get_many (100)", lambda: cold.get_many(keys), plain_get_many, 100, 0.8),
    ]
    out = []
    for name, ours, theirs, size, target in cases:
        mine, other = [], []
        for round_ in range(rounds):  # alternate who goes first
            pair = [(ours, mine), (theirs, other)]
            for operation, results in (pair if round_ % 2 == 0 else pair[::-1]):
                results.append(rate(operation, batch=size))
        out.append((name, statistics.median(mine), statistics.median(other), target))
    hot.close()
    cold.close()
    plain.close()
    return out


def _mixed_worker(url: str, namespace: str, kind: str, keys: int, seconds: float, counter: Any) -> None:
    rng = random.Random()
    names = [f"key-{i}" for i in range(keys)]
    done = 0
    if kind == "persistdict":
        store = PersistDict(url, namespace=namespace, background_thread="disabled")
        deadline = time.perf_counter() + seconds
        while time.perf_counter() < deadline:
            for _ in range(50):
                key = rng.choice(names)
                if rng.random() < 0.1:
                    store[key] = VALUE
                else:
                    store.get(key)
            done += 50
        store.close()
    else:
        client = redis.Redis.from_url(url)
        deadline = time.perf_counter() + seconds
        while time.perf_counter() < deadline:
            for _ in range(50):
                key = namespace + rng.choice(names)
                if rng.random() < 0.1:
                    client.set(key, pickle.dumps(VALUE))
                else:
                    raw = client.get(key)
                    if raw is not None:
                        pickle.loads(raw)
            done += 50
        client.close()
    with counter.get_lock():
        counter.value += done


def shared(url: str, keys: int, seconds: float = 3.0) -> dict[str, float]:
    ctx = multiprocessing.get_context("spawn")
    out = {}
    for kind in ("persistdict", "plain"):
        namespace = f"mixed-{uuid.uuid4().hex}"
        if kind == "persistdict":
            with PersistDict(url, namespace=namespace, background_thread="disabled") as store:
                store.set_many({f"key-{i}": VALUE for i in range(keys)})
        else:
            client = redis.Redis.from_url(url)
            client.mset({f"{namespace}key-{i}": pickle.dumps(VALUE) for i in range(keys)})
            client.close()
        counter = ctx.Value("q", 0)
        processes = [ctx.Process(target=_mixed_worker, args=(url, namespace, kind, keys, seconds, counter))
                     for _ in range(4)]
        for process in processes:
            process.start()
        for process in processes:
            process.join()
        out[kind] = counter.value / seconds
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--keys", type=int, default=2000)
    options = parser.parse_args()
    server = None
    url = options.url
    if url is None:
        if shutil.which("redis-server") is None:
            raise SystemExit("redis-server is not installed (apt-get install redis-server), or pass --url")
        url, server, directory = start_server()
    try:
        print(f"{'':<16}{'PersistDict':>14}{'redis-py':>14}{'ratio':>9}{'target':>9}")
        for name, ours, theirs, target in single_process(url, options.rounds):
            ratio = ours / theirs
            print(f"{name:<16}{ours:>12,.0f}/s{theirs:>12,.0f}/s{ratio:>8.2f}x{target:>8}x"
                  f"  {'met' if ratio >= target else 'NOT met'}")
        mixed = shared(url, options.keys)
        print(f"{'4 processes':<16}{mixed['persistdict']:>12,.0f}/s{mixed['plain']:>12,.0f}/s"
              f"{mixed['persistdict'] / mixed['plain']:>8.2f}x   (90% get / 10% set, one namespace; "
              "redis-py: plain GET/SET of pickles, as LangChain's RedisCache)")
    finally:
        if server is not None:
            server.terminate()
            server.wait()
            shutil.rmtree(directory, ignore_errors=True)


if __name__ == "__main__":
    main()
