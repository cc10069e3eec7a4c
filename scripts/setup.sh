#!/usr/bin/env bash
# Create .venv and install PersistDict (editable) with its test dependencies.
# PYTHON=python3.12 VENV=.venv-3.12 ./scripts/setup.sh: the same with another interpreter.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"
VENV="${VENV:-.venv}"
if ! "$PYTHON" -m venv "$VENV" 2>/dev/null; then
    # Debian's python3 ships venv separately; fall back to virtualenv from PyPI.
    rm -rf "$VENV"
    "$PYTHON" -m pip install --quiet --user virtualenv 2>/dev/null || "$PYTHON" -m pip install --quiet virtualenv
    "$PYTHON" -m virtualenv --quiet "$VENV"
fi
# PersistDict/_speedups.c (compiled record parsers, ~10% faster cold reads) needs a C compiler
# and Python's headers. Without them the install still works, on the pure-Python parsers.
compiler="$("$VENV"/bin/python -c 'import sysconfig; print((sysconfig.get_config_var("CC") or "cc").split()[0])')"
if ! command -v "$compiler" >/dev/null 2>&1 || ! "$VENV"/bin/python -c \
        'import os, sysconfig; assert os.path.exists(os.path.join(sysconfig.get_paths()["include"], "Python.h"))' 2>/dev/null; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        headers=""
        case "$("$VENV"/bin/python -c 'import sys; print(sys.base_prefix)')" in
            # Debian's own Pythons keep their headers in pythonX.Y-dev
            /usr) headers="$("$VENV"/bin/python -c 'import sys; print("python%d.%d-dev" % sys.version_info[:2])')" ;;
        esac
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
            gcc libc6-dev $headers >/dev/null || echo "setup: could not install a C compiler" >&2
    else
        echo "setup: no C compiler or Python headers: installing without the compiled parsers" >&2
    fi
fi
# The Redis engine's tests start their own redis-server (Debian's package); everything else runs without it.
if ! command -v redis-server >/dev/null 2>&1; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        { DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends redis-server >/dev/null 2>&1 ||
          { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
                redis-server >/dev/null; }; } || echo "setup: could not install redis-server" >&2
        # the tests run their own servers: stop the system one if the package started it
        service redis-server stop >/dev/null 2>&1 || true
    else
        echo "setup: no redis-server: the Redis engine's tests will fail (apt-get install redis-server)" >&2
    fi
fi
"$VENV"/bin/python -m pip install --quiet --upgrade pip
"$VENV"/bin/python -m pip install --quiet -e '.[test]'
"$VENV"/bin/python -c 'from PersistDict._codec import record as _records; print("setup: compiled record parsers:", "on" if _records.SPEEDUPS else "off (pure Python)")'
