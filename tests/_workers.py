"""Worker functions for the thread, process and fork tests (tests/test_threads.py, test_processes.py, ...).

They live in an importable module (not in the test file) so that the "spawn"
start method can find them by name. Every worker opens its own PersistDict
from a path (or receives a pickled one, which reopens by path), reports
through a pipe, a result file or its exit code, and never sleeps to
synchronise: ordering comes from Barriers, Events and pipes.
"""

from __future__ import annotations

import os
import pickle
import random
import threading
import traceback
from collections.abc import Callable
from typing import Any

from PersistDict import PersistDict

MISSING = "<missing>"  # what a remote read answers for an absent key


def open_db(path: str, **kwargs: Any) -> PersistDict:
    kwargs.setdefault("background_thread", "disabled")
    return PersistDict(path, **kwargs)


def dump_result(result_path: str, result: Any) -> None:
    """Write a worker's result atomically (rename) so the parent never reads half a file."""
    tmp = f"{result_path}.tmp{os.getpid()}"
    with open(tmp, "wb") as handle:
        pickle.dump(result, handle)
    os.replace(tmp, result_path)


def load_result(result_path: str) -> Any:
    with open(result_path, "rb") as handle:
        return pickle.load(handle)


# ---------------------------------------------------------------------------
# Owned key ranges: every (process, thread) owner has keys nobody else writes,
# so it can keep an exact oracle of them while everybody runs concurrently.
# Four key shapes exercise the different slot kinds: plain str, tuple, int
# and a str longer than key_size_limit (stored in a hashed slot).
# ---------------------------------------------------------------------------

LONG_PREFIX = "x" * 520
INT_BASE = 10**9


