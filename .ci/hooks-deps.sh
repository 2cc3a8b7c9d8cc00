#!/usr/bin/env bash
# Make the real `pre-commit` tool (PyPI) available for the hook tests, in a venv of its own so
# nothing touches the system Python and every run uses the same pinned version. Prints the path
# of the `pre-commit` executable.
set -euo pipefail

version="${PRE_COMMIT_VERSION:-4.7.0}"
venv="${KEYSCOPE_PRE_COMMIT_VENV:-$HOME/.cache/keyscope/pre-commit-venv}"

install() {
    if [ "$("$venv/bin/pre-commit" --version 2>/dev/null)" != "pre-commit $version" ]; then
        echo "hooks-deps: installing pre-commit $version into $venv" >&2
        rm -rf "$venv"
        python3 -m venv "$venv" >&2
        "$venv/bin/python" -m pip install --quiet --disable-pip-version-check "pre-commit==$version" >&2
    fi
}
mkdir -p "$(dirname "$venv")"
if command -v flock >/dev/null 2>&1; then
    # Test binaries built in different target dirs may ask at once.
    exec 9>"$venv.lock"
    flock 9
fi
install
"$venv/bin/pre-commit" --version >&2
echo "$venv/bin/pre-commit"
