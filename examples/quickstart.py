"""A first look at PersistDict: run with `.venv/bin/python examples/quickstart.py`."""

import tempfile
from pathlib import Path

from PersistDict import PersistDict

path = Path(tempfile.mkdtemp()) / "llm_cache"

with PersistDict(path) as cache:
    cache["prompt: say hi"] = {"text": "Hi!", "tokens": 2}
    cache[("embedding", "all-MiniLM", "hello")] = [0.1, 0.2, 0.3]
    print("stored", len(cache), "entries in", path)

# Another instance (or another process) sees the same data.
with PersistDict(path) as again:
    print(again["prompt: say hi"]["text"])
    print(list(again.keys()))
    print("created at", again.metadata("prompt: say hi").ctime.isoformat())
