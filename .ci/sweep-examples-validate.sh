#!/usr/bin/env bash
# Validate the fleet-sweep examples against the real schemas, with validators independent of
# our tests: the Kubernetes Jobs (examples/kubernetes/) with kubernetes-validate (Kubernetes'
# own OpenAPI schemas, strict: no unknown fields), the GitHub workflows (examples/*.yml) with
# check-jsonschema's vendored SchemaStore github-workflows schema. .ci/action-validate.sh
# checks the workflows too, with action-validator. Installs both into a virtualenv when missing.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="${SWEEP_VALIDATE_VENV:-$HOME/.cache/keyscope-sweep-validate}"
if [ ! -x "$venv/bin/kubernetes-validate" ] || [ ! -x "$venv/bin/check-jsonschema" ]; then
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet kubernetes-validate check-jsonschema
fi
"$venv/bin/kubernetes-validate" --strict "$root"/examples/kubernetes/*.yaml
"$venv/bin/check-jsonschema" --builtin-schema vendor.github-workflows "$root"/examples/*.yml
