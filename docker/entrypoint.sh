#!/usr/bin/env bash
# Entrypoint of the container Action (docker/action.yml). GitHub passes inputs as INPUT_<NAME>
# with hyphens kept (INPUT_SARIF-FILE), which bash cannot name, so they are mapped here; and it
# mounts the workspace, owned by the runner's user, where git refuses a repository owned by
# someone else unless it is marked safe.
set -euo pipefail
INPUT_SARIF_FILE="${INPUT_SARIF_FILE:-$(printenv 'INPUT_SARIF-FILE' || true)}"
INPUT_FAIL_ON_FINDINGS="${INPUT_FAIL_ON_FINDINGS:-$(printenv 'INPUT_FAIL-ON-FINDINGS' || true)}"
export INPUT_SARIF_FILE INPUT_FAIL_ON_FINDINGS
git config --global --add safe.directory "${GITHUB_WORKSPACE:-/github/workspace}"
exec bash "${KEYSCOPE_ACTION_SCRIPT:-/opt/keyscope/scripts/github-action.sh}"
