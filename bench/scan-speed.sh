#!/usr/bin/env bash
# The scanner's speed targets of issue 13, in one interleaved sitting:
#   - the docs tree ($(rustc --print sysroot)/share/doc/rust/html) against ripgrep's pure
#     read-and-search (`rg -uu -c -F` of a literal that never matches) and the peers;
#   - `scan --staged` of one staged file (the whole process) against the peers' pre-commit modes.
# Each round runs every command once (hyperfine -N -r 1), so load from other builds on the shared
# machine falls on every tool alike; the summary gives medians and ratios.
#
#   bench/scan-speed.sh [-k KEYSCOPE]... [-r ROUNDS] [-o OUT] [docs|staged|all]
#
# -k may be given twice (A/B of two keyscope builds, named by their path). Needs hyperfine and
# ripgrep (Debian), the peers under /opt/peers (../shared/bench/install-peers.sh) and, for
# `staged`, the history corpus's repository (../shared/bench/make-history-corpus.py) to clone.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
peers=${PEERS_PREFIX:-/opt/peers}/bin
keyscopes=()
rounds=7
out=$root/bench/out/scan-speed-$(date -u +%Y%m%dT%H%M%S)
history=${HISTORY_REPO:-$root/../bench-data/history/repo}
while [ $# -gt 0 ]; do
    case $1 in
        -k) keyscopes+=("$(realpath "$2")"); shift 2 ;;
        -r) rounds=$2; shift 2 ;;
        -o) out=$2; shift 2 ;;
        docs|staged|all) break ;;
        *) echo "usage: $0 [-k KEYSCOPE]... [-r ROUNDS] [-o OUT] [docs|staged|all]" >&2; exit 2 ;;
    esac
done
scenario=${1:-all}
[ ${#keyscopes[@]} -gt 0 ] || keyscopes=("$root/target/release/keyscope")
for k in "${keyscopes[@]}"; do [ -x "$k" ] || { echo "no keyscope at $k" >&2; exit 2; }; done
if ! command -v hyperfine >/dev/null || ! command -v rg >/dev/null; then
    echo "needs hyperfine and ripgrep: apt-get install hyperfine ripgrep" >&2; exit 2
fi
mkdir -p "$out"

# Rounds of one run of every command; $1 names the scenario, the rest are name/command pairs.
interleave() {
    local name=$1; shift
    local args=() i
    while [ $# -gt 0 ]; do args+=(-n "$1" "$2"); shift 2; done
    uptime > "$out/$name.load"
    hyperfine -N -i -r 1 -w 0 "${args[@]}" --export-json "$out/$name.warmup.json" >/dev/null 2>&1
    for i in $(seq "$rounds"); do
        hyperfine -N -i -r 1 -w 0 "${args[@]}" --export-json "$out/$name.$i.json" >/dev/null 2>&1
    done
    uptime >> "$out/$name.load"
    python3 - "$out" "$name" "$rounds" <<'PY'
import json, statistics, sys
out, name, rounds = sys.argv[1], sys.argv[2], int(sys.argv[3])
times = {}
for i in range(1, rounds + 1):
    for r in json.load(open(f"{out}/{name}.{i}.json"))["results"]:
        times.setdefault(r["command"], []).append(r["times"][0])
base = statistics.median(next(iter(times.values())))
lines = [f"{name}: {rounds} interleaved rounds; load {open(f'{out}/{name}.load').read().split('load average:')[1].split()[0].rstrip(',')} before",
         f"{'command':<28} {'median':>10} {'min':>10} {'/ first':>8}"]
for cmd, t in times.items():
    m = statistics.median(t)
    lines.append(f"{cmd:<28} {m*1000:>8.1f}ms {min(t)*1000:>8.1f}ms {m/base:>8.2f}")
text = "\n".join(lines)
print(text)
open(f"{out}/{name}.summary.txt", "w").write(text + "\n")
PY
}

docs() {
    local tree; tree="$(rustc --print sysroot)/share/doc/rust/html"
    [ -d "$tree" ] || { echo "no docs tree at $tree (rustup component add rust-docs)" >&2; exit 2; }
    local cmds=(rg "rg -uu -c -F keyscope-never-matches-this-literal $tree")
    local k i=1
    for k in "${keyscopes[@]}"; do
        cmds+=("keyscope$([ ${#keyscopes[@]} -gt 1 ] && echo "-$i")" "$k scan --isolated --format json -o $out/keyscope-$i.json $tree")
        i=$((i + 1))
    done
    # Kingfisher is the fastest peer on this tree (bench/results.md); the others take 10 to 100
    # times keyscope's time and are left to bench/compare.sh.
    [ -x "$peers/kingfisher" ] && cmds+=(kingfisher "$peers/kingfisher scan --no-update-check -n -q -f json -o $out/kingfisher.json $tree --git-history none")
    interleave docs "${cmds[@]}"
}

staged() {
    [ -d "$history" ] || { echo "no history corpus at $history" >&2; exit 2; }
    local repo=$out/staged-repo
    rm -rf "$repo"
    git clone -q --no-hardlinks "$history" "$repo"
    # One modified, staged file with a synthetic key built here (no key is stored in this script).
    local key; key="gsk_$(python3 -c 'import random; r=random.Random(13); print("".join(r.choice("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789") for _ in range(52)))')"
    printf 'GROQ_API_KEY=%s\n' "$key" > "$repo/settings.env"
    git -C "$repo" add settings.env
    # Every tool runs in the repository, as a pre-commit hook does.
    local cmds=() k i=1
    for k in "${keyscopes[@]}"; do
        cmds+=("keyscope$([ ${#keyscopes[@]} -gt 1 ] && echo "-$i")" "$k scan --staged")
        i=$((i + 1))
    done
    [ -x "$peers/gitleaks" ] && cmds+=(gitleaks "$peers/gitleaks git --pre-commit --staged --no-banner .")
    [ -x "$peers/betterleaks" ] && cmds+=(betterleaks "$peers/betterleaks git --staged --no-banner -s --log-level error .")
    [ -x "$peers/kingfisher" ] && cmds+=(kingfisher "$peers/kingfisher scan --no-update-check -n -q --staged .")
    (cd "$repo" && interleave staged "${cmds[@]}")
}

case $scenario in
    docs) docs ;;
    staged) staged ;;
    all) staged; docs ;;
esac
echo "results in $out"
