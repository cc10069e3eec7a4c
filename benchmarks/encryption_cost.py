"""What encryption_key= costs: a cached read, an uncached read and a write, encrypted and not.

    .venv/bin/python benchmarks/encryption_cost.py

5,000 keys, a ~1 KB dict value; median of 5 rounds (timeit). Cached: one key read again (the
front cache). Uncached: ``caching=False``, the keys in turn. Write: ``d[k] = value`` at
``durability="fast"`` (no fsync), the keys in turn. Figures in the README, "Encryption".
"""

from __future__ import annotations

import os
import shutil
import statistics
import sys
import tempfile
import timeit
from itertools import cycle
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from PersistDict import PersistDict  # noqa: E402

KEYS = [f"k{i}" for i in range(5000)]
VALUE = {"text": "x" * 900, "tokens": 212, "model": "gpt-x"}


def per_call_us(statement: Any, number: int) -> float:
    return statistics.median(timeit.repeat(statement, number=number, repeat=5)) / number * 1e6


def measure(options: dict[str, Any]) -> tuple[float, float, float]:
    directory = tempfile.mkdtemp()
    try:
        path = os.path.join(directory, "db")
        d = PersistDict(path, background_thread="disabled", durability="fast", **options)
        d.set_many(dict.fromkeys(KEYS, VALUE))
        d[KEYS[0]]
        cached = per_call_us(lambda: d[KEYS[0]], 20_000)
        cold = PersistDict(path, background_thread="disabled", durability="fast", caching=False, **options)
        keys = cycle(KEYS)
        uncached = per_call_us(lambda: cold[next(keys)], 5000)
        write = per_call_us(lambda: d.__setitem__(next(keys), VALUE), 2000)
        cold.close()
        d.close()
        return cached, uncached, write
    finally:
        shutil.rmtree(directory)


def main() -> None:
    print(f"{'store':<12}{'cached read µs':>16}{'uncached read µs':>18}{'write µs':>10}")
    for name, options in (("plain", {}), ("encrypted", {"encryption_key": os.urandom(32)})):
        cached, uncached, write = measure(options)
        print(f"{name:<12}{cached:>16.2f}{uncached:>18.1f}{write:>10.1f}")


if __name__ == "__main__":
    main()
