#!/usr/bin/env bash
# Validate the Actions (action.yml, docker/action.yml) and the workflows (.github/workflows/,
# examples/) against GitHub's schemas (SchemaStore's github-action and github-workflow) with
# action-validator, a real validator independent of our tests: a file named action.yml is
# checked as an action, any other as a workflow. Installs it into ~/.cargo/bin when missing (a
# few minutes of building, then cached).
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
version="${ACTION_VALIDATOR_VERSION:-0.9.0}"

if ! command -v action-validator >/dev/null 2>&1 && [ ! -x "$HOME/.cargo/bin/action-validator" ]; then
    echo "action-validate: installing action-validator $version (takes a few minutes)" >&2
    cargo install --locked --quiet action-validator --version "$version"
fi
validator="$(command -v action-validator || echo "$HOME/.cargo/bin/action-validator")"

files=("$root/action.yml" "$root/docker/action.yml")
shopt -s nullglob
files+=("$root"/.github/workflows/*.yml "$root"/examples/*.yml)
for file in "${files[@]}"; do
    if ! "$validator" --verbose "$file"; then
        echo "action-validate: $file does not validate" >&2
        exit 1
    fi
done
echo "action-validate: ${#files[@]} files valid (action-validator $("$validator" --version | awk '{print $2}'))"
