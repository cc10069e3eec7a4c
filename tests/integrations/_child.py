"""Run a snippet in a fresh interpreter (another process, nothing inherited) and read what it prints."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]


def run_child(code: str, timeout: float = 120) -> Any:
    """Run ``code`` (which can import integrations._fakes) in a new interpreter; the JSON its last line prints."""
    prelude = f"import sys\nsys.path[:0] = [{str(ROOT)!r}, {str(HERE.parent)!r}]\n"
    result = subprocess.run([sys.executable, "-c", prelude + code], capture_output=True, text=True,
                            timeout=timeout)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


def start_child(code: str) -> subprocess.Popen[str]:
    """Start ``code`` in a new interpreter without waiting (finish with :func:`finish_child`)."""
    prelude = f"import sys\nsys.path[:0] = [{str(ROOT)!r}, {str(HERE.parent)!r}]\n"
    return subprocess.Popen([sys.executable, "-c", prelude + code], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def finish_child(process: subprocess.Popen[str], timeout: float = 120) -> Any:
    out, err = process.communicate(timeout=timeout)
    assert process.returncode == 0, err
    return json.loads(out.strip().splitlines()[-1])
