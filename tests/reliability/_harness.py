"""Machinery of the reliability suite: run sizes, the figures the README quotes, child processes,
oracles and store snapshots.

Every child is a real process (multiprocessing for workers that share a pipe with the parent, a
fresh interpreter through :func:`probe` for anything that may crash or hang): a test fails when a
child dies by a signal, hangs past its timeout, or reports a value that its oracle refuses.
"""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import pickle
import random
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import _workers as w
from _concurrency import bounded, join_all  # noqa: F401 - the suite's helpers, shared

from PersistDict import PersistDict

LARGE = os.environ.get("PERSISTDICT_STRESS", "").lower() == "large"
TESTS_DIR = Path(__file__).resolve().parents[1]
CHILD_TIMEOUT = 60  # seconds; only reached when a child hangs (a lock held by a stopped process...)
YEAR = 365.25 * 86400

# Totals of the run, printed by conftest.py at the end (the README's "Reliability" figures).
FIGURES: Counter[str] = Counter()


def sized(default: int, large: int) -> int:
    """``default`` in the CI run, ``large`` under PERSISTDICT_STRESS=large."""
    return large if LARGE else default


def open_db(path: str | Path, **kwargs: Any) -> PersistDict:
    kwargs.setdefault("background_thread", "disabled")
    return PersistDict(str(path), **kwargs)


# ---------------------------------------------------------------------------
# Children
# ---------------------------------------------------------------------------

def _child_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(TESTS_DIR), env.get("PYTHONPATH")]))
    return env


