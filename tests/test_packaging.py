"""The distribution ships every subpackage: a wheel holds only the packages pyproject.toml lists."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_every_subpackage_is_listed_in_pyproject() -> None:
    """Each folder of PersistDict/ with an __init__.py is in [tool.setuptools] packages, and nothing else is."""
    text = (ROOT / "pyproject.toml").read_text()
    listed = re.search(r"^packages = \[(.*?)\]", text, flags=re.S | re.M)
    assert listed is not None
    packages = set(re.findall(r'"([\w.]+)"', listed.group(1)))
    on_disk = {".".join(init.parent.relative_to(ROOT).parts) for init in (ROOT / "PersistDict").rglob("__init__.py")}
    assert packages == on_disk
