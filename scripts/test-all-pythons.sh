#!/usr/bin/env bash
# Run the test suite on every Python version the package claims, one version after the other,
# and fail if any version fails or has no interpreter. Extra arguments go to pytest.
#
# The versions are pyproject.toml's "Programming Language :: Python :: 3.X" classifiers (the one
# list; its lowest must be requires-python's bound). Each version runs in its own venv, made by
# scripts/setup.sh: .venv for the version .venv runs (the main version), .venv-3.X
# for the others. The main version runs everything; the others run everything but the tests
# marked "reliability" (the long fault-injection runs, which do not depend on the Python version),
# so that CI stays well within its time. Extra arguments (-k, a path) apply to both runs.
set -euo pipefail
cd "$(dirname "$0")/.."

versions="$(sed -n 's/^ *"Programming Language :: Python :: \(3\.[0-9][0-9]*\)",*$/\1/p' pyproject.toml | sort -t. -k2,2n)"
floor="$(sed -n 's/^requires-python = ">=\(3\.[0-9][0-9]*\)"$/\1/p' pyproject.toml)"
if [ -z "$versions" ] || [ "$(head -n1 <<<"$versions")" != "$floor" ]; then
    echo "test-all-pythons: pyproject.toml's version classifiers ($(echo $versions)) must start at" \
         "requires-python's bound (>=${floor:-?})" >&2
    exit 2
fi

version_of() {  # "3.X" of an interpreter, or nothing
    "$1" -c 'import sys; print("%d.%d" % sys.version_info[:2])' 2>/dev/null || true
}

find_python() {  # an interpreter for version $1: pyenv's newest 3.X, else python3.X on PATH
    local candidate
    if command -v pyenv >/dev/null 2>&1 && candidate="$(pyenv latest "$1" 2>/dev/null)" \
            && candidate="$(pyenv root)/versions/$candidate/bin/python$1" && [ -x "$candidate" ]; then
        echo "$candidate"
        return
    fi
    candidate="$(command -v "python$1" 2>/dev/null)" || return 1
    [ "$(version_of "$candidate")" = "$1" ] && echo "$candidate"
}

./scripts/setup.sh
main="$(version_of .venv/bin/python)"
if ! grep -qx "$main" <<<"$versions"; then
    echo "test-all-pythons: .venv runs Python ${main:-?}, which pyproject.toml does not claim" \
         "($(echo $versions)); recreate it with PYTHON=python3.X ./scripts/setup.sh" >&2
    exit 2
fi

summary=()
failed=0
for version in $versions; do
    start=$SECONDS
    if [ "$version" = "$main" ]; then
        venv=.venv
        reliability=1
        scope="all tests"
    else
        venv=".venv-$version"
        reliability=0
        scope="all but reliability"
    fi
    # setup.sh runs every time (a few seconds when nothing changed): a kept venv would otherwise
    # test a compiled _speedups built from an older _speedups.c
    if [ "$venv" != .venv ] || [ "$(version_of "$venv/bin/python")" != "$version" ]; then
        if ! python="$(find_python "$version")"; then
            echo "test-all-pythons: no Python $version interpreter (pyenv install $version, or put python$version on PATH)" >&2
            summary+=("Python $version  MISSING  no interpreter")
            failed=1
            continue
        fi
        echo "test-all-pythons: setting up $venv with $python"
        [ "$(version_of "$venv/bin/python")" = "$version" ] || rm -rf "$venv"
        if ! PYTHON="$python" VENV="$venv" ./scripts/setup.sh; then
            summary+=("Python $version  FAILED   setup of $venv")
            failed=1
            continue
        fi
    fi
    echo "test-all-pythons: Python $version ($venv, $scope)"
    # Two pytest-xdist workers (the machines CI runs on have 2 cores; many tests wait on
    # processes, sleeps and fsyncs): about 1.6x faster. The reliability runs stay serial: they
    # kill and time their own worker processes.
    status="passed "
    if ! "$venv/bin/python" -m pytest -q -n 2 -m "not reliability" "$@"; then
        status="FAILED "
        failed=1
    fi
    if [ "$reliability" = 1 ]; then
        rc=0
        "$venv/bin/python" -m pytest -q -m reliability "$@" || rc=$?
        if [ "$rc" != 0 ] && [ "$rc" != 5 ]; then  # 5: arguments that selected none of them
            status="FAILED "
            failed=1
        fi
    fi
    summary+=("Python $version  $status  $((SECONDS - start)) s  ($venv, $scope)")
done

echo
echo "test-all-pythons: summary"
printf '  %s\n' "${summary[@]}"
exit "$failed"
