"""Helpers of the backup, compaction and command-line tests: other processes using a store."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from PersistDict import PersistDict

# Moves 1..n between keys "a" and "b" in one transaction each, so a + b == 0 in every consistent
# snapshot, and writes the "round" key last; runs until the file ``stop`` exists.
BALANCED_WRITER = """
import os, sys
from PersistDict import PersistDict
path, stop = sys.argv[1], sys.argv[2]
d = PersistDict(path, background_thread="disabled")
i = 0
print("ready", flush=True)
while not os.path.exists(stop):
    i += 1
    with d.transaction():
        d["a"] = i
        d["filler-%d" % (i % 50)] = "x" * 200
        d["b"] = -i
        d["round"] = i
d.close()
print(i, flush=True)
"""

# Opens the store, prints "ready" and keeps it open (reading now and then) until stdin closes.
HOLDER = """
import sys
from PersistDict import PersistDict
d = PersistDict(sys.argv[1], background_thread="disabled")
print("ready", flush=True)
sys.stdin.read()
d.close()
"""


def start(script: str, *args: Any) -> subprocess.Popen[str]:
    """Run ``script`` in a new interpreter; returns once it printed "ready"."""
    process = subprocess.Popen([sys.executable, "-c", script, *map(str, args)], stdin=subprocess.PIPE,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    line = process.stdout.readline()  # type: ignore[union-attr]
    assert line.strip() == "ready", process.stderr.read()  # type: ignore[union-attr]
    return process


def stop_writer(process: subprocess.Popen[str], stop: Path) -> int:
    """Stop a BALANCED_WRITER; how many rounds it committed."""
    stop.touch()
    out, err = process.communicate(timeout=60)
    assert process.returncode == 0, err
    return int(out.strip())


def release(process: subprocess.Popen[str]) -> None:
    """Let a HOLDER close its store and exit."""
    process.communicate(input="", timeout=60)
    assert process.returncode == 0


def assert_balanced(path: Path) -> int:
    """The store at ``path`` is one consistent snapshot of a BALANCED_WRITER's store; its round."""
    d = PersistDict(path, background_thread="disabled")
    try:
        assert d.check().ok
        rounds = d.get("round", 0)
        assert d.get("a", 0) + d.get("b", 0) == 0 and d.get("a", 0) == rounds
        return rounds
    finally:
        d.close()


def wait_until(condition: Any, what: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.01)
