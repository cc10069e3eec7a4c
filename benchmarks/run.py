"""Run the PersistDict benchmark suite and write benchmarks/results/.

    python benchmarks/run.py            # full run (~20 min on 2 cores)
    python benchmarks/run.py --quick    # smoke-sized run (< 3 min)

Every measurement runs in a fresh worker process (benchmarks/worker.py) on a
fresh directory under benchmarks/work/ (gitignored). Missing contenders are
installed first (see ``ensure_setup``); the original PersistDict 0.2.14 goes
into benchmarks/work/original with ``pip install --target`` because its import
name is the same as this repository's package.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import importlib.metadata
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path
from statistics import median
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import (  # noqa: E402
    CONTENDER_BY_NAME,
    CONTENDERS,
    FULL,
    ORIGINAL_DIR,
    ORIGINAL_VERSION,
    QUICK,
    REPO_ROOT,
    RESULTS_DIR,
    SNAPSHOT_DIR,
    BASELINE_DIR,
    VALUE_KINDS,
    WORK_DIR,
    BENCH_DIR,
    Sizes,
    numpy_available,
    sizes_dict,
)

WORKER = BENCH_DIR / "worker.py"
RUN_DIR = WORK_DIR / "run"
PIP_REQUIREMENTS = {  # import name -> requirement
    "lmdb": "lmdb>=3,<4",
    "diskcache": "diskcache>=5.6",
    "sqlitedict": "sqlitedict>=2.1",
    "matplotlib": "matplotlib>=3.7",
    "numpy": "numpy>=1.24",
}
OPS_WORKLOADS = [
    "set", "overwrite", "delete", "batch_set",
    "get_cold", "contains_hit", "contains_miss", "get_hot", "iterate", "batch_get",
]

T_START = time.monotonic()


def log(message: str) -> None:
    elapsed = time.monotonic() - T_START
    print(f"[{int(elapsed // 60):02d}:{elapsed % 60:04.1f}] {message}", file=sys.stderr, flush=True)


# -- setup ------------------------------------------------------------------------------

def _pip(*args: str) -> None:
    cmd = [sys.executable, "-m", "pip", "install", "--disable-pip-version-check", "-q", *args]
    log("installing: " + " ".join(args))
    subprocess.run(cmd, check=True)


def ensure_setup(no_install: bool) -> None:
    """Install what the benchmarks need into this interpreter (and the original into work/)."""
    missing = []
    for module, requirement in PIP_REQUIREMENTS.items():
        try:
            __import__(module)
        except ImportError:
            missing.append(requirement)
    probe = subprocess.run(
        [sys.executable, "-c", f"import sys; sys.path.insert(0, {str(REPO_ROOT)!r}); import PersistDict"],
        capture_output=True, text=True)
    if probe.returncode != 0:
        # this repository's runtime dependencies (not the package itself: it is imported from the checkout)
        missing += ["lmdb>=3,<4", "cachetools>=5", "loguru>=0.7", "beartype>=0.18", "dill>=0.3.6"]
    original_ok = _original_installed()
    if (missing or not original_ok) and no_install:
        raise SystemExit(f"missing: {missing or ''} {'' if original_ok else 'persistdict==' + ORIGINAL_VERSION}"
                         " (run without --no-install)")
    if missing:
        _pip(*sorted(set(missing)))
    if not original_ok:
        shutil.rmtree(ORIGINAL_DIR, ignore_errors=True)
        ORIGINAL_DIR.mkdir(parents=True, exist_ok=True)
        _pip("--target", str(ORIGINAL_DIR), f"persistdict=={ORIGINAL_VERSION}")
        if not _original_installed():
            raise SystemExit(f"could not install persistdict=={ORIGINAL_VERSION} into {ORIGINAL_DIR}")


def _original_installed() -> bool:
    init = ORIGINAL_DIR / "PersistDict" / "PersistDict.py"
    return init.is_file() and f'__VERSION__: str = "{ORIGINAL_VERSION}"' in init.read_text()


def _dist_version(name: str) -> str | None:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def snapshot_ours() -> str:
    """Copy this repository's PersistDict/ to work/snapshot; returns a hash of its sources."""
    import hashlib

    shutil.rmtree(SNAPSHOT_DIR, ignore_errors=True)
    shutil.copytree(REPO_ROOT / "PersistDict", SNAPSHOT_DIR / "PersistDict",
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    digest = hashlib.sha256()
    for path in sorted((SNAPSHOT_DIR / "PersistDict").rglob("*")):
        if path.is_file():
            digest.update(path.name.encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:12]


def snapshot_baseline(ref: str) -> str:
    """Extract PersistDict/ as of git ``ref`` to work/baseline (contender pd_base); returns its commit.

    Its compiled parsers are the snapshot's when ``_speedups.c`` is the same at ``ref``, else built
    from ``ref``'s source as pip builds them (setuptools build_ext; a failed build fails the run)."""
    commit = subprocess.run(["git", "-C", str(REPO_ROOT), "rev-parse", "--short", ref],
                            capture_output=True, text=True, check=True).stdout.strip()
    shutil.rmtree(BASELINE_DIR, ignore_errors=True)
    BASELINE_DIR.mkdir(parents=True)
    archive = subprocess.run(["git", "-C", str(REPO_ROOT), "archive", commit, "PersistDict"],
                             capture_output=True, check=True).stdout
    subprocess.run(["tar", "-x", "-C", str(BASELINE_DIR)], input=archive, check=True)
    package = BASELINE_DIR / "PersistDict"
    ours = SNAPSHOT_DIR / "PersistDict"
    if (package / "_speedups.c").read_bytes() == (ours / "_speedups.c").read_bytes():
        for built in ours.glob("_speedups*.so"):
            shutil.copy2(built, package / built.name)
    elif any(ours.glob("_speedups*.so")):  # compare like with like: both compiled
        subprocess.run([sys.executable, "-c", "from setuptools import Extension, setup; setup(name='baseline', "
                        "ext_modules=[Extension('PersistDict._speedups', ['PersistDict/_speedups.c'])], "
                        "script_args=['-q', 'build_ext', '--inplace'])"], cwd=BASELINE_DIR, check=True)
    return commit


def machine_info() -> dict[str, Any]:
    info: dict[str, Any] = {
        "platform": platform.platform(),
        "python": sys.version.split()[0],
        "python_executable": sys.executable,
        "cpu_count": os.cpu_count(),
    }
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                info["cpu"] = line.split(":", 1)[1].strip()
                break
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                info["mem_total_gb"] = round(int(line.split()[1]) / 1024 / 1024, 1)
        best = ("", "")
        work = str(WORK_DIR.resolve())
        for line in Path("/proc/mounts").read_text().splitlines():
            dev, mnt, fstype, *_ = line.split()
            if (work == mnt or work.startswith(mnt.rstrip("/") + "/")) and len(mnt) > len(best[0]):
                best = (mnt, f"{fstype} on {dev}")
        info["work_dir_filesystem"] = best[1]
    except OSError:
        pass
    versions = {name: _dist_version(name) for name in
                ("lmdb", "diskcache", "sqlitedict", "numpy", "matplotlib", "cachetools", "loguru", "beartype")}
    init = (REPO_ROOT / "PersistDict" / "__init__.py").read_text()
    ours = next((line.split('"')[1] for line in init.splitlines() if line.startswith("__version__")), "?")
    versions["PersistDict (this repo)"] = ours
    try:
        commit = subprocess.run(["git", "-C", str(REPO_ROOT), "rev-parse", "--short", "HEAD"],
                                capture_output=True, text=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(REPO_ROOT), "status", "--porcelain", "PersistDict"],
                               capture_output=True, text=True).stdout.strip()
        versions["PersistDict (this repo)"] += f" @ {commit}{' + uncommitted changes' if dirty else ''}"
        versions["PersistDict (this repo)"] += " (snapshot taken at start)"
    except OSError:
        pass
    versions["persistdict (original, --target)"] = ORIGINAL_VERSION
    info["versions"] = versions
    info["PersistDict compiled parsers"] = compiled_parsers_state()
    return info


