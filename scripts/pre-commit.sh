#!/usr/bin/env bash
# The `keyscope` and `keyscope-all-files` hooks of .pre-commit-hooks.yaml: `keyscope scan ARGS`
# with keyscope built from this checkout (the hook's rev) by `cargo install --locked`, once, into
# target/pre-commit-hook. pre-commit's own `language: rust` runs `cargo install` without
# `--locked`, which ignores Cargo.lock and builds with whatever dependency versions are newest
# that day; this script is what pins them.
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
keyscope="$repo/target/pre-commit-hook/bin/keyscope"
if [ ! -x "$keyscope" ]; then
    echo "keyscope: building keyscope from $repo with cargo install --locked (first run only)" >&2
    cargo install --locked --path "$repo" --root "$repo/target/pre-commit-hook" >&2
fi
exec "$keyscope" scan "$@"
