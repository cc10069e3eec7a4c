"""Instructions per cold ``get``, counted with callgrind (deterministic, unlike timings on this VM).

A fresh process opens a store of N entries and reads ``reads`` keys it has never read (empty
front cache, each key once), then leaves with ``os._exit`` (no access-time flush at close).
The same run with 0 reads is subtracted, so imports and the open do not count:

    python benchmarks/callgrind_get.py [--kind str100] [--op get|in] [--reads 5000]

prints the instructions per call (``--op in``: a cold ``in`` instead). It needs valgrind; the store is built under a temporary
directory, outside valgrind.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile

N = 10_000


def build(path: str, kind: str) -> None:
    from common import make_value
    from PersistDict import PersistDict

    d = PersistDict(path, background_thread="disabled")
    d.set_many({f"r:{i:08d}": make_value(kind, i % 16) for i in range(N)})
    d.close()


def read(path: str, reads: int, op: str) -> None:
    from PersistDict import PersistDict

    d = PersistDict(path, background_thread="disabled")
    get = d.get if op == "get" else d.__contains__
    for i in range(reads):
        get(f"r:{(i * 7919) % N:08d}")  # every key once, in an order unrelated to the file's
    os._exit(0)


def instructions(path: str, reads: int, op: str) -> int:
    command = ["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null",
               sys.executable, __file__, "--read", path, "--reads", str(reads), "--op", op]
    env = dict(os.environ, PYTHONHASHSEED="0")  # the same hashing in every run: counts repeat
    stderr = subprocess.run(command, capture_output=True, text=True, check=True, env=env).stderr
    return int(re.search(r"Collected : (\d+)", stderr).group(1))  # type: ignore[union-attr]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--kind", default="str100")
    parser.add_argument("--reads", type=int, default=5000)
    parser.add_argument("--op", choices=["get", "in"], default="get")
    parser.add_argument("--read", help=argparse.SUPPRESS)  # the measured child
    args = parser.parse_args()
    if args.read:
        read(args.read, args.reads, args.op)
    with tempfile.TemporaryDirectory() as scratch:
        path = os.path.join(scratch, "store")
        build(path, args.kind)
        base = instructions(path, 0, args.op)
        total = instructions(path, args.reads, args.op)
    print(f"{args.kind}: {(total - base) / args.reads:,.0f} instructions per cold {args.op} "
          f"({args.reads} calls; {base:,} for the process without them)")


if __name__ == "__main__":
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
    main()
