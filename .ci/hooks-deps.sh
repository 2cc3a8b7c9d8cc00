#!/usr/bin/env bash
# Make the real `pre-commit` tool (PyPI) available for the hook tests, in a venv of its own so
# nothing touches the system Python. Prints the path of the `pre-commit` executable.
# Uses one already on PATH unless KEYSCOPE_PRE_COMMIT_VENV is set explicitly.
set -euo pipefail

version="${PRE_COMMIT_VERSION:-4.7.0}"
venv="${KEYSCOPE_PRE_COMMIT_VENV:-$HOME/.cache/keyscope/pre-commit-venv}"

if [ -z "${KEYSCOPE_PRE_COMMIT_VENV:-}" ] && command -v pre-commit >/dev/null 2>&1; then
    command -v pre-commit
    exit 0
fi
if [ ! -x "$venv/bin/pre-commit" ]; then
    echo "hooks-deps: installing pre-commit $version into $venv" >&2
    python3 -m venv "$venv" >&2
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check "pre-commit==$version" >&2
fi
"$venv/bin/pre-commit" --version >&2
echo "$venv/bin/pre-commit"
