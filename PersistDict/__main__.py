"""``python -m PersistDict``: the ``persistdict`` command line."""

from .cli import console_script

console_script()
