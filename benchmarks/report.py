"""Turn benchmarks/results/results.json into results.md and chart.png.

run.py calls ``render`` at the end; ``python benchmarks/report.py [results_dir]``
re-renders from an existing results.json. The target checks and the ratio
tables are also written back into results.json ("targets", "ratios"). The get
cold target against the guarantee floor is checked on floors.json (written by
floors.py beside results.json), n/a without it.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import (  # noqa: E402
    CONTENDER_BY_NAME,
    REF_DISKCACHE,
    REF_LMDB,
    REF_LMDB_NOSYNC,
    RESULTS_DIR,
    VALUE_LABELS,
)

WORKLOAD_LABELS = {
    "set": "set new key",
    "overwrite": "overwrite existing key",
    "delete": "delete",
    "batch_set": "batch set (per entry)",
    "get_cold": "get cold (fresh process, random order)",
    "contains_hit": "contains, hit",
    "contains_miss": "contains, miss",
    "get_hot": "get hot (same 100 keys)",
    "iterate": "iterate keys (keys/s)",
    "batch_get": "batch get (per entry)",
    "mixed_threads_2": "mixed 80/20, 2 threads",
    "mixed_threads_4": "mixed 80/20, 4 threads",
    "mixed_procs_2": "mixed 80/20, 2 processes",
    "mixed_procs_4": "mixed 80/20, 4 processes",
    "hot_with_writer": "get hot while another process sets 100 keys/s",
    "get_cold_big": "get cold, large store",
    "open_ms": "open store (ms, lower is better)",
}
WORKLOAD_ORDER = list(WORKLOAD_LABELS)
OURS = ["pd", "pd_fast"]

DURABILITY_NOTES = {
    "dict": "In memory only; nothing survives the process.",
    "lmdb_sync": "py-lmdb `sync=True, metasync=True`: every commit fsyncs data and meta page "
                 "(survives power loss). The reference for write ratios.",
    "lmdb_nosync": "py-lmdb `sync=False, metasync=False`: no fsync. Survives kill -9 (data is in the page "
                   "cache) but an OS crash or power loss can lose recent commits or corrupt the database: "
                   "not crash safe.",
    "pd": "Default `durability=\"safe\"`: LMDB `sync=True, metasync=False`: data fsynced every commit, the "
          "meta page by the next commit. Survives kill -9; an OS crash may undo the last commit, never corrupts.",
    "pd_fast": "`durability=\"fast\"`: no fsync per commit (the maintenance pass syncs). Survives kill -9; an "
               "OS crash may lose recent writes.",
    "diskcache": "Defaults: SQLite WAL with `synchronous=NORMAL`: commits are not fsynced (the WAL is synced "
                 "at checkpoints). Survives kill -9; power loss may lose recent commits, no corruption.",
    "sqlitedict": "`autocommit=True` (chosen for per-operation durability like the others), sqlite defaults "
                  "`journal_mode=DELETE`, `synchronous=FULL`: every write is a commit with several fsyncs. "
                  "`outer_stack=False` (only trims error logs).",
    "shelve": "stdlib shelve on `dbm.dumb` (this Python has neither gdbm nor ndbm): never fsyncs; the index "
              "file is rewritten on sync/close and on every delete; not crash safe; one process, one thread.",
    "pd_orig": "PersistDict 0.2.14 (PyPI) on lmdb-dict: LMDB defaults `sync=True, metasync=True`; each set "
               "is two or more fully fsynced commits (value table, metadata table).",
}


def _fmt(x: float | None) -> str:
    if x is None:
        return "n/a"
    ax = abs(x)
    if ax >= 1e6:
        return f"{x / 1e6:.2f}M"
    if ax >= 1e4:
        return f"{x / 1e3:.0f}k"
    if ax >= 1e3:
        return f"{x / 1e3:.1f}k"
    if ax >= 100:
        return f"{x:.0f}"
    if ax >= 10:
        return f"{x:.1f}"
    return f"{x:.2f}"


def _ratio(x: float | None) -> str:
    if x is None:
        return "n/a"
    return f"{x:.2f}x" if x < 10 else f"{x:.1f}x" if x < 100 else f"{x:.0f}x"


def _spread(cell: dict[str, Any]) -> str:
    med = cell["median"]
    if not med or len(cell.get("reps", [])) < 2:
        return ""
    dev = max(cell["max"] - med, med - cell["min"]) / med * 100
    return f" ±{dev:.0f}%"


def _cell(figs: dict[str, Any], workload: str, value: str, contender: str) -> dict[str, Any] | None:
    return figs.get(workload, {}).get(value, {}).get(contender)


def _median(figs: dict[str, Any], workload: str, value: str, contender: str) -> float | None:
    cell = _cell(figs, workload, value, contender)
    if cell and cell.get("status") == "ok":
        return cell["median"]
    return None


def _div(a: float | None, b: float | None) -> float | None:
    if a is None or b is None or b == 0:
        return None
    return a / b


FLOOR_GET = {True: "get, compiled parse", False: "get"}  # floors.py's rows, by PersistDict's parsers
FLOOR_OURS = "get: PersistDict itself"


def floor_targets(floors: dict[str, Any] | None, values: list[str]) -> list[dict[str, Any]]:
    """get cold >= 0.8x the guarantee floor: floors.py's paired figures (same process, interleaved,
    best of 7) of PersistDict's own get and the least Python that keeps its guarantees."""
    rows = {(row["operation"], row["value"]): row for row in (floors or {}).get("rows", [])}
    floor_op = FLOOR_GET[bool((floors or {}).get("compiled_parsers"))]
    targets = []
    for value in values:
        ours, floor = rows.get((FLOOR_OURS, value)), rows.get((floor_op, value))
        ours_ops = 1e6 / ours["floor_us"] if ours else None  # the row's "floor" column is PersistDict there
        floor_ops = 1e6 / floor["floor_us"] if floor else None
        ratio = _div(ours_ops, floor_ops)
        targets.append({
            "goal": "get cold >= 0.8x the guarantee floor (floors.py)", "workload": "get_cold", "value": value,
            "contender": "pd", "reference": "floor", "measured": ours_ops, "reference_measured": floor_ops,
            "ratio": ratio, "need": ">= 0.8x", "floors_commit": (floors or {}).get("commit"),
            "result": "n/a" if ratio is None else ("PASS" if ratio >= 0.8 else "FAIL"),
        })
    return targets