def run_threads_together(n_threads: int, body: Callable[[int], None], barrier: Any) -> dict[int, str]:
    """Run ``body(t)`` in ``n_threads`` threads that start together once every process passed
    ``barrier`` (None: no other process to wait for); returns {thread: failure} for those that raised."""
    failures: dict[int, str] = {}
    start = threading.Barrier(n_threads)

    def thread_main(t: int) -> None:
        try:
            start.wait()
            body(t)
        except BaseException as exc:  # noqa: BLE001 - reported to the parent
            failures[t] = f"{exc!r}\n{traceback.format_exc()}"

    if barrier is not None:
        barrier.wait()
    threads = [threading.Thread(target=thread_main, args=(t,)) for t in range(n_threads)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return failures


def owned_key(owner: tuple[int, int], i: int) -> Any:
    p, t = owner
    shape = i % 4
    if shape == 0:
        return f"r{p}.{t}.{i}"
    if shape == 1:
        return ("r", p, t, i)
    if shape == 2:
        return INT_BASE + p * 10**6 + t * 10**4 + i
    return f"{LONG_PREFIX}r{p}.{t}.{i}"


def owner_of(key: Any) -> tuple[int, int] | None:
    """The owner of an owned key; None for shared keys."""
    if isinstance(key, tuple) and len(key) == 4 and key[0] == "r":
        return key[1], key[2]
    if isinstance(key, int) and key >= INT_BASE:
        rest = key - INT_BASE
        return rest // 10**6, (rest // 10**4) % 100
    if isinstance(key, str):
        text = key.removeprefix(LONG_PREFIX)
        if text.startswith("r") and text.count(".") == 2:
            p, t, _ = text[1:].split(".")
            return int(p), int(t)
    return None


def make_value(rng: random.Random, owner: tuple[int, int], version: int) -> Any:
    shape = rng.randrange(6)
    if shape == 0:
        return version
    if shape == 1:
        return (owner, version)
    if shape == 2:
        return [owner[0], owner[1], version, "list"]  # mutable: tests the cache's aliasing rule
    if shape == 3:
        return {"owner": owner, "version": version}
    if shape == 4:
        return f"v{version}-" + "s" * rng.randrange(0, 200)
    return bytes([version % 251]) * rng.choice((1, 100, 5000, 20000))  # large: overflow pages


class Rollback(Exception):
    """Raised inside transaction() to make it roll back."""


SHARED_COUNTERS = ("ctr.a", "ctr.b")


def run_mixed_ops(d: PersistDict, owner: tuple[int, int], seed: int, n_ops: int, n_keys: int = 24) -> dict[str, Any]:
    """Run a seeded mix of every public method on ``owner``'s key range.

    Checks each answer against a local oracle on the spot (nobody else writes
    these keys) and returns {"oracle", "increments", "errors", "ops"}.
    Shared counters are incremented inside transaction(); ``increments``
    says by how much, so the caller can check the global total.
    """
    rng = random.Random(seed)
    oracle: dict[Any, Any] = {}
    increments = dict.fromkeys(SHARED_COUNTERS, 0)
    errors: list[str] = []
    keys = [owned_key(owner, i) for i in range(n_keys)]

    def check(what: str, got: Any, want: Any) -> None:
        if got != want:
            errors.append(f"{owner} {what}: got {got!r:.200} want {want!r:.200}")

    def own_part(mapping: dict[Any, Any]) -> dict[Any, Any]:
        return {k: v for k, v in mapping.items() if owner_of(k) == owner}

    ops = (
        "set", "set", "set", "get", "getitem", "contains", "del", "pop", "pop_default", "setdefault",
        "update", "set_many", "get_many", "metadata", "txn_rmw", "txn_rollback", "txn_nested",
        "counter", "keys", "items", "values", "copy", "len", "eq", "flush_atimes", "mutate_returned",
        "set_method", "touch", "or", "ior", "stats", "check", "run_maintenance",
    )
    for version in range(1, n_ops + 1):
        op = rng.choice(ops)
        key = rng.choice(keys)
        try:
            if op == "set":
                value = make_value(rng, owner, version)
                d[key] = value
                oracle[key] = value
            elif op == "get":
                check(f"get({key!r:.40})", d.get(key, MISSING), oracle.get(key, MISSING))
            elif op == "getitem":
                try:
                    got = d[key]
                except KeyError:
                    got = MISSING
                check(f"d[{key!r:.40}]", got, oracle.get(key, MISSING))
            elif op == "contains":
                check(f"{key!r:.40} in d", key in d, key in oracle)
            elif op == "del":
                try:
                    del d[key]
                    deleted = True
                except KeyError:
                    deleted = False
                check(f"del {key!r:.40} found it", deleted, key in oracle)
                oracle.pop(key, None)
            elif op == "pop":
                try:
                    got = d.pop(key)
                except KeyError:
                    got = MISSING
                check(f"pop({key!r:.40})", got, oracle.pop(key, MISSING))
            elif op == "pop_default":
                check(f"pop({key!r:.40}, default)", d.pop(key, MISSING), oracle.pop(key, MISSING))
            elif op == "setdefault":
                value = make_value(rng, owner, version)
                want = oracle.setdefault(key, value)
                check(f"setdefault({key!r:.40})", d.setdefault(key, value), want)
            elif op in ("update", "set_many"):
                batch = {k: make_value(rng, owner, version) for k in rng.sample(keys, rng.randrange(1, 6))}
                if op == "update":
                    d.update(batch)
                else:
                    d.set_many(batch)
                oracle.update(batch)
            elif op == "get_many":
                asked = rng.sample(keys, rng.randrange(1, 8))
                check("get_many", d.get_many(asked), {k: oracle[k] for k in asked if k in oracle})
            elif op == "metadata":
                try:
                    meta = d.metadata(key)
                    present = True
                    if meta.atime < meta.ctime:
                        errors.append(f"{owner} metadata({key!r:.40}): atime {meta.atime} < ctime {meta.ctime}")
                except KeyError:
                    present = False
                check(f"metadata({key!r:.40}) present", present, key in oracle)
            elif op == "txn_rmw":
                chosen = rng.sample(keys, rng.randrange(1, 4))
                with d.transaction():
                    for k in chosen:
                        old = d.get(k, 0)
                        new = (old if isinstance(old, int) else 0) + 1
                        d[k] = new
                        oracle[k] = new
            elif op == "txn_rollback":
                before = {k: oracle.get(k, MISSING) for k in keys[:4]}
                try:
                    with d.transaction():
                        d[keys[0]] = "rolled back"
                        d.pop(keys[1], None)
                        d.set_many({keys[2]: "rolled back", keys[3]: "rolled back"})
                        for name in SHARED_COUNTERS:
                            d[name] = d.get(name, 0) + 1000
                        raise Rollback
                except Rollback:
                    pass
                check("after rollback", {k: d.get(k, MISSING) for k in keys[:4]}, before)
            elif op == "txn_nested":
                with d.transaction():
                    with d.transaction():  # re-entrant in one thread
                        value = make_value(rng, owner, version)
                        d[key] = value
                    check("read own write in transaction", d.get(key, MISSING), value)
                    oracle[key] = value
            elif op == "counter":
                name = rng.choice(SHARED_COUNTERS)
                with d.transaction():
                    d[name] = d.get(name, 0) + 1
                increments[name] += 1
            elif op == "keys":
                snapshot = [k for k in d.keys() if owner_of(k) == owner]  # noqa: SIM118 - keys() is under test
                check("keys() own part", sorted(map(repr, snapshot)), sorted(map(repr, oracle)))
                if len(snapshot) != len(set(map(repr, snapshot))):
                    errors.append(f"{owner} keys() listed a key twice")
            elif op == "items":
                check("items() own part", own_part(dict(d.items())), oracle)
            elif op == "values":
                mine = [v for v in d.values() if _value_owner(v) == owner]
                want = [v for v in oracle.values() if _value_owner(v) == owner]
                check("values() own part", sorted(map(repr, mine)), sorted(map(repr, want)))
            elif op == "copy":
                check("copy() own part", own_part(d.copy()), oracle)
            elif op == "len":
                size = len(d)
                if size < len(oracle):
                    errors.append(f"{owner} len(d)={size} < {len(oracle)} own entries")
            elif op == "eq":
                result = d == {}
                check("d == {} type", type(result), bool)
                if oracle:
                    check("d == {} with own entries present", result, False)
            elif op == "flush_atimes":
                d.flush_atimes()
            elif op == "set_method":
                value = make_value(rng, owner, version)
                d.set(key, value)
                oracle[key] = value
            elif op == "touch":
                try:
                    d.touch(key)
                    touched = True
                except KeyError:
                    touched = False
                check(f"touch({key!r:.40}) found it", touched, key in oracle)
            elif op == "or":
                extra = {keys[0]: "or-only"}
                check("(d | other) own part", own_part(d | extra), {**oracle, **extra})
            elif op == "ior":
                batch = {k: make_value(rng, owner, version) for k in rng.sample(keys, 2)}
                d |= batch
                oracle.update(batch)
            elif op == "stats":
                stats = d.stats()
                if stats["entries"] < len(oracle):
                    errors.append(f"{owner} stats()['entries']={stats['entries']} < {len(oracle)} own entries")
            elif op == "check":
                report = d.check()
                if not report.ok:
                    errors.append(f"{owner} check() found problems: {report}")
            elif op == "run_maintenance":
                d.run_maintenance()
            elif op == "mutate_returned":
                got = d.get(key, MISSING)
                if isinstance(got, (list, dict)):
                    got.clear()  # must not change what the next read returns
                check(f"read after mutating a returned value {key!r:.40}", d.get(key, MISSING),
                      oracle.get(key, MISSING))
        except Exception as exc:  # noqa: BLE001 - any raise is a failure: record it, keep going
            errors.append(f"{owner} {op}({key!r:.40}) raised {exc!r}\n{traceback.format_exc()}")
    return {"oracle": oracle, "increments": increments, "errors": errors}


def _value_owner(value: Any) -> tuple[int, int] | None:
    if isinstance(value, tuple) and len(value) == 2 and isinstance(value[0], tuple):
        return value[0]
    if isinstance(value, list) and len(value) == 4 and value[3] == "list":
        return value[0], value[1]
    if isinstance(value, dict) and "owner" in value:
        return value["owner"]
    return None


def replay_worker(d: PersistDict, proc_id: int, n_threads: int, seed: int, n_ops: int, barrier: Any,
                  result_path: str) -> None:
    """One process of the seeded replay: ``n_threads`` threads run run_mixed_ops on their own ranges."""
    results: list[Any] = [None] * n_threads

    def body(t: int) -> None:
        results[t] = run_mixed_ops(d, (proc_id, t), seed * 1000 + proc_id * 100 + t, n_ops)

    for t, failure in run_threads_together(n_threads, body, barrier).items():
        results[t] = {"oracle": {}, "increments": {}, "errors": [f"thread crashed: {failure}"]}
    d.close()
    dump_result(result_path, results)


# ---------------------------------------------------------------------------
# Writers checked against an oracle
# ---------------------------------------------------------------------------

def disjoint_plan(proc_id: int, n_keys: int, rounds: int) -> dict[str, Any]:
    """The final state a disjoint_writer leaves (deterministic)."""
    final: dict[str, Any] = {}
    for r in range(rounds):
        for i in range(n_keys):
            final[f"p{proc_id}.k{i}"] = (proc_id, i, r)
        if r == rounds - 1:
            for i in range(0, n_keys, 5):
                final.pop(f"p{proc_id}.k{i}")
    return final


def disjoint_writer(path: str, proc_id: int, n_keys: int, rounds: int, barrier: Any) -> None:
    """Write ``rounds`` versions of every own key (one op at a time, set_many, update), then delete some."""
    d = open_db(path)
    barrier.wait()
    for r in range(rounds):
        pending = {f"p{proc_id}.k{i}": (proc_id, i, r) for i in range(n_keys)}
        items = list(pending.items())
        third = len(items) // 3
        for key, value in items[:third]:
            d[key] = value
        d.set_many(dict(items[third:2 * third]))
        d.update(items[2 * third:])
        if r == rounds - 1:
            for i in range(0, n_keys, 5):
                del d[f"p{proc_id}.k{i}"]
    d.close()


def shared_writer(path: str, proc_id: int, keys: list[str], rounds: int, barrier: Any) -> None:
    """Overwrite every shared key ``rounds`` times with (proc_id, round); append to a shared log in transaction()."""
    d = open_db(path)
    barrier.wait()
    for r in range(rounds):
        for key in keys:
            d[key] = (proc_id, r)
        with d.transaction():
            d["log"] = d.get("log", []) + [(proc_id, r)]
    d.close()


def counter_worker(d: PersistDict, proc_id: int, n_threads: int, n_incr: int, barrier: Any) -> None:
    """``n_threads`` threads each increment two counters ``n_incr`` times in transaction(), plus rollbacks."""

    def body(t: int) -> None:
        for n in range(n_incr):
            with d.transaction():
                d["count"] = d.get("count", 0) + 1
                with d.transaction():  # nested: joins the outer one
                    d["nested"] = d["nested"] + 1 if "nested" in d else 1
            if n % 5 == 0:
                try:
                    with d.transaction():
                        d["count"] = d["count"] + 1000
                        raise Rollback
                except Rollback:
                    pass
            with d.transaction():
                d[f"seen.{proc_id}.{t}"] = d.get(f"seen.{proc_id}.{t}", 0) + 1

    errors = list(run_threads_together(n_threads, body, barrier).values())
    d.close()
    if errors:
        raise SystemExit(f"counter_worker: {len(errors)} threads failed; first:\n{errors[0]}")


def setdefault_pop_racer(path: str, proc_id: int, rounds: int, barrier: Any, result_path: str) -> None:
    """Per round: race setdefault on one key, then pop on another, with every other racer."""
    d = open_db(path)
    got_sd: list[Any] = []
    got_pop: list[Any] = []
    seen_after: list[Any] = []
    for r in range(rounds):
        barrier.wait()
        got_sd.append(d.setdefault(f"sd{r}", (proc_id, r)))
        barrier.wait()
        seen_after.append(d[f"sd{r}"])
        got_pop.append(d.pop(f"pop{r}", MISSING))
    d.close()
    dump_result(result_path, {"setdefault": got_sd, "pop": got_pop, "seen_after": seen_after})


def popitem_worker(path: str, result_path: str, barrier: Any) -> None:
    """popitem() until the store is empty; report what was popped."""
    d = open_db(path)
    popped: list[Any] = []
    barrier.wait()
    while True:
        try:
            popped.append(d.popitem())
        except KeyError:
            break
    d.close()
    dump_result(result_path, popped)


# ---------------------------------------------------------------------------
# Group mutator: keys come in groups of GROUP that are always written and
# deleted together, so any consistent snapshot holds whole groups only.
# ---------------------------------------------------------------------------

GROUP = 4


def group_keys(g: int) -> list[Any]:
    return [f"g{g}.0", ("g", g, 1), f"{LONG_PREFIX}g{g}.2", f"g{g}.3"]


def group_of(key: Any) -> int:
    if isinstance(key, tuple):
        return key[1]
    text = key.removeprefix(LONG_PREFIX)
    return int(text[1:].split(".")[0])


def mutate_groups(d: PersistDict, mutator_id: int, n_groups: int, n_ops: int, seed: int) -> None:
    """Atomically write (set_many / update / transaction) or delete (transaction) whole groups."""
    rng = random.Random(seed)
    for n in range(n_ops):
        g = rng.randrange(n_groups)
        keys = group_keys(g)
        value = (g, mutator_id, n)
        choice = rng.randrange(4)
        if choice == 0:
            d.set_many({k: value for k in keys})
        elif choice == 1:
            d.update({k: value for k in keys})
        elif choice == 2:
            with d.transaction():
                for k in keys:
                    d[k] = value
        else:
            with d.transaction():
                for k in keys:
                    d.pop(k, None)


def group_mutator_process(path: str, mutator_id: int, n_groups: int, n_ops: int, seed: int, barrier: Any) -> None:
    d = open_db(path)
    if barrier is not None:
        barrier.wait()
    mutate_groups(d, mutator_id, n_groups, n_ops, seed)
    d.close()


def group_snapshot_errors(snapshot: dict[Any, Any]) -> list[str]:
    """Problems in an items() snapshot of a store holding only groups."""
    by_group: dict[int, list[Any]] = {}
    for key, value in snapshot.items():
        by_group.setdefault(group_of(key), []).append(value)
    errors = []
    for g, values in by_group.items():
        if len(values) != GROUP or len(set(values)) != 1 or values[0][0] != g:
            errors.append(f"group {g} torn in snapshot: {values}")
    return errors


# ---------------------------------------------------------------------------
# Remote executor: a process that runs PersistDict operations on request
# (through a pipe) so the test can interleave two processes step by step.
# ---------------------------------------------------------------------------

def remote_executor(path: str, conn: Any, open_kwargs: dict[str, Any]) -> None:
    """Serve ("op", *args) requests on ``conn`` until ("stop",); answer ("ok", result) or ("err", text)."""
    d = open_db(path, **open_kwargs)
    pending_txn: Any = None
    try:
        while True:
            request = conn.recv()
            op, args = request[0], request[1:]
            if op == "stop":
                conn.send(("ok", None))
                return
            try:
                if op == "begin_txn_and_write":  # enter transaction(), write, and hold it open
                    pending_txn = d.transaction()
                    pending_txn.__enter__()
                    for key, value in args[0].items():
                        if value == MISSING:
                            d.pop(key, None)
                        else:
                            d[key] = value
                    result = None
                elif op == "end_txn":  # commit (True) or roll back (False) the held transaction
                    txn, pending_txn = pending_txn, None
                    if args[0]:
                        txn.__exit__(None, None, None)
                    else:
                        try:
                            raise Rollback
                        except Rollback as exc:
                            txn.__exit__(Rollback, exc, exc.__traceback__)
                    result = None
                else:
                    result = remote_op(d, op, *args)
                conn.send(("ok", result))
            except Exception as exc:  # noqa: BLE001 - report any failure to the driver, keep serving
                conn.send(("err", f"{op}{args!r:.200}: {exc!r}\n{traceback.format_exc()}"))
    finally:
        d.close()


def remote_op(d: PersistDict, op: str, *args: Any) -> Any:
    """One named operation; reads answer MISSING for an absent key."""
    if op == "set":
        d[args[0]] = args[1]
    elif op == "del":
        del d[args[0]]
    elif op == "pop":
        return d.pop(args[0])
    elif op == "setdefault":
        return d.setdefault(args[0], args[1])
    elif op == "set_many":
        d.set_many(args[0])
    elif op == "update":
        d.update(args[0])
    elif op == "txn_set":
        with d.transaction():
            d[args[0]] = args[1]
    elif op == "txn_del":
        with d.transaction():
            del d[args[0]]
    elif op == "clear":
        d.clear()
    elif op == "getitem":
        try:
            return d[args[0]]
        except KeyError:
            return MISSING
    elif op == "get":
        return d.get(args[0], MISSING)
    elif op == "contains":
        return args[0] in d
    elif op == "get_many":
        return d.get_many(args[0])
    elif op == "items":
        return dict(d.items())
    elif op == "warm":  # read a key often enough to be served from the front cache
        for _ in range(4):
            d.get(args[0])
        front = getattr(d, "_front", None)
        return front is not None and args[0] in front.hot
    else:
        raise ValueError(f"unknown op {op!r}")
    return None


def monotonic_writer(path: str, conn: Any, n: int, open_kwargs: dict[str, Any]) -> None:
    """Write 0..n-1 to "mono" and, after each write returns, tell the reader through ``conn``."""
    d = open_db(path, **open_kwargs)
    conn.recv()  # the reader is ready
    for i in range(n):
        d["mono"] = i
        conn.send(i)
    d.close()


# ---------------------------------------------------------------------------
# Crash (SIGKILL) workers
# ---------------------------------------------------------------------------

CRASH_KEYS = 40


def crash_value(i: int, size: int) -> Any:
    return (i, bytes([i % 251]) * size)


def crash_plan(seed: int):  # -> Iterator[tuple]
    """An endless deterministic sequence of write operations.

    A model of the store decides which deletes are valid, so the sequence is
    the same in the child that runs it and in the parent that checks it.
    """
    rng = random.Random(seed)
    present: set[str] = set()
    i = 0
    while True:
        i += 1
        kind = rng.choices(("set", "set_many", "update", "del", "pop", "txn", "setdefault"),
                           weights=(5, 2, 1, 1, 1, 2, 1))[0]
        size = rng.choice((0, 10, 300, 3000, 12000))
        if kind in ("del", "pop") and present:
            key = rng.choice(sorted(present))
            present.discard(key)
            yield (kind, key)
        elif kind in ("set_many", "update", "txn"):
            keys = rng.sample([f"c{k}" for k in range(CRASH_KEYS)], rng.randrange(2, 6))
            gone = sorted(present - set(keys))[:1] if kind == "txn" else []
            present.update(keys)
            present.difference_update(gone)
            yield (kind, {k: crash_value(i, size) for k in keys}, gone)
        else:
            key = f"c{rng.randrange(CRASH_KEYS)}"
            present.add(key)
            yield ("setdefault" if kind == "setdefault" else "set", key, crash_value(i, size))


def apply_crash_op(d: Any, op: tuple) -> None:
    """Apply one crash_plan operation to a PersistDict or to a plain dict (the oracle)."""
    kind = op[0]
    if kind == "set":
        d[op[1]] = op[2]
    elif kind == "setdefault":
        d.setdefault(op[1], op[2])
    elif kind in ("del", "pop"):
        if kind == "del":
            del d[op[1]]
        else:
            d.pop(op[1])
    elif kind == "set_many":
        if isinstance(d, PersistDict):
            d.set_many(op[1])
        else:
            d.update(op[1])
    elif kind == "update":
        d.update(op[1])
    elif kind == "txn":
        if isinstance(d, PersistDict):
            with d.transaction():
                for key, value in op[1].items():
                    d[key] = value
                for key in op[2]:
                    del d[key]
        else:
            d.update(op[1])
            for key in op[2]:
                del d[key]


def crash_writer(path: str, seed: int, conn: Any, durability: str) -> None:
    """Run crash_plan(seed) forever, sending the op's index after each op returns."""
    d = open_db(path, durability=durability)
    for n, op in enumerate(crash_plan(seed)):
        apply_crash_op(d, op)
        conn.send(n)


def txn_holder(path: str, conn: Any, durability: str) -> None:
    """Enter transaction(), change things, tell the parent, then wait (to be killed)."""
    d = open_db(path, durability=durability)
    with d.transaction():
        d["base.0"] = "uncommitted"
        del d["base.1"]
        d["new.in.txn"] = "uncommitted"
        d.set_many({f"bulk{i}": "uncommitted" for i in range(50)})
        d.clear()
        d["after.clear"] = "uncommitted"
        conn.send("inside")
        conn.recv()  # never answered: the parent kills us here


def _blocking_loads_factory(conn: Any) -> Any:
    import pickle as _pickle

    def loads(data: Any) -> Any:
        value = _pickle.loads(data)
        if value == "block-here":
            conn.send("inside")
            conn.recv()  # never answered
        return value

    return loads


def reader_holder(path: str, conn: Any) -> None:
    """Hold a read snapshot open (items() blocked inside the unserializer), to be killed there."""
    d = open_db(path, value_unserializer=_blocking_loads_factory(conn))
    list(d.items())


# ---------------------------------------------------------------------------
# Map growth under concurrency
# ---------------------------------------------------------------------------

GROWTH_MAP_SIZE = 1 << 20  # the smallest map: it must grow many times


def growth_value(p: int, t: int, j: int) -> bytes:
    return bytes([(p * 31 + t * 7 + j) % 251]) * (15_000 + j * 97)


def growth_worker(path: str, proc_id: int, n_threads: int, n_writes: int, barrier: Any) -> None:
    """Threads write large values (growing the map), read, and run read-modify-write transactions."""
    import faulthandler
    import sys

    faulthandler.dump_traceback_later(25, exit=True)  # a deadlock shows its stacks before the parent gives up
    d = open_db(path, map_size=GROWTH_MAP_SIZE)
    errors: list[str] = []

    def body(t: int) -> None:
        for j in range(n_writes):
            d[f"g{proc_id}.{t}.{j}"] = growth_value(proc_id, t, j)
            if j % 4 == 0:
                with d.transaction():  # reads inside a transaction while others grow the map
                    d["count"] = d.get("count", 0) + 1
                    if d.get(f"g{proc_id}.{t}.{j}") != growth_value(proc_id, t, j):
                        errors.append(f"transaction read a wrong value for g{proc_id}.{t}.{j}")
            if d.get(f"g{proc_id}.{t}.{j // 2}") != growth_value(proc_id, t, j // 2):
                errors.append(f"read a wrong value for g{proc_id}.{t}.{j // 2}")
            if j % 10 == 0:
                len(d)
                d.get_many([f"g{proc_id}.{t}.{k}" for k in range(j)])

    errors += run_threads_together(n_threads, body, barrier).values()
    d.close()
    faulthandler.cancel_dump_traceback_later()
    if errors:
        print(f"growth_worker {proc_id}: {len(errors)} errors; first:\n{errors[0]}", file=sys.stderr)
        raise SystemExit(1)
