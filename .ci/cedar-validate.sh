#!/usr/bin/env bash
# Validate the default policy store with the reference `cedar` CLI, so our files stay plain Cedar
# that any Cedar tool can read. Installs `cedar-policy-cli` into ~/.cargo/bin when missing.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
store="${1:-$root/policies}"
cedar_version="${CEDAR_CLI_VERSION:-4.14.1}"

if ! command -v cedar >/dev/null 2>&1 && [ ! -x "$HOME/.cargo/bin/cedar" ]; then
    echo "cedar-validate: installing cedar-policy-cli $cedar_version (takes a few minutes)" >&2
    cargo install --locked --quiet cedar-policy-cli --version "$cedar_version"
fi
cedar="$(command -v cedar || echo "$HOME/.cargo/bin/cedar")"

shopt -s nullglob
policies=("$store"/*.cedar)
if [ "${#policies[@]}" -eq 0 ]; then
    echo "cedar-validate: no .cedar files in $store" >&2
    exit 1
fi

all="$(mktemp)"
trap 'rm -f "$all"' EXIT
for policy in "${policies[@]}"; do
    if ! out="$("$cedar" validate --schema "$store/schema.cedarschema" --policies "$policy" 2>&1)"; then
        printf '%s\n' "$out" >&2
        echo "cedar-validate: $policy does not validate" >&2
        exit 1
    fi
    cat "$policy" >>"$all"
    printf '\n' >>"$all"
done
"$cedar" validate --schema "$store/schema.cedarschema" --policies "$all"
echo "cedar-validate: ${#policies[@]} policy files valid against $store/schema.cedarschema"
