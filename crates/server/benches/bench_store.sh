#!/bin/sh
# Writes the load bench's synthetic store (1,000 scopes, 200 models, the default schema and the
# five policies of crates/policy/benches/common) to DIR as files, with request.json (the bench's
# allowed request), so `keyscope serve` and `keyscope decide` processes can be measured on it.
#
#   sh crates/server/benches/bench_store.sh DIR
set -eu
root=$(cd "$(dirname "$0")/../../.." && pwd)
store=$1
mkdir -p "$store"
for f in schema.cedarschema budget.cedar keys.cedar models.cedar network.cedar phi.cedar; do
    cp "$root/policies/$f" "$store/"
done
python3 - "$store" <<'PY'
import sys
store = sys.argv[1]
models = ["prices_as_of = 2025-10-15"]
for p in range(5):
    models.append("[providers.p%d]\nbaa = %s" % (p, "true" if p % 2 == 0 else "false"))
for m in range(180):
    models.append('[[model]]\nid = "model-%d-2025-01-01"\nprovider = "p%d"\nfamily = "model-%d"\n'
                  'input = %d.25\noutput = %d.5\nmax_output_tokens = 16384' % (m, m % 5, m, m % 7, m % 11))
models.append("[aliases]")
for a in range(20):
    models.append('model-%d = "model-%d-2025-01-01"' % (a, a))
open(store + "/models.toml", "w").write("\n".join(models) + "\n")
scopes = ["[model_lists]", "prod = [" + "".join('"model-%d-2025-01-01", ' % m for m in range(40)) + "]",
          'staging = ["@prod", "model-4*", "model-5*", "model-1"]',
          '[[scope]]\nid = "org"\nkind = "org"\nmax_key_age_days = 365\nbudget = { month_usd = 1000000000 }']
for t in range(19):
    scopes.append('[[scope]]\nid = "team-%d"\nkind = "team"\nparent = "org"\n'
                  'budget = { day_usd = 100000000, month_usd = 1000000000 }' % t)
for a in range(980):
    env, allowed = [("production", '["@prod"]'), ("staging", '["@staging"]'), ("development", '["*"]')][a % 3]
    scopes.append('[[scope]]\nid = "app-%d"\nparent = "team-%d"\nenvironment = "%s"\nmodels = %s\n'
                  'networks = ["10.%d.0.0/16", "192.0.2.0/24"]\n'
                  'budget = { day_usd = 10000000, month_usd = 100000000 }' % (a, a % 19, env, allowed, a % 250))
for a in range(980):
    scopes.append('[[key]]\nid = "key-%d"\nscope = "app-%d"\nfingerprint = "sha256:%064x"\n'
                  'created = 2026-11-01T00:00:00Z\nexpires = 2027-11-01T00:00:00Z' % (a, a, a))
open(store + "/scopes.toml", "w").write("\n".join(scopes) + "\n")
open(store + "/request.json", "w").write(
    '{"subject": {"type": "Key", "id": "key-501"}, "action": {"name": "invoke"},'
    ' "resource": {"type": "Model", "id": "model-7-2025-01-01"},'
    ' "context": {"source_ip": "10.1.2.3", "input_tokens": 1200, "max_output_tokens": 800}}')
PY
