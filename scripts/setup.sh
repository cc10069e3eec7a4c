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
# PersistDict/_speedups.c (compiled record parsers, ~10% faster cold reads) needs a C compiler
# and Python's headers. Without them the install still works, on the pure-Python parsers.
compiler="$(.venv/bin/python -c 'import sysconfig; print((sysconfig.get_config_var("CC") or "cc").split()[0])')"
if ! command -v "$compiler" >/dev/null 2>&1 || ! .venv/bin/python -c \
        'import os, sysconfig; assert os.path.exists(os.path.join(sysconfig.get_paths()["include"], "Python.h"))' 2>/dev/null; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        headers=""
        case "$(.venv/bin/python -c 'import sys; print(sys.base_prefix)')" in
            # Debian's own Pythons keep their headers in pythonX.Y-dev
            /usr) headers="$(.venv/bin/python -c 'import sys; print("python%d.%d-dev" % sys.version_info[:2])')" ;;
        esac
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
            gcc libc6-dev $headers >/dev/null || echo "setup: could not install a C compiler" >&2
    else
        echo "setup: no C compiler or Python headers: installing without the compiled parsers" >&2
    fi
fi
.venv/bin/python -m pip install --quiet --upgrade pip
.venv/bin/python -m pip install --quiet -e '.[test]'
.venv/bin/python -c 'from PersistDict import _records; print("setup: compiled record parsers:", "on" if _records.SPEEDUPS else "off (pure Python)")'