def compiled_parsers_state() -> str:
    """Whether the snapshot carries PersistDict/_speedups built from the current _speedups.c."""
    package = SNAPSHOT_DIR / "PersistDict"
    built = sorted(package.glob("_speedups*.so"), key=lambda path: path.stat().st_mtime)
    if not built:
        return "off (not built: pure-Python parsers)"
    if built[-1].stat().st_mtime < (package / "_speedups.c").stat().st_mtime:
        return "STALE (built before the last edit of _speedups.c: rerun pip install -e .)"
    return "on"


# -- running workers ---------------------------------------------------------------------

class Runner:
    def __init__(self, sizes: Sizes) -> None:
        self.sizes = sizes
        self.counter = 0
        self.raw: list[dict[str, Any]] = []

    def spec(self, task: str, contender: str, **extra: Any) -> dict[str, Any]:
        self.counter += 1
        out = RUN_DIR / "out" / f"{self.counter:05d}-{task}-{contender}.json"
        out.parent.mkdir(parents=True, exist_ok=True)
        return {"task": task, "contender": contender, "sizes": sizes_dict(self.sizes), "out": str(out),
                "ours_root": str(SNAPSHOT_DIR), "base_root": str(BASELINE_DIR), **extra}

    def run(self, task: str, contender: str, **extra: Any) -> dict[str, Any]:
        spec = self.spec(task, contender, **extra)
        t0 = time.monotonic()
        try:
            proc = subprocess.run([sys.executable, str(WORKER), json.dumps(spec)], cwd=str(BENCH_DIR),
                                  capture_output=True, text=True, timeout=self.sizes.task_timeout_s)
            result = self._read(spec, proc.returncode, proc.stderr)
        except subprocess.TimeoutExpired:
            result = {"status": "error", "error": f"timed out after {self.sizes.task_timeout_s} s"}
        result["wall_s"] = time.monotonic() - t0
        self._note(spec, result)
        return result

    def _read(self, spec: dict[str, Any], returncode: int, stderr: str) -> dict[str, Any]:
        try:
            with open(spec["out"]) as fh:
                return json.load(fh)
        except (OSError, ValueError):
            return {"status": "error", "error": f"worker exited {returncode} without a result: {stderr[-2000:]}"}

    def _note(self, spec: dict[str, Any], result: dict[str, Any]) -> None:
        what = " ".join(str(spec[k]) for k in ("task", "contender", "value", "threads", "procs") if k in spec)
        status = result["status"]
        log(f"{what}: {status} ({result['wall_s']:.1f}s)")
        if status != "ok":
            log("   " + result.get("error", "").strip().replace("\n", "\n   ")[-1500:])
        self.raw.append({"spec": {k: v for k, v in spec.items() if k != "sizes"}, "result": result})

    def run_procs(self, contender: str, nprocs: int, **extra: Any) -> dict[str, Any]:
        """Start nprocs mixed_proc workers on one path; start them together; sum their throughput."""
        gate = RUN_DIR / "gate" / f"{self.counter:05d}"
        shutil.rmtree(gate, ignore_errors=True)
        gate.mkdir(parents=True)
        go = gate / "go"
        specs, procs = [], []
        t0 = time.monotonic()
        seed = extra.pop("seed", 0)
        for i in range(nprocs):
            spec = self.spec("mixed_proc", contender, ready=str(gate / f"ready{i}"), go=str(go),
                             seed=seed * 100 + i, procs=nprocs, **extra)
            specs.append(spec)
            procs.append(subprocess.Popen([sys.executable, str(WORKER), json.dumps(spec)], cwd=str(BENCH_DIR),
                                          stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True))
        deadline = time.monotonic() + 120
        while not all(os.path.exists(s["ready"]) for s in specs):
            if any(p.poll() is not None for p in procs) or time.monotonic() > deadline:
                break
            time.sleep(0.005)
        go.touch()
        results = []
        for spec, proc in zip(specs, procs):
            try:
                _, stderr = proc.communicate(timeout=self.sizes.task_timeout_s)
            except subprocess.TimeoutExpired:
                proc.kill()  # only the worker this call started
                _, stderr = proc.communicate()
            results.append(self._read(spec, proc.returncode, stderr))
        bad = [r for r in results if r.get("status") != "ok"]
        if bad:
            result = {"status": "error", "error": bad[0].get("error", "")}
        else:
            errors = sum(r["errors"] for r in results)
            ops = sum(r["ops"] for r in results) - errors
            rate = sum((r["ops"] - r["errors"]) / r["seconds"] for r in results)
            result = {"status": "ok", "mixed": {"ops": ops, "ops_per_s": rate, "errors": errors,
                                                "per_process": [r["ops"] for r in results],
                                                "seconds": max(r["seconds"] for r in results)},
                      "maxrss_mb": max(r["maxrss_mb"] for r in results), "version": results[0].get("version")}
            if errors:
                result["note"] = f"{errors} operations raised an exception (not counted as done)"
        result["wall_s"] = time.monotonic() - t0
        self._note(specs[0], result)
        return result


