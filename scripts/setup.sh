#!/usr/bin/env bash
# Create .venv and install PersistDict (editable) with its test dependencies.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"
if ! "$PYTHON" -m venv .venv 2>/dev/null; then
    # Debian's python3 ships venv separately; fall back to virtualenv from PyPI.
    rm -rf .venv
    "$PYTHON" -m pip install --quiet --user virtualenv 2>/dev/null || "$PYTHON" -m pip install --quiet virtualenv
    "$PYTHON" -m virtualenv --quiet .venv
fi
.venv/bin/python -m pip install --quiet --upgrade pip
.venv/bin/python -m pip install --quiet -e '.[test]'
