"""PersistDict is generic: mypy --strict passes the README's examples and catches misuse, through
the installed package (an editable install included); PersistDict[K, V](path) works at runtime."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from PersistDict import PersistDict

ROOT = Path(__file__).resolve().parents[1]
README_BLOCKS = re.findall(r"```python\n(.*?)```", (ROOT / "README.md").read_text(), flags=re.S)
CASES = ROOT / "tests" / "typing_cases.py"
# The README imports dill, which ships no type information: mypy must not hold that against us.
MYPY_CONFIG = "[mypy]\nstrict = True\n\n[mypy-dill.*]\nignore_missing_imports = True\n"
ERROR = re.compile(r"^(?P<file>[\w.]+\.py):(?P<line>\d+): error: .*\[(?P<code>[\w-]+)\]$")


def run_mypy(directory: Path) -> list[tuple[str, int, str]]:
    """mypy --strict on every file of ``directory``, run there, so PersistDict is found only as
    installed (this checkout is not on mypy's path); its errors as (file, line, code)."""
    (directory / "mypy.ini").write_text(MYPY_CONFIG)
    files = sorted(path.name for path in directory.glob("*.py"))
    result = subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--config-file", "mypy.ini", "--cache-dir", ".mypy_cache",
         "--no-error-summary", *files],
        cwd=directory, capture_output=True, text=True, timeout=300,
    )
    assert result.returncode in (0, 1), result.stdout + result.stderr  # 2: mypy itself failed
    errors = []
    for line in result.stdout.splitlines():
        match = ERROR.match(line)
        if match:
            errors.append((match["file"], int(match["line"]), match["code"]))
        else:
            assert ": note: " in line, line  # every error line has its code, so none is missed
    return errors


def test_readme_examples_and_typed_uses_pass_mypy_strict(tmp_path: Path) -> None:
    """mypy --strict finds nothing in the README's examples, and in tests/typing_cases.py exactly
    the errors its lines mark (a str read from a PersistDict[str, int], a wrong key type...)."""
    assert len(README_BLOCKS) >= 8
    for index, block in enumerate(README_BLOCKS):
        (tmp_path / f"readme_example_{index:02d}.py").write_text(block)
    (tmp_path / CASES.name).write_text(CASES.read_text())
    expected = {(CASES.name, number, match.group(1))
                for number, line in enumerate(CASES.read_text().splitlines(), start=1)
                if (match := re.search(r"# E: ([\w-]+)$", line))}
    assert len(expected) >= 10
    assert sorted(run_mypy(tmp_path)) == sorted(expected)


def test_subscripted_class_opens_a_store(db_path: Path) -> None:
    """PersistDict[str, int](path) opens a plain PersistDict at runtime."""
    with PersistDict[str, int](db_path, background_thread="disabled") as counts:
        counts["k"] = 1
        assert type(counts) is PersistDict and counts["k"] == 1
    with PersistDict(db_path, background_thread="disabled") as again:
        assert again["k"] == 1