# -- the suite -------------------------------------------------------------------------------

class Figures:
    """figures[workload][value][contender] = list of per-rep results (or an n/a reason)."""

    def __init__(self) -> None:
        self.samples: dict[str, dict[str, dict[str, list[dict[str, Any]]]]] = {}
        self.na: dict[str, dict[str, dict[str, str]]] = {}
        self.memory: dict[str, dict[str, dict[str, list[float]]]] = {}

    def add(self, workload: str, value: str, contender: str, result: dict[str, Any]) -> None:
        self.samples.setdefault(workload, {}).setdefault(value, {}).setdefault(contender, []).append(result)

    def mark_na(self, workload: str, value: str, contender: str, reason: str) -> None:
        self.na.setdefault(workload, {}).setdefault(value, {})[contender] = reason

    def add_memory(self, task: str, value: str, contender: str, mb: float) -> None:
        self.memory.setdefault(task, {}).setdefault(value, {}).setdefault(contender, []).append(mb)

    def summary(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        workloads = list(dict.fromkeys([*self.samples, *self.na]))
        for workload in workloads:
            for value in {**self.samples.get(workload, {}), **self.na.get(workload, {})}:
                cell = out.setdefault(workload, {}).setdefault(value, {})
                for contender, reason in self.na.get(workload, {}).get(value, {}).items():
                    cell[contender] = {"status": "n/a", "reason": reason}
                for contender, reps in self.samples.get(workload, {}).get(value, {}).items():
                    ok = [r for r in reps if r.get("status", "ok") == "ok" and ("ops_per_s" in r or "ms" in r)]
                    if not ok:
                        cell[contender] = {"status": "error", "error": (reps[0].get("error") or "")[-3000:]}
                        continue
                    unit = "ms" if "ms" in ok[0] else "ops/s"
                    rates = [r["ms"] if unit == "ms" else r["ops_per_s"] for r in ok]
                    cell[contender] = {
                        "status": "ok", "unit": unit, "median": median(rates), "min": min(rates),
                        "max": max(rates), "reps": rates, "ops": [r.get("ops") for r in ok],
                        "seconds": [round(r.get("seconds", 0.0), 4) for r in ok],
                        **({"errors": sum(r.get("errors", 0) for r in ok)} if any(r.get("errors") for r in ok) else {}),
                        **({"failed_reps": len(reps) - len(ok)} if len(ok) != len(reps) else {}),
                    }
        return out

    def memory_summary(self) -> dict[str, Any]:
        return {task: {value: {c: {"median": median(v), "max": max(v)} for c, v in per.items()}
                       for value, per in values.items()} for task, values in self.memory.items()}


def fresh_dir(*parts: str) -> str:
    path = RUN_DIR.joinpath(*parts)
    shutil.rmtree(path, ignore_errors=True)
    path.parent.mkdir(parents=True, exist_ok=True)
    return str(path)


def n_read_for(contender: str, sz: Sizes) -> int:
    return sz.n_read_slow if CONTENDER_BY_NAME[contender].slow else sz.n_read


def run_core(runner: Runner, figs: Figures, contenders: list[str], values: list[str]) -> None:
    sz = runner.sizes
    for rep in range(sz.reps):
        for value in values:
            # the order turns each repetition: the first write after the previous stores were deleted
            # pays for the disk's background work (seen: batch set of embeddings 5k against 25k entries/s)
            turn = rep % len(contenders)
            for name in contenders[turn:] + contenders[:turn]:
                c = CONTENDER_BY_NAME[name]
                tag = f"{name}-{value}-{rep}"
                # writes: fresh directory, fresh process
                res = runner.run("write", name, value=value, path=fresh_dir("core", "w-" + tag), seed=rep)
                for w in ("set", "overwrite", "delete", "batch_set"):
                    figs.add(w, value, name, res.get(w, res) if res["status"] == "ok" else res)
                if res["status"] == "ok":
                    figs.add_memory("write", value, name, res["maxrss_mb"])
                shutil.rmtree(RUN_DIR / "core" / ("w-" + tag), ignore_errors=True)
                # reads: populate a fresh directory in one process, read it in another
                n = n_read_for(name, sz)
                path = fresh_dir("core", "r-" + tag)
                if c.persistent:
                    pop = runner.run("populate", name, value=value, path=path, n=n)
                    if pop["status"] != "ok":
                        for w in ("get_cold", "contains_hit", "contains_miss", "get_hot", "iterate", "batch_get"):
                            figs.add(w, value, name, pop)
                        continue
                res = runner.run("read", name, value=value, path=path, n=n, seed=rep)
                for w in ("get_cold", "contains_hit", "contains_miss", "get_hot", "iterate", "batch_get"):
                    figs.add(w, value, name, res.get(w, res) if res["status"] == "ok" else res)
                if res["status"] == "ok":
                    figs.add_memory("read", value, name, res["maxrss_mb"])
                    if c.persistent:
                        figs.add("open_ms", value, name, {"ms": res["open_ms"]})
                shutil.rmtree(path, ignore_errors=True)


def run_mixed(runner: Runner, figs: Figures, contenders: list[str]) -> None:
    sz = runner.sizes
    values = [v for v in sz.mixed_values if v in VALUE_KINDS]
    for rep in range(sz.reps):
        for value in values:
            for nthreads in sz.mixed_threads:
                workload = f"mixed_threads_{nthreads}"
                for name in contenders:
                    c = CONTENDER_BY_NAME[name]
                    if not c.threads:
                        figs.mark_na(workload, value, name, "not thread-safe (one instance cannot be shared)")
                        continue
                    n = sz.mixed_keys_slow if c.slow else sz.mixed_keys
                    path = fresh_dir("mixed", f"t{nthreads}-{name}-{value}-{rep}")
                    res = runner.run("mixed_threads", name, value=value, path=path, n=n, threads=nthreads,
                                     seed=rep)
                    figs.add(workload, value, name, res["mixed"] if res["status"] == "ok" else res)
                    shutil.rmtree(path, ignore_errors=True)
            for nprocs in sz.mixed_procs:
                workload = f"mixed_procs_{nprocs}"
                for name in contenders:
                    c = CONTENDER_BY_NAME[name]
                    if not c.processes:
                        figs.mark_na(workload, value, name, "in-memory only" if not c.persistent
                                     else "no multi-process support (one writer, no locking)")
                        continue
                    n = sz.mixed_keys_slow if c.slow else sz.mixed_keys
                    path = fresh_dir("mixed", f"p{nprocs}-{name}-{value}-{rep}")
                    pop = runner.run("populate", name, value=value, path=path, n=n)
                    if pop["status"] != "ok":
                        figs.add(workload, value, name, pop)
                        continue
                    res = runner.run_procs(name, nprocs, value=value, path=path, n=n, seed=rep)
                    figs.add(workload, value, name, res["mixed"] if res["status"] == "ok" else res)
                    shutil.rmtree(path, ignore_errors=True)
            for name in contenders:
                c = CONTENDER_BY_NAME[name]
                if not c.processes:
                    figs.mark_na("hot_with_writer", value, name, "in-memory only" if not c.persistent
                                 else "no multi-process support (one writer, no locking)")
                    continue
                n = sz.mixed_keys_slow if c.slow else sz.shared_keys
                path = fresh_dir("mixed", f"hw-{name}-{value}-{rep}")
                res = runner.run("populate", name, value=value, path=path, n=n)
                if res["status"] == "ok":
                    res = runner.run("hot_with_writer", name, value=value, path=path, n=n)
                figs.add("hot_with_writer", value, name, res["hot_with_writer"] if res["status"] == "ok" else res)
                shutil.rmtree(path, ignore_errors=True)


def run_big(runner: Runner, figs: Figures, contenders: list[str], with_maintenance: bool) -> dict[str, Any]:
    """A store of n_big entries (100-byte str values): open time, first get, cold gets; maintenance p99."""
    sz = runner.sizes
    big: dict[str, Any] = {"n": sz.n_big, "value": "str100", "populate": {}, "open": {}}
    stores: dict[str, str] = {}
    for name in contenders:
        c = CONTENDER_BY_NAME[name]
        if not c.persistent:
            big["open"][name] = {"status": "n/a", "reason": "in-memory only"}
            continue
        if c.slow:
            big["open"][name] = {"status": "n/a", "reason": "populating 1M entries through its API "
                                 "(>= 2 fsynced LMDB commits per key) would take far too long"}
            continue
        family = c.big_family or name
        if family not in stores:
            path = fresh_dir("big", family)
            res = runner.run("populate", name, value="str100", path=path, n=sz.n_big, prefix="g",
                             chunk=sz.big_batch, bulk=True)
            big["populate"][family] = {"by": name, **res}
            if res["status"] != "ok":
                big["open"][name] = res
                continue
            stores[family] = path
        reps = []
        for rep in range(sz.big_reps):
            reps.append(runner.run("open_big", name, path=stores[family], n=sz.n_big, seed=rep))
        ok = [r for r in reps if r["status"] == "ok"]
        if not ok:
            big["open"][name] = reps[0]
            continue

        def stat(values: list[float]) -> dict[str, float]:
            return {"median": median(values), "min": min(values), "max": max(values), "reps": values}

        big["open"][name] = {
            "status": "ok",
            "open_ms": stat([r["open_ms"] for r in ok]),
            "first_get_ms": stat([r["first_get_ms"] for r in ok]),
            "get_cold": stat([r["get_cold"]["ops_per_s"] for r in ok]),
            "maxrss_mb": stat([r["maxrss_mb"] for r in ok]),
            "close_ms": stat([r["close_ms"] for r in ok]),
        }
        for r in ok:
            figs.add("get_cold_big", "str100", name, r["get_cold"])
    if with_maintenance and "pd" in contenders and "pd" in stores:
        res = runner.run("maint_latency", "pd", path=stores["pd"], n=sz.n_big,
                         options={"background_thread": "disabled"})
        big["maintenance"] = res
    for path in stores.values():
        shutil.rmtree(path, ignore_errors=True)
    return big


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="small sizes, finishes in under 3 minutes")
    parser.add_argument("--reps", type=int, help="repetitions (default 3, quick 2)")
    parser.add_argument("--contenders", help="comma-separated subset of: " + ",".join(c.name for c in CONTENDERS))
    parser.add_argument("--values", help="comma-separated subset of: " + ",".join(VALUE_KINDS))
    parser.add_argument("--skip", default="", help="comma-separated groups to skip: core,mixed,big,maintenance,floors")
    parser.add_argument("--n-big", type=int, help="entries of the large store (default 1,000,000; quick 100,000)")
    parser.add_argument("--no-install", action="store_true", help="fail instead of installing missing packages")
    parser.add_argument("--baseline", metavar="REF",
                        help="also measure this repository at git REF (contender pd_base), for before/after ratios")
    parser.add_argument("--out", default=str(RESULTS_DIR), help="results directory (default benchmarks/results)")
    args = parser.parse_args()

    sizes = Sizes(**sizes_dict(QUICK if args.quick else FULL))
    if args.reps:
        sizes.reps = args.reps
    if args.n_big:
        sizes.n_big = args.n_big
    if args.values:
        sizes.values = [v.strip() for v in args.values.split(",") if v.strip()]
        sizes.mixed_values = [v for v in sizes.mixed_values if v in sizes.values] or sizes.values[:1]
    contenders = [c.name for c in CONTENDERS if c.name != "pd_base"]
    if args.contenders:
        contenders = [c.strip() for c in args.contenders.split(",") if c.strip()]
        unknown = set(contenders) - set(CONTENDER_BY_NAME)
        if unknown:
            parser.error(f"unknown contenders: {sorted(unknown)}")
    skip = {s.strip() for s in args.skip.split(",") if s.strip()}
    if args.baseline and "pd_base" not in contenders:
        contenders.insert(contenders.index("pd") + 1 if "pd" in contenders else 0, "pd_base")
    elif "pd_base" in contenders and not args.baseline:
        parser.error("contender pd_base needs --baseline REF")

    ensure_setup(args.no_install)
    values = [v for v in sizes.values if v != "embedding_np" or numpy_available()]
    skipped_values = sorted(set(sizes.values) - set(values))
    shutil.rmtree(RUN_DIR, ignore_errors=True)
    RUN_DIR.mkdir(parents=True)
    source_hash = snapshot_ours()
    baseline = snapshot_baseline(args.baseline) if args.baseline else None
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)

    started = _dt.datetime.now(_dt.timezone.utc)
    results: dict[str, Any] = {
        "mode": "quick" if args.quick else "full",
        "started_utc": started.isoformat(timespec="seconds"),
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "machine": machine_info(),
        "persistdict_source_sha256": source_hash,
        "sizes": sizes_dict(sizes),
        "values": values,
        "values_skipped": skipped_values,
        "contenders": [{"name": n, "label": CONTENDER_BY_NAME[n].label + (f" @ {baseline}" if n == "pd_base" else "")}
                       for n in contenders],
        "baseline": baseline,
    }
    runner = Runner(sizes)
    figs = Figures()

    def save(partial: bool) -> None:
        results["figures"] = figs.summary()
        results["memory_mb"] = figs.memory_summary()
        results["partial"] = partial
        results["duration_s"] = round(time.monotonic() - T_START, 1)
        results["raw"] = runner.raw
        tmp = out_dir / "results.json.tmp"
        tmp.write_text(json.dumps(results, indent=1, default=str))
        tmp.replace(out_dir / "results.json")

    log(f"mode={results['mode']} contenders={contenders} values={values} reps={sizes.reps}")
    if "core" not in skip:
        run_core(runner, figs, contenders, values)
        save(True)
    if "mixed" not in skip:
        run_mixed(runner, figs, contenders)
        save(True)
    if "big" not in skip:
        results["big"] = run_big(runner, figs, contenders, "maintenance" not in skip)
        save(True)
    save(False)
    shutil.rmtree(RUN_DIR, ignore_errors=True)
    if "floors" not in skip:  # writes floors.json: the floor the get cold target is checked against
        log("floors.py (~1 min)")
        subprocess.run([sys.executable, str(BENCH_DIR / "floors.py"), str(out_dir)], check=True)

    import report

    report.render(out_dir)
    log(f"done in {time.monotonic() - T_START:.0f} s: {out_dir}/results.json, results.md, chart.png")


if __name__ == "__main__":
    main()
