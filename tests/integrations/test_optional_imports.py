"""The frameworks are optional: importing PersistDict never imports LangChain or LlamaIndex."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
FRAMEWORKS = ("langchain_core", "langchain_classic", "llama_index")


def _imported_after(statement: str) -> list[str]:
    code = (f"import sys, json\nsys.path.insert(0, {str(ROOT)!r})\n{statement}\n"
            f"print(json.dumps(sorted({{m.split('.')[0] for m in sys.modules}} & set({FRAMEWORKS!r}))))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)  # type: ignore[no-any-return]


def test_import_persistdict_imports_no_framework() -> None:
    """import PersistDict (and its integrations package, and a store's use) loads neither framework."""
    assert _imported_after("import PersistDict\nimport PersistDict.integrations\n"
                           "d = PersistDict.PersistDict(':memory:'); d['a'] = 1; d.keys(prefix='a')") == []


def test_each_adapter_imports_only_its_framework() -> None:
    """The LangChain adapter does not import LlamaIndex, nor the LlamaIndex adapter LangChain."""
    assert _imported_after("import PersistDict.integrations.langchain") == ["langchain_core"]
    assert _imported_after("import PersistDict.integrations.llama_index") == ["llama_index"]
