"""The distributions as users get them: the sdist carries what its tests need, the wheel every
subpackage, and a wheel installed in a fresh environment outside the repository imports and runs."""

from __future__ import annotations

import shutil
import subprocess
import sys
import sysconfig
import tarfile
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SUBPACKAGES = ["_api", "_codec", "_frontcache", "engines", "engines/lmdb", "integrations", "cli"]
TEST_HELPERS = ["tests/conftest.py", "tests/_workers.py", "tests/_concurrency.py", "tests/_operations.py",
                "tests/conformance/conftest.py", "tests/conformance/_engines.py"]
_BUILD = "import sys; from setuptools import build_meta as b; print(getattr(b, sys.argv[1])(sys.argv[2]))"

pytestmark = pytest.mark.slow


def build(kind: str, source: Path, out: Path) -> Path:
    """Build with setuptools' PEP 517 hook (what pip and python -m build call), without isolation."""
    result = subprocess.run([sys.executable, "-c", _BUILD, kind, str(out)], cwd=source, capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    return out / result.stdout.strip().splitlines()[-1]


@pytest.fixture(scope="module")
def dists(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(sdist, wheel), the wheel built from the unpacked sdist as pip would."""
    work = tmp_path_factory.mktemp("dists")
    source = work / "source"
    shutil.copytree(ROOT, source, ignore=shutil.ignore_patterns(
        ".venv*", ".git", "build", "dist", "*.egg-info", "__pycache__", ".pytest_cache", ".hypothesis", "*.so"))
    sdist = build("build_sdist", source, work / "dist")
    with tarfile.open(sdist) as archive:
        archive.extractall(work / "unpacked", filter="data")
    unpacked = next((work / "unpacked").iterdir())
    return sdist, build("build_wheel", unpacked, work / "wheel")


def test_the_sdist_carries_its_tests(dists: tuple[Path, Path]) -> None:
    """conftest.py, the test helpers, the test data and the C source are in the sdist."""
    with tarfile.open(dists[0]) as archive:
        names = {name.split("/", 1)[1] for name in archive.getnames() if "/" in name}
    missing = [name for name in TEST_HELPERS + ["tests/data/store-945e056.tar.gz", "README.md",
                                                 "PersistDict/_speedups.c", "tests/test_cli.py"]
               if name not in names]
    assert missing == []
    assert not any("__pycache__" in name for name in names)


def test_the_wheel_holds_every_subpackage(dists: tuple[Path, Path]) -> None:
    """Each subpackage's modules are in the wheel (a bare packages = ["PersistDict"] left them out), tests are not."""
    with zipfile.ZipFile(dists[1]) as archive:
        names = set(archive.namelist())
    for sub in SUBPACKAGES:
        assert f"PersistDict/{sub}/__init__.py" in names, sub
    assert {"PersistDict/py.typed", "PersistDict/_api/operations.py", "PersistDict/engines/lmdb/copies.py",
            "PersistDict/cli/app.py", "PersistDict/__main__.py"} <= names
    assert not any(name.startswith("tests/") for name in names)
    entry_points = next(name for name in names if name.endswith("entry_points.txt"))
    with zipfile.ZipFile(dists[1]) as archive:
        assert "persistdict = PersistDict.cli:console_script" in archive.read(entry_points).decode()


def test_an_installed_wheel_imports_and_runs(dists: tuple[Path, Path], tmp_path: Path) -> None:
    """In a fresh venv, away from the repository: every subpackage imports from the wheel and the console script works."""
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", venv], check=True, timeout=120)
    python = venv / "bin" / "python"
    installed = subprocess.run([sys.executable, "-m", "pip", "--python", python, "install", "--quiet", "--no-deps",
                                "--no-index", dists[1]], capture_output=True, text=True, timeout=300)
    assert installed.returncode == 0, installed.stderr
    # the dependencies (lmdb, click...) from this environment, not the package: its editable path is not processed
    site = subprocess.run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          capture_output=True, text=True, check=True).stdout.strip()
    Path(site, "dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    code = """
import PersistDict, importlib
for name in ("_api.operations", "_codec.keys", "_frontcache.cache", "engines.lmdb.copies", "cli.app"):
    importlib.import_module("PersistDict." + name)
print(PersistDict.__file__)
d = PersistDict.PersistDict("store", background_thread="disabled")
d["k"] = [1, 2]
d.close()
"""
    ran = subprocess.run([python, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert ran.returncode == 0, ran.stderr
    assert ran.stdout.strip().startswith(str(venv)), ran.stdout
    got = subprocess.run([venv / "bin" / "persistdict", "get", "store", "k"], cwd=tmp_path, capture_output=True,
                         text=True, timeout=120)
    assert (got.returncode, got.stdout) == (0, "[1, 2]\n"), got.stderr
