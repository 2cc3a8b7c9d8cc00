#!/usr/bin/env bash
# Peak memory (GNU time's maximum resident set size) of keyscope and every installed peer, one
# run each, on the docs tree ($(rustc --print sysroot)/share/doc/rust/html) and on the history
# corpus (../shared/bench/make-history-corpus.py). A tool that runs past the time limit is
# stopped and reported as such, with the memory it had reached.
#
#   bench/scan-rss.sh [-k KEYSCOPE] [-t SECONDS] [-o OUT] [docs|history|all]
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
peers=${PEERS_PREFIX:-/opt/peers}
keyscope=$root/target/release/keyscope
limit=900
out=$root/bench/out/scan-rss-$(date -u +%Y%m%dT%H%M%S)
history=${HISTORY_REPO:-$root/../bench-data/history/repo}
while [ $# -gt 0 ]; do
    case $1 in
        -k) keyscope=$(realpath "$2"); shift 2 ;;
        -t) limit=$2; shift 2 ;;
        -o) out=$2; shift 2 ;;
        docs|history|all) break ;;
        *) echo "usage: $0 [-k KEYSCOPE] [-t SECONDS] [-o OUT] [docs|history|all]" >&2; exit 2 ;;
    esac
done
scenario=${1:-all}
[ -x /usr/bin/time ] || { echo "needs GNU time: apt-get install time" >&2; exit 2; }
mkdir -p "$out"
echo "| corpus | tool | peak RSS | wall | exit |" > "$out/rss.md"
echo "|---|---|---:|---:|---|" >> "$out/rss.md"

# measure CORPUS TOOL DIR COMMAND...: one run in DIR under GNU time and the time limit.
measure() {
    local corpus=$1 tool=$2 dir=$3; shift 3
    local log=$out/$corpus.$tool.time rc=0
    # time outside timeout: a stopped tool's peak still reaches time, through timeout's rusage.
    (cd "$dir" && /usr/bin/time -v timeout -k 10 "$limit" "$@" >"$out/$corpus.$tool.out" 2>"$log") || rc=$?
    local rss wall
    rss=$(awk -F': ' '/Maximum resident set size/ {printf "%.1f MiB", $2/1024}' "$log")
    wall=$(awk -F': ' '/Elapsed \(wall clock\)/ {print $2}' "$log")
    [ "$rc" = 124 ] || [ "$rc" = 137 ] && wall="stopped at ${limit} s"
    echo "| $corpus | $tool | ${rss:-?} | ${wall:-?} | $rc |" | tee -a "$out/rss.md"
}

docs() {
    local tree; tree="$(rustc --print sysroot)/share/doc/rust/html"
    measure docs keyscope / "$keyscope" scan --isolated --format json -o "$out/docs.keyscope.json" "$tree"
    measure docs gitleaks / "$peers/bin/gitleaks" dir --no-banner -l error -f json -r "$out/docs.gitleaks.json" "$tree"
    measure docs betterleaks / "$peers/bin/betterleaks" fs --no-banner -s --log-level error -o "$out/docs.betterleaks.json" "$tree"
    measure docs kingfisher / "$peers/bin/kingfisher" scan --no-update-check -n -q -f json -o "$out/docs.kingfisher.json" "$tree" --git-history none
    measure docs ripsecrets / "$peers/bin/ripsecrets" "$tree"
    measure docs trufflehog3 / "$peers/bin/trufflehog3" -z --no-history -f JSON -o "$out/docs.trufflehog3.json" "$tree"
    measure docs detect-secrets "$tree" "$peers/bin/detect-secrets" scan -n --all-files .
    measure docs secretlint "$tree" "$peers/bin/secretlint" --secretlintrc "$peers/npm/.secretlintrc.json" --format json --output "$out/docs.secretlint.json" '**/*'
}

history() {
    [ -d "$history" ] || { echo "no history corpus at $history" >&2; exit 2; }
    measure history keyscope / "$keyscope" scan --history --format json -o "$out/history.keyscope.json" "$history"
    measure history gitleaks / "$peers/bin/gitleaks" git --no-banner -l error -f json -r "$out/history.gitleaks.json" "$history"
    measure history betterleaks / "$peers/bin/betterleaks" git --no-banner -s --log-level error -o "$out/history.betterleaks.json" "$history"
    measure history kingfisher / "$peers/bin/kingfisher" scan --no-update-check -n -q -f json -o "$out/history.kingfisher.json" "$history"
    measure history trufflehog3 / "$peers/bin/trufflehog3" -z -f JSON -o "$out/history.trufflehog3.json" "$history"
}

uptime > "$out/load"
case $scenario in
    docs) docs ;;
    history) history ;;
    all) docs; history ;;
esac
uptime >> "$out/load"
echo "results in $out/rss.md"
