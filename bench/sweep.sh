#!/usr/bin/env bash
# Fleet-sweep benchmarks (issue 17), on the history corpus of ../shared/bench/make-history-corpus.py.
#
#   bench/sweep.sh incremental CORPUS_REPO [KEYSCOPE]   # second --state sweep after 100 commits
#   bench/sweep.sh fleet CORPUS_REPO N [KEYSCOPE]       # N diverging clones: 1 process vs 4 shards
#
# Work goes to $OUT (default bench/out/sweep-<UTC time>): the clones, states, reports and
# hyperfine's JSON. Every ratio comes from runs interleaved round by round in one sitting.
set -euo pipefail

mode="${1:?incremental|fleet}"
corpus="$(cd "${2:?corpus repository}" && pwd)"
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
out="${OUT:-$root/bench/out/sweep-$(date -u +%Y%m%dT%H%M%SZ)}"
runs="${RUNS:-5}"
mkdir -p "$out"
export GIT_CONFIG_GLOBAL=/dev/null GIT_CONFIG_NOSYSTEM=1
export GIT_AUTHOR_NAME=bench GIT_AUTHOR_EMAIL=bench@example.invalid
export GIT_COMMITTER_NAME=bench GIT_COMMITTER_EMAIL=bench@example.invalid

# N commits on the current branch of $1, each editing one file (new loose objects, as after a
# day of pushes).
add_commits() {
    local repo="$1" count="$2" tag="$3" i
    for i in $(seq 1 "$count"); do
        echo "# $tag change $i" >> "$repo/bench-$tag-$((i % 7)).py"
        git -C "$repo" add -A
        git -C "$repo" commit -q -m "$tag change $i"
    done
}

case "$mode" in
incremental)
    ks="$(realpath "${3:-$root/target/release/keyscope}")"
    repo="$out/repo"
    git clone -q --no-local "$corpus" "$repo"
    "$ks" sweep --isolated -f json -o "$out/first.json" --state "$out/state-before" "$repo" || test $? -le 1
    add_commits "$repo" 100 day
    # Round-robin (one hyperfine call of one run of each per round; round 0 is a warm-up), so
    # that load from other work on the machine falls on both alike.
    echo "load before: $(uptime)" | tee "$out/load.txt"
    for ((i = 0; i <= runs; i++)); do
        hyperfine -r 1 -i --style basic --export-json "$out/round-$i.json" \
            --prepare "rm -rf '$out/state-full'" \
            -n full "$ks sweep --isolated -f json -o '$out/full.json' --state '$out/state-full' '$repo'" \
            --prepare "rm -rf '$out/state'; cp -r '$out/state-before' '$out/state'" \
            -n incremental "$ks sweep --isolated -f json -o '$out/incremental.json' --state '$out/state' '$repo'"
        [ "$i" -gt 0 ] || rm -f "$out/round-$i.json"
    done
    echo "load after: $(uptime)" | tee -a "$out/load.txt"
    python3 "$root/bench/summarize.py" merge-rounds "$out" > "$out/hyperfine.json"
    python3 - "$out" <<'PY'
import json, sys
out = sys.argv[1]
r = {x["command"]: x for x in json.load(open(f"{out}/hyperfine.json"))["results"]}
full, inc = r["full"]["median"], r["incremental"]["median"]
print(f"full sweep median {full:.3f} s, incremental median {inc:.3f} s: {100 * inc / full:.1f}%")
for name in ("full", "incremental"):
    s = json.load(open(f"{out}/{name}.json"))["summary"]
    print(name, {k: s[k] for k in ("findings", "objects_read", "objects_from_state", "complete")})
PY
    ;;
fleet)
    n="${3:?number of clones}"
    ks="$(realpath "${4:-$root/target/release/keyscope}")"
    : > "$out/repos.txt"
    for i in $(seq 1 "$n"); do
        # A local clone hard-links the corpus's pack: N repositories, one pack's disk space.
        git clone -q "$corpus" "$out/r$i"
        add_commits "$out/r$i" 2 "r$i"
        echo "$out/r$i" >> "$out/repos.txt"
    done
    shards="rm -f '$out'/shard-*.json; for k in 0 1 2 3; do ('$ks' sweep --isolated --list '$out/repos.txt' --shard \$k/4 --threads 1 -f json -o '$out'/shard-\$k.json --coverage '$out'/cov-\$k.jsonl || test \$? -le 1) & done; wait; '$ks' merge --isolated '$out'/shard-*.json -o '$out/merged.json' || test \$? -le 1"
    # Round-robin: one run of each per round.
    echo "load before: $(uptime)" | tee "$out/load.txt"
    for ((i = 1; i <= ${FLEET_RUNS:-1}; i++)); do
        hyperfine -r 1 --style basic --export-json "$out/round-$i.json" \
            -n one-process "'$ks' sweep --isolated --list '$out/repos.txt' -f json -o '$out/one.json' --coverage '$out/cov.jsonl' || test \$? -le 1" \
            -n four-shards "$shards"
    done
    echo "load after: $(uptime)" | tee -a "$out/load.txt"
    python3 "$root/bench/summarize.py" merge-rounds "$out" > "$out/hyperfine.json"
    python3 - "$out" <<'PY'
import json, sys
out = sys.argv[1]
r = {x["command"]: x for x in json.load(open(f"{out}/hyperfine.json"))["results"]}
one, four = r["one-process"]["median"], r["four-shards"]["median"]
print(f"one process {one:.1f} s, four shards + merge {four:.1f} s: speed-up {one / four:.2f}x")
for name in ("one", "merged"):
    s = json.load(open(f"{out}/{name}.json"))["summary"]
    print(name, {k: s.get(k) for k in ("repositories", "findings", "objects_read", "blobs_deduplicated", "complete")})
PY
    ;;
*) echo "usage: $0 incremental|fleet CORPUS_REPO ..." >&2; exit 2 ;;
esac
