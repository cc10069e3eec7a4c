"""Every Python example in README.md runs as written (with /path/to/... mapped to a temp dir)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BLOCKS = re.findall(r"```python\n(.*?)```", (ROOT / "README.md").read_text(), flags=re.S)


def test_readme_has_examples() -> None:
    """The README carries runnable examples."""
    assert len(BLOCKS) >= 8


@pytest.mark.parametrize("index", range(len(BLOCKS)))
def test_readme_example_runs(index: int, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    """README example number ``index`` runs to completion in a fresh interpreter (a Redis example
    against the test session's server, named by PERSISTDICT_REDIS_URL)."""
    code = BLOCKS[index].replace("/path/to/", f"{tmp_path}/")
    script = tmp_path / "example.py"
    script.write_text(f"import sys\nsys.path.insert(0, {str(ROOT)!r})\n" + code)
    env = dict(os.environ)
    if "PERSISTDICT_REDIS_URL" in code:
        env["PERSISTDICT_REDIS_URL"] = request.getfixturevalue("redis_url")
    result = subprocess.run([sys.executable, str(script)], cwd=tmp_path, capture_output=True, text=True,
                            timeout=300, env=env)
    assert result.returncode == 0, f"example {index} failed:\n{code}\n{result.stderr}"


def test_quickstart_script_runs() -> None:
    """examples/quickstart.py, the newcomer's first command, runs."""
    result = subprocess.run([sys.executable, str(ROOT / "examples" / "quickstart.py")], capture_output=True,
                            text=True, timeout=120, env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"})
    assert result.returncode == 0, result.stderr
    assert "Hi!" in result.stdout


def test_ci_runs_the_readme_test_command() -> None:
    """.ci/run runs the README's "Run the tests" command verbatim."""
    command = re.search(r"\*\*Run the tests\*\*.*?\n\n    (.+)\n", (ROOT / "README.md").read_text())
    assert command is not None
    ci_commands = [line for line in (ROOT / ".ci" / "run").read_text().splitlines() if line and line[0] != "#"]
    assert command.group(1) in ci_commands