def compute_targets(res: dict[str, Any], floors: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    figs = res.get("figures", {})
    values = res.get("values", [])
    mixed_values = [v for v in res.get("sizes", {}).get("mixed_values", []) if v in values]
    targets: list[dict[str, Any]] = []

    def ratio_target(goal: str, workload: str, value: str, ours: str, ref: str, need: float) -> None:
        a, b = _median(figs, workload, value, ours), _median(figs, workload, value, ref)
        r = _div(a, b)
        targets.append({
            "goal": goal, "workload": workload, "value": value, "contender": ours, "reference": ref,
            "measured": a, "reference_measured": b, "ratio": r, "need": f">= {need}x",
            "result": "n/a" if r is None else ("PASS" if r >= need else "FAIL"),
        })

    for value in [v for v in ("str100",) if v in values]:
        ratio_target("get hot >= 2x raw LMDB (100-byte values)", "get_hot", value, "pd", REF_LMDB, 2)
    for value in [v for v in ("embedding", "embedding_np") if v in values]:
        ratio_target("get hot >= 10x raw LMDB (embeddings)", "get_hot", value, "pd", REF_LMDB, 10)
    floor_rows = floor_targets(floors, values)
    for value, floor_row in zip(values, floor_rows):
        targets.append(floor_row)
        ratio_target("get cold >= 3x diskcache", "get_cold", value, "pd", REF_DISKCACHE, 3)
    for value in values:
        ratio_target("contains hit >= 0.8x raw LMDB", "contains_hit", value, "pd", REF_LMDB, 0.8)
    for value in values:
        ratio_target("iterate keys >= 0.5x raw LMDB", "iterate", value, "pd", REF_LMDB, 0.5)
        ratio_target("iterate keys >= 1x diskcache", "iterate", value, "pd", REF_DISKCACHE, 1)
    for value in values:
        ratio_target("set (default durability) >= 1.5x raw LMDB full sync", "set", value, "pd", REF_LMDB, 1.5)
    for value in values:
        ratio_target("set (fastest mode) >= 10x diskcache", "set", value, "pd_fast", REF_DISKCACHE, 10)
    for value in values:
        ratio_target("batch set >= 0.5x raw LMDB one txn (sync)", "batch_set", value, "pd", REF_LMDB, 0.5)
        ratio_target("batch set >= 10x diskcache", "batch_set", value, "pd", REF_DISKCACHE, 10)
    for value in mixed_values:
        ratio_target("mixed 2 threads >= 1.5x diskcache", "mixed_threads_2", value, "pd", REF_DISKCACHE, 1.5)
        ratio_target("mixed 2 processes >= 1.5x diskcache", "mixed_procs_2", value, "pd", REF_DISKCACHE, 1.5)
    big = res.get("big", {})
    n_big = big.get("n")
    for ours in OURS:
        cell = big.get("open", {}).get(ours)
        if cell is None:
            continue
        ms = cell["open_ms"]["median"] if cell.get("status") == "ok" else None
        targets.append({
            "goal": f"open a {n_big:,}-entry store < 100 ms" + ("" if n_big == 1_000_000 else " (scaled-down run)"),
            "workload": "open_big", "value": "str100", "contender": ours, "reference": None,
            "measured": ms, "reference_measured": None, "ratio": None, "need": "< 100 ms",
            "result": "n/a" if ms is None else ("PASS" if ms < 100 else "FAIL"),
        })
    during = big.get("maintenance", {}).get("during_maintenance", {})
    if "maintenance" in big:
        worst = during.get("max_us")
        targets.append({
            "goal": "no foreground get waits > 5 ms while maintenance passes run" +
                    ("" if n_big == 1_000_000 else " (scaled-down run)"),
            "workload": "maint_latency", "value": "str100", "contender": "pd", "reference": None,
            "measured": None if worst is None else worst / 1000, "reference_measured": None, "ratio": None,
            "need": "slowest get < 5 ms",
            "result": "n/a" if worst is None else ("PASS" if worst < 5000 else "FAIL"),
        })
    return targets


def compute_ratios(res: dict[str, Any]) -> list[dict[str, Any]]:
    figs = res.get("figures", {})
    rows = []
    for workload in WORKLOAD_ORDER:
        if workload not in figs or workload == "open_ms":
            continue
        for value in [v for v in res.get("values", []) if v in figs[workload]]:
            row: dict[str, Any] = {"workload": workload, "value": value}
            for ours in OURS:
                a = _median(figs, workload, value, ours)
                for ref in (REF_LMDB, REF_LMDB_NOSYNC, REF_DISKCACHE):
                    row[f"{ours}/{ref}"] = _div(a, _median(figs, workload, value, ref))
            rows.append(row)
    return rows


def _label(name: str) -> str:
    if name == "floor":
        return "guarantee floor"
    c = CONTENDER_BY_NAME.get(name)
    return c.label if c else name


def render_markdown(res: dict[str, Any], targets: list[dict[str, Any]], ratios: list[dict[str, Any]]) -> str:
    figs = res.get("figures", {})
    sz = res.get("sizes", {})
    contenders = [c["name"] for c in res.get("contenders", [])]
    machine = res.get("machine", {})
    lines: list[str] = []
    add = lines.append
    add("# PersistDict benchmark results")
    add("")
    add(f"Mode **{res.get('mode')}**, started {res.get('started_utc')}, took {res.get('duration_s', 0) / 60:.1f} min"
        + (" (**partial**)" if res.get("partial") else "") + f". Command: `{res.get('command')}`.")
    add("")
    add(f"Machine: {machine.get('cpu', '?')}, {machine.get('cpu_count')} cores, {machine.get('mem_total_gb')} GB RAM, "
        f"work dir on {machine.get('work_dir_filesystem', '?')}; Python {machine.get('python')} on "
        f"{machine.get('platform')}.")
    add("")
    add("Versions: " + ", ".join(f"{k} {v}" for k, v in machine.get("versions", {}).items() if v) + ".")
    if "PersistDict compiled parsers" in machine:
        add(f"PersistDict's compiled record parsers (PersistDict/_speedups.c): {machine['PersistDict compiled parsers']}.")
    add("")
    add(f"Every figure is the median of {sz.get('reps')} repetitions, each in a fresh process on a fresh "
        f"directory; ± is the largest distance of min or max from the median. Each timed workload stops "
        f"after {sz.get('cap_s')} s (ops/s = operations done / time). Read workloads use a store of "
        f"{sz.get('n_read'):,} entries ({sz.get('n_read_slow'):,} for PersistDict 0.2.14); batches are "
        f"{sz.get('batch'):,} entries per call. Details of each workload and contender: benchmarks/README.md.")
    add("")

    # targets
    add("## Targets")
    add("")
    add("Ratios compare PersistDict (defaults, or `durability=\"fast\"` where the target says fastest mode) "
        "with the reference's median. Raw LMDB is `lmdb_sync` (sync=True, metasync=True) for every ratio.")
    floor_commits = {t["floors_commit"] for t in targets if t["reference"] == "floor"}
    if floor_commits:
        commit = ", ".join(sorted(str(c) for c in floor_commits))
        source = "no floors.json: run it" if floor_commits == {None} else f"floors.json, code at {commit}"
        add(f"The guarantee floor rows come from `benchmarks/floors.py` ({source}), not from the tables below: "
            "PersistDict's own cold get and the floor (the least Python that keeps its guarantees, with the "
            "compiled record parse when PersistDict has it) in one process, interleaved, best of 7.")
    add("")
    add("| target | value | PersistDict | reference | ratio | needed | result |")
    add("|---|---|---:|---:|---:|---|---|")
    for t in targets:
        if t["reference"] is None:
            measured = "n/a" if t["measured"] is None else f"{t['measured']:.1f} ms"
            add(f"| {t['goal']} | {t['value']} ({_label(t['contender'])}) | {measured} | | | {t['need']} "
                f"| **{t['result']}** |")
            continue
        ours = _label(t["contender"])
        add(f"| {t['goal']} | {t['value']} | {_fmt(t['measured'])} ({ours}) | {_fmt(t['reference_measured'])} "
            f"({_label(t['reference'])}) | {_ratio(t['ratio'])} | {t['need']} | **{t['result']}** |")
    passed = sum(t["result"] == "PASS" for t in targets)
    failed = sum(t["result"] == "FAIL" for t in targets)
    add("")
    add(f"{passed} PASS, {failed} FAIL, {len(targets) - passed - failed} n/a.")
    add("")

    # per-value throughput tables
    add("## Throughput (ops/s)")
    header = "| workload | " + " | ".join(_label(c) for c in contenders) + " |"
    sep = "|---|" + "---:|" * len(contenders)
    for value in res.get("values", []):
        rows = [w for w in WORKLOAD_ORDER if value in figs.get(w, {})]
        if not rows:
            continue
        add("")
        add(f"### {VALUE_LABELS.get(value, value)} (`{value}`)")
        add("")
        add(header)
        add(sep)
        for w in rows:
            cells = []
            for c in contenders:
                cell = _cell(figs, w, value, c)
                if cell is None:
                    cells.append("")
                elif cell["status"] == "ok":
                    mark = " †" if cell.get("errors") or cell.get("failed_reps") else ""
                    cells.append(_fmt(cell["median"]) + _spread(cell) + mark)
                else:
                    cells.append(cell["status"])
            add(f"| {WORKLOAD_LABELS.get(w, w)} | " + " | ".join(cells) + " |")
    add("")
    add("n/a: not supported (see below); error: the run failed (traceback in results.json); "
        "†: some operations or repetitions failed (see results.json).")
    add("")

    # ratios
    add("## Ratios of PersistDict to the references")
    add("")
    add("Write workloads are compared with raw LMDB **with full sync** (`LMDB sync`: the same or stronger "
        "durability than PersistDict's default) and also with `LMDB nosync` (the like-for-like reference for "
        "`durability=\"fast\"`). Reads do not depend on the sync mode.")
    add("")
    add("| workload | value | PD / LMDB sync | PD / LMDB nosync | PD / diskcache | PD fast / LMDB sync "
        "| PD fast / LMDB nosync | PD fast / diskcache |")
    add("|---|---|---:|---:|---:|---:|---:|---:|")
    for row in ratios:
        cells = [_ratio(row.get(f"{o}/{r}")) for o in OURS for r in (REF_LMDB, REF_LMDB_NOSYNC, REF_DISKCACHE)]
        add(f"| {WORKLOAD_LABELS.get(row['workload'], row['workload'])} | {row['value']} | " + " | ".join(cells) + " |")
    add("")

    if res.get("baseline"):
        add(f"## This change against the baseline ({res['baseline']})")
        add("")
        add("Both measured in this run, interleaved (`run.py --baseline REF`); a ratio above 1 is faster now.")
        add("")
        add("| workload | value | PD ops/s | baseline ops/s | PD / baseline |")
        add("|---|---|---:|---:|---:|")
        figs = res.get("figures", {})
        for row in ratios:
            now, then = (_median(figs, row["workload"], row["value"], name) for name in ("pd", "pd_base"))
            add(f"| {WORKLOAD_LABELS.get(row['workload'], row['workload'])} | {row['value']} | {_fmt(now)} "
                f"| {_fmt(then)} | {_ratio(_div(now, then))} |")
        add("")

    # big store
    big = res.get("big")
    if big:
        n_big = big.get("n", 0)
        add(f"## Large store: {n_big:,} entries (100-byte str values)")
        add("")
        add(f"Fresh process per repetition ({sz.get('big_reps')}): open time (constructor), first get, then "
            f"{sz.get('big_cold_ops'):,} cold gets of random keys. The last columns compare with the cold gets "
            f"on the {sz.get('n_read'):,}-entry store (`str100`).")
        add("")
        add("| contender | populate (s) | open ms (median [min–max]) | first get ms | get cold @large | "
            "get cold @small | large/small | peak RSS MB |")
        add("|---|---:|---:|---:|---:|---:|---:|---:|")
        for name in contenders:
            cell = big.get("open", {}).get(name)
            if cell is None:
                continue
            if cell.get("status") != "ok":
                reason = cell.get("reason") or (cell.get("error") or "")[-120:].strip().replace("\n", " ")
                add(f"| {_label(name)} | | {cell.get('status')}: {reason} | | | | | |")
                continue
            fam = CONTENDER_BY_NAME[name].big_family or name
            pop = big.get("populate", {}).get(fam, {})
            pop_s = f"{pop['seconds']:.1f}" if pop.get("status") == "ok" else ""
            small = _median(figs, "get_cold", "str100", name)
            large = cell["get_cold"]["median"]
            o = cell["open_ms"]
            add(f"| {_label(name)} | {pop_s} | {o['median']:.1f} [{o['min']:.1f}–{o['max']:.1f}] | "
                f"{cell['first_get_ms']['median']:.2f} | {_fmt(large)} | {_fmt(small)} | {_ratio(_div(large, small))} "
                f"| {cell['maxrss_mb']['median']:.0f} |")
        add("")
        maint = big.get("maintenance")
        if maint:
            add("### Foreground get latency while maintenance runs (PersistDict defaults)")
            add("")
            if maint.get("status") != "ok":
                add(f"error: {(maint.get('error') or '')[-500:]}")
            else:
                add(f"`background_thread=\"disabled\"`; a thread calls `d.run_maintenance()` in a loop while the "
                    f"main thread reads random keys of the {n_big:,}-entry store for {sz.get('maint_s')} s "
                    f"(baseline: the same without the thread, half before and half after that window). Each pass "
                    f"flushes the access times of the keys read since the previous pass, then sweeps for expired "
                    f"entries.")
                add("")
                add("| phase | gets | p50 µs | p90 µs | p99 µs | p99.9 µs | max µs |")
                add("|---|---:|---:|---:|---:|---:|---:|")
                for phase in ("baseline", "during_maintenance"):
                    p = maint.get(phase, {})
                    if p:
                        add(f"| {phase.replace('_', ' ')} | {p['count']:,} | {p['p50_us']:.1f} | {p['p90_us']:.1f} | "
                            f"{p['p99_us']:.1f} | {p['p999_us']:.1f} | {p['max_us']:.0f} |")
                passes = maint.get("maintenance_pass_s", [])
                add("")
                alone = (f"alone, a pass flushing {maint.get('single_pass_pending_atimes', 0):,} pending access times "
                         f"took {maint.get('single_pass_idle_s', 0):.3f} s and a pass with nothing pending "
                         f"{maint.get('empty_pass_s', 0):.3f} s.")
                if passes:
                    add(f"Maintenance passes during the window: {len(passes)}, mean {sum(passes) / len(passes):.3f} s, "
                        f"longest {max(passes):.3f} s; " + alone)
                else:
                    add(f"No maintenance pass finished within the window ({maint.get('maintenance_window_s', 0):.1f} s); "
                        + alone)
                if maint.get("maintenance_error"):
                    add("")
                    add("Maintenance raised: `" + maint["maintenance_error"].strip().splitlines()[-1] + "`")
            add("")

    # memory
    mem = res.get("memory_mb", {})
    if mem:
        add("## Peak memory (MB, peak RSS of the worker process)")
        add("")
        add("Peak resident set (VmHWM; `ru_maxrss` is also in results.json but on Linux it carries the parent's "
            "peak across fork+exec). `read`: the read worker (open, all read workloads); `write`: the write "
            "worker. Includes the interpreter, the value pool and the page-cache pages the process mapped (LMDB "
            "reads through mmap count as resident); compare with dict.")
        add("")
        add("| task | value | " + " | ".join(_label(c) for c in contenders) + " |")
        add("|---|---|" + "---:|" * len(contenders))
        for task in ("read", "write"):
            for value in res.get("values", []):
                per = mem.get(task, {}).get(value)
                if not per:
                    continue
                add(f"| {task} | {value} | " + " | ".join(
                    f"{per[c]['median']:.0f}" if c in per else "" for c in contenders) + " |")
        add("")

    # n/a and errors
    notes: list[str] = []
    for w, values in figs.items():
        for value, per in values.items():
            for c, cell in per.items():
                if cell["status"] == "n/a":
                    notes.append(f"- {WORKLOAD_LABELS.get(w, w)} / {_label(c)}: n/a, {cell['reason']}")
                elif cell["status"] == "error":
                    last = (cell.get("error") or "").strip().splitlines()[-1:] or [""]
                    notes.append(f"- {WORKLOAD_LABELS.get(w, w)} / {value} / {_label(c)}: error, `{last[0][:200]}`")
                elif cell.get("errors"):
                    notes.append(f"- {WORKLOAD_LABELS.get(w, w)} / {value} / {_label(c)}: {cell['errors']} operations "
                                 "raised (excluded from the rate)")
    if notes:
        add("## Not applicable and failures")
        add("")
        lines.extend(sorted(set(notes)))
        add("")

    add("## Contenders: durability and batch forms")
    add("")
    from contenders import BATCH_NOTES

    add("| contender | durability of a single write | batch set / batch get |")
    add("|---|---|---|")
    for c in contenders:
        add(f"| {_label(c)} | {DURABILITY_NOTES.get(c, '')} | {BATCH_NOTES.get(c, '')} |")
    add("")
    add("Cold reads are cold for the process (fresh interpreter, empty front cache, LMDB map not yet faulted in), "
        "not for the OS: the store was just written, so its pages sit in the page cache. PersistDict 0.2.14 runs an "
        "integrity check under its lock in a background thread at open, so its cold gets mostly wait for it.")
    add("")
    add("The machine is a shared 2-core VM: spreads of ±30–80% occur even for the in-memory dict; compare medians, "
        "and treat ratios within about 1.3x of a threshold as inconclusive.")
    add("")
    return "\n".join(lines)


def render_chart(res: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figs = res.get("figures", {})
    contenders = [c["name"] for c in res.get("contenders", [])]
    values = res.get("values", [])
    workloads = [w for w in WORKLOAD_ORDER if w in figs and w != "open_ms"]
    if not workloads:
        return
    ncols = 4
    nrows = (len(workloads) + ncols - 1) // ncols
    fig, axes = plt.subplots(nrows, ncols, figsize=(5.2 * ncols, 3.6 * nrows + 1.2), squeeze=False)
    cmap = plt.get_cmap("tab10")
    width = 0.8 / max(1, len(contenders))
    for ax, w in zip(axes.flat, workloads):
        vals = [v for v in values if v in figs[w]]
        for ci, c in enumerate(contenders):
            xs, ys, lo, hi = [], [], [], []
            for vi, v in enumerate(vals):
                cell = _cell(figs, w, v, c)
                if cell and cell["status"] == "ok" and cell["median"] > 0:
                    xs.append(vi + (ci - (len(contenders) - 1) / 2) * width)
                    ys.append(cell["median"])
                    lo.append(cell["median"] - cell["min"])
                    hi.append(cell["max"] - cell["median"])
            if xs:
                ax.bar(xs, ys, width=width, color=cmap(ci % 10), label=_label(c),
                       yerr=[lo, hi], error_kw={"elinewidth": 0.6, "capsize": 1})
        ax.set_yscale("log")
        ax.set_title(WORKLOAD_LABELS.get(w, w), fontsize=10)
        ax.set_xticks(range(len(vals)))
        ax.set_xticklabels(vals, fontsize=8)
        ax.set_ylabel("ops/s (log)", fontsize=8)
        ax.grid(axis="y", which="major", alpha=0.3)
    for ax in list(axes.flat)[len(workloads):]:
        ax.axis("off")
    handles = [plt.Rectangle((0, 0), 1, 1, color=cmap(i % 10)) for i in range(len(contenders))]
    fig.suptitle(f"PersistDict benchmarks ({res.get('mode')} run): median ops/s, min–max as error bars, log scale",
                 y=0.995, fontsize=12)
    fig.legend(handles, [_label(c) for c in contenders], loc="upper center", bbox_to_anchor=(0.5, 0.965),
               ncol=min(len(contenders), 9), fontsize=9, frameon=False)
    fig.tight_layout(rect=(0, 0, 1, 0.93))
    fig.savefig(path, dpi=90)
    plt.close(fig)


def render(out_dir: Path = RESULTS_DIR) -> None:
    out_dir = Path(out_dir)
    res = json.loads((out_dir / "results.json").read_text())
    floors_path = out_dir / "floors.json"
    floors = json.loads(floors_path.read_text()) if floors_path.exists() else None
    targets = compute_targets(res, floors)
    ratios = compute_ratios(res)
    res["targets"] = targets
    res["ratios"] = ratios
    (out_dir / "results.json").write_text(json.dumps(res, indent=1, default=str))
    (out_dir / "results.md").write_text(render_markdown(res, targets, ratios))
    render_chart(res, out_dir / "chart.png")


if __name__ == "__main__":
    render(Path(sys.argv[1]) if len(sys.argv) > 1 else RESULTS_DIR)
