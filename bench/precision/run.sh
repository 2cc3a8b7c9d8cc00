#!/usr/bin/env bash
# Precision corpus: downloads the published sources of the packages in packages.txt from npm
# and PyPI, unpacks each into its own directory and scans them all with keyscope. Every finding
# is a false positive (nobody here wrote that code, and SDKs ship no keys), so the script exits 1
# when there is any. Needs network access to the registries; CI does not run it.
#
#   bench/precision/run.sh [-k KEYSCOPE] [-d CACHE_DIR] [--offline]
#
# Downloads are cached in CACHE_DIR (default bench/out/precision, ignored by git): a second run
# only scans. The report is CACHE_DIR/report.json; a count per rule is printed.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
keyscope=${KEYSCOPE:-$root/target/release/keyscope}
cache=$root/bench/out/precision
offline=0
while [ $# -gt 0 ]; do
    case $1 in
        -k) keyscope=$2; shift 2 ;;
        -d) cache=$2; shift 2 ;;
        --offline) offline=1; shift ;;
        *) echo "usage: $0 [-k KEYSCOPE] [-d CACHE_DIR] [--offline]" >&2; exit 2 ;;
    esac
done
[ -x "$keyscope" ] || { echo "no keyscope binary at $keyscope (cargo build --release)" >&2; exit 2; }
mkdir -p "$cache/src" "$cache/dl"
keyscope=$(realpath "$keyscope")
cache=$(realpath "$cache")

# One package into $cache/src/<registry>/<name>; a package already there is kept.
fetch() {
    local registry=$1 name=$2 dest="$cache/src/$1/${2//\//__}" tmp
    [ -d "$dest" ] && return 0
    [ "$offline" = 1 ] && { echo "missing (offline): $registry $name" >&2; return 1; }
    tmp=$(mktemp -d "$cache/dl/XXXXXX")
    case $registry in
        npm) (cd "$tmp" && npm pack --silent "$name" >/dev/null) ;;
        pypi) pip download --quiet --no-deps --disable-pip-version-check -d "$tmp" "$name" ;;
        *) echo "unknown registry $registry" >&2; return 1 ;;
    esac
    mkdir -p "$dest"
    for archive in "$tmp"/*; do
        case $archive in
            *.whl|*.zip) python3 -c 'import sys, zipfile; zipfile.ZipFile(sys.argv[1]).extractall(sys.argv[2])' "$archive" "$dest" ;;
            *.tgz|*.tar.gz) tar -xzf "$archive" -C "$dest" ;;
            *) echo "cannot unpack $archive" >&2; return 1 ;;
        esac
    done
    rm -rf "$tmp"
}

failed=0
while read -r registry name; do
    case $registry in ''|'#'*) continue ;; esac
    fetch "$registry" "$name" || { echo "failed: $registry $name" >&2; failed=$((failed + 1)); }
done < "$here/packages.txt"

packages=$(find "$cache/src" -mindepth 2 -maxdepth 2 -type d | wc -l)
files=$(find "$cache/src" -type f | wc -l)
bytes=$(du -sb "$cache/src" | cut -f1)
echo "corpus: $packages packages, $files files, $((bytes / 1048576)) MiB ($failed failed to download)"

status=0
# Scanned from inside, as a user scans a project: paths are relative to the corpus root.
(cd "$cache/src" && "$keyscope" scan --isolated --no-ignore --format json -o "$cache/report.json" .) || status=$?
if [ "$status" -ge 2 ]; then
    echo "keyscope failed (exit $status)" >&2
    exit 2
fi
python3 - "$cache/report.json" "./" <<'PY'
import collections, json, sys
report = json.load(open(sys.argv[1]))
findings = report.get("findings", [])
by_rule = collections.Counter(f["rule_id"] for f in findings)
print(f"findings: {len(findings)}")
for rule, n in by_rule.most_common():
    print(f"  {n:5d}  {rule}")
for f in findings[:200]:
    path = str(f.get("path", "")).replace(sys.argv[2], "")
    print(f"  {f['rule_id']}  {path}:{f.get('line')}  {f.get('snippet', '')[:160]}")
PY
[ "$status" -eq 0 ]