def start_probe(name: str, args: dict[str, Any]) -> subprocess.Popen[str]:
    """Start ``reliability._probes.<name>(args)`` in a fresh interpreter (stdout: its lines)."""
    return subprocess.Popen([sys.executable, "-m", "reliability._probes", name, json.dumps(args)],
                            cwd=TESTS_DIR, env=_child_env(), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def probe(name: str, args: dict[str, Any], timeout: float = CHILD_TIMEOUT) -> dict[str, Any]:
    """Run a probe to its end; fail on a hang, a signal or a crash; return its JSON report."""
    child = start_probe(name, args)
    try:
        out, err = child.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        child.kill()
        out, err = child.communicate()
        raise AssertionError(f"probe {name} {args} hung for {timeout}s\nstderr:\n{err[-3000:]}") from None
    assert child.returncode >= 0, (f"probe {name} {args} was killed by signal "
                                   f"{signal.Signals(-child.returncode).name}\nstderr:\n{err[-3000:]}")
    assert child.returncode == 0, f"probe {name} {args} failed ({child.returncode}):\n{err[-3000:]}"
    return json.loads(out.strip().splitlines()[-1])


def read_line(child: subprocess.Popen[str], timeout: float = CHILD_TIMEOUT) -> str:
    """The next line a probe prints; fail if it exits or stays silent for ``timeout`` seconds."""
    box: list[str] = []
    stdout, stderr = child.stdout, child.stderr
    assert stdout is not None and stderr is not None
    reader = threading.Thread(target=lambda: box.append(stdout.readline()), daemon=True)
    reader.start()
    reader.join(timeout)
    if not box or not box[0]:
        child.kill()
        raise AssertionError(f"probe printed nothing within {timeout}s; stderr:\n{stderr.read()[-3000:]}")
    return box[0].strip()


def kill(child: subprocess.Popen[str] | Any) -> None:
    """SIGKILL a child (a Popen or a multiprocessing Process) and reap it."""
    os.kill(child.pid, signal.SIGKILL)
    if isinstance(child, subprocess.Popen):
        child.communicate(timeout=CHILD_TIMEOUT)
    else:
        child.join(CHILD_TIMEOUT)


# ---------------------------------------------------------------------------
# Store snapshots and checks
# ---------------------------------------------------------------------------

def snapshot(d: PersistDict) -> tuple[Any, ...]:
    """Everything a caller can see of a store: items in order and each entry's metadata."""
    items = list(d.items())
    return items, [d.metadata(key) for key, _ in items], len(d)


def assert_consistent(d: PersistDict) -> None:
    """One frozen state: len agrees with iteration, every key reads, and check() is clean."""
    with d.transaction():
        keys = list(d)
        assert len(d) == len(keys), f"len(d)={len(d)} but iteration lists {len(keys)} keys"
        assert d.get_many(keys).keys() == set(keys), "a listed key has no value"
        report = d.check()
        assert report.ok, f"check() found problems: {report}"


# ---------------------------------------------------------------------------
# The SIGKILL loop
# ---------------------------------------------------------------------------

PURGE_KEYS = 200  # the shape of issue 15's defect 0: a batch of 500-byte values deleted in one transaction


def kill_plan(seed: int) -> Iterator[tuple[Any, ...]]:
    """_workers.crash_plan, with a purge every 25 operations: 200 values written in one batch, then
    deleted in one transaction (two operations, each acknowledged)."""
    for n, op in enumerate(w.crash_plan(seed)):
        if n % 25 == 24:
            bulk = {f"purge{i}": ("purge", n, "x" * 500) for i in range(PURGE_KEYS)}
            yield ("set_many", bulk, [])
            yield ("txn", {}, sorted(bulk))
        yield op


PURGED_AT = 26  # kill_plan's 26th operation is its first purge transaction


def kill_writer(path: str, seed: int, conn: Any, durability: str) -> None:
    """Run kill_plan(seed) forever, sending each operation's index once the call has returned."""
    d = w.open_db(path, durability=durability)
    for n, op in enumerate(kill_plan(seed)):
        w.apply_crash_op(d, op)
        conn.send(n)


def expected_after(start: dict[Any, Any], seed: int, n_ops: int) -> dict[Any, Any]:
    state = dict(start)
    plan = kill_plan(seed)
    for _ in range(n_ops):
        w.apply_crash_op(state, next(plan))
    return state


def lost_writes(found: dict[Any, Any], acked: dict[Any, Any], following: dict[Any, Any]) -> int:
    """Keys whose acknowledged state is gone and not explained by the in-flight operation."""
    keys = acked.keys() | found.keys()
    return sum(1 for k in keys if found.get(k, w.MISSING) not in (acked.get(k, w.MISSING),
                                                                   following.get(k, w.MISSING)))


def reopen_and_check(path: str, durability: str) -> dict[Any, Any]:
    """Open the store after a kill (bounded), check it is consistent and writable; its contents."""
    def check() -> dict[Any, Any]:
        with open_db(path, durability=durability) as d:
            found = d.copy()
            assert_consistent(d)
            purge = {f"after.kill.{i}": "x" * 500 for i in range(PURGE_KEYS)}
            d.set_many(purge)
            with d.transaction():  # issue 15, defect 0: then the store must still open
                for key in purge:
                    del d[key]
        with open_db(path, durability=durability) as d:
            assert d.copy() == found, "the store changed across a clean close and reopen"
        return found

    return bounded(check, "reopening after SIGKILL")


def sigkill_round(path: str, state: dict[Any, Any], seed: int, durability: str, rng: random.Random) -> dict[Any, Any]:
    """Start a writer, SIGKILL it at a random moment, reopen; the store must hold the acknowledged
    state, or that state plus the operation in flight (a batch whole or not at all)."""
    ctx = mp.get_context("fork")
    conn, child_conn = ctx.Pipe(duplex=False)
    process = ctx.Process(target=kill_writer, args=(path, seed, child_conn, durability), daemon=True)
    process.start()
    child_conn.close()
    acknowledged = -1
    wanted = rng.choice((1, 3, 10, 30, 60, PURGED_AT, PURGED_AT))  # PURGED_AT: a kill right after a purge
    while acknowledged < wanted - 1:
        assert conn.poll(CHILD_TIMEOUT), "the writer stopped acknowledging"
        acknowledged = conn.recv()
    time.sleep(rng.uniform(0, 0.02))  # the kill moment; every moment must be safe
    kill(process)
    assert process.exitcode == -signal.SIGKILL, f"the writer died before the kill ({process.exitcode})"
    try:
        while conn.poll():
            acknowledged = conn.recv()
    except EOFError:
        pass
    done = acknowledged + 1
    found = reopen_and_check(path, durability)
    acked, following = expected_after(state, seed, done), expected_after(state, seed, done + 1)
    lost = lost_writes(found, acked, following)
    FIGURES["kills"] += 1
    FIGURES["acknowledged writes"] += done
    FIGURES["lost writes"] += lost
    assert found in (acked, following), (
        f"after {done} acknowledged operations ({durability}) the store holds neither their result nor "
        f"one more: {lost} keys differ, missing {sorted(acked.keys() - found.keys())[:10]}, "
        f"unexpected {sorted(found.keys() - following.keys())[:10]}")
    return found


# ---------------------------------------------------------------------------
# Seeded replay: owned ranges (exact oracles) and a shared range
# ---------------------------------------------------------------------------

SHARED_KEYS = [f"shared.{i}" for i in range(6)] + [("shared", i) for i in range(6)]


def shared_value(proc_id: int, thread: int, n: int) -> tuple[Any, ...]:
    return ("w", proc_id, thread, n, "s" * (n % 7) * 100)


def run_shared_ops(d: PersistDict, proc_id: int, thread: int, seed: int, n_ops: int) -> dict[str, Any]:
    """Seeded set/get/del/pop/setdefault/set_many/get_many/transaction on keys every worker writes;
    returns the values it wrote and the values it read (each must be one some worker wrote)."""
    rng = random.Random(seed)
    written: list[Any] = []
    read: list[Any] = []
    errors: list[str] = []
    for n in range(n_ops):
        op = rng.choice(("set", "get", "del", "pop", "setdefault", "set_many", "get_many", "txn"))
        key = rng.choice(SHARED_KEYS)
        value = shared_value(proc_id, thread, n)
        try:
            if op == "set":
                d[key] = value
                written.append(value)
            elif op == "get":
                read.append(d.get(key, w.MISSING))
            elif op == "del":
                try:
                    del d[key]
                except KeyError:
                    pass
            elif op == "pop":
                read.append(d.pop(key, w.MISSING))
            elif op == "setdefault":
                written.append(value)
                read.append(d.setdefault(key, value))
            elif op == "set_many":
                batch = dict.fromkeys(rng.sample(SHARED_KEYS, 3), value)
                d.set_many(batch)
                written.append(value)
            elif op == "get_many":
                read.extend(d.get_many(rng.sample(SHARED_KEYS, 4)).values())
            else:
                with d.transaction():  # move one key's value to another, atomically
                    other = rng.choice(SHARED_KEYS)
                    moved = d.pop(key, w.MISSING)
                    read.append(moved)
                    if moved != w.MISSING:
                        d[other] = moved
        except Exception as exc:  # noqa: BLE001 - any raise is a failure: reported to the parent
            errors.append(f"shared {op}({key!r}) raised {exc!r}")
    return {"written": written, "read": [v for v in read if v != w.MISSING], "errors": errors}


def replay_process(path: str, proc_id: int, owned_threads: int, shared_threads: int, seed: int, n_ops: int,
                   barrier: Any, result_path: str) -> None:
    """One replay process: threads on owned ranges (_workers.run_mixed_ops) and on the shared range."""
    d = w.open_db(path)
    results: dict[str, list[Any]] = {"owned": [None] * owned_threads, "shared": [None] * shared_threads}

    def body(t: int) -> None:
        if t < owned_threads:
            results["owned"][t] = w.run_mixed_ops(d, (proc_id, t), seed * 1000 + proc_id * 100 + t, n_ops)
        else:
            s = t - owned_threads
            results["shared"][s] = run_shared_ops(d, proc_id, t, seed * 1000 + proc_id * 100 + t, n_ops)

    failures = w.run_threads_together(owned_threads + shared_threads, body, barrier)
    d.close()
    results["crashed"] = list(failures.values())
    w.dump_result(result_path, results)


# ---------------------------------------------------------------------------
# Staleness handoffs
# ---------------------------------------------------------------------------

HANDOFF_KEYS = ("plain", ("tuple", 1), 12345, "L" * 600)


def _read_versioned(d: PersistDict, key: Any, how: int) -> Any:
    if how == 0:
        return d[key]
    if how == 1:
        return d.get(key)
    if how == 2:
        return d.get_many([key]).get(key)
    return d.get(key) if key in d else None


def handoff_player(path: str, role: int, conn: Any, rounds: int, result_path: str) -> None:
    """Ping-pong with the other player: read the version it just wrote (it must be there: the write
    returned before the message was sent), then write the next one. Every key is read every round so
    the front cache holds them; a stale read is counted, never tolerated by the parent."""
    d = w.open_db(path, durability="fast")
    stale = handoffs = 0
    if role == 0:
        d[HANDOFF_KEYS[1]] = 1
        conn.send(1)
    while True:
        n = conn.recv()
        if n >= rounds:
            break
        key = HANDOFF_KEYS[n % len(HANDOFF_KEYS)]
        for other in HANDOFF_KEYS:  # keep every key hot in the front cache
            d.get(other)
        got = _read_versioned(d, key, n % 4)
        handoffs += 1
        if got != n:
            stale += 1
        d[HANDOFF_KEYS[(n + 1) % len(HANDOFF_KEYS)]] = n + 1
        conn.send(n + 1)
    conn.send(rounds)  # let the other player stop too
    hits = d.stats()["front_cache_hits"]
    d.close()
    w.dump_result(result_path, {"stale": stale, "handoffs": handoffs, "front_cache_hits": hits})


def load(path: str) -> Any:
    with open(path, "rb") as handle:
        return pickle.load(handle)
