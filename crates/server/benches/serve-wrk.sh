#!/usr/bin/env bash
# A `keyscope serve` process driven by wrk (Debian's `wrk`, HTTP/1.1 keep-alive, written in C):
# the audit log off and on in interleaved rounds, and batches of 100 on one connection. The
# service's CPU per request is read from /proc/PID/stat around each run.
#
#   sh crates/server/benches/bench_store.sh /tmp/bstore
#   bash crates/server/benches/serve-wrk.sh [-k KEYSCOPE] [-r ROUNDS] [-d SECONDS] /tmp/bstore
set -euo pipefail

keyscope=target/release/keyscope
rounds=4
seconds=5
while getopts k:r:d: opt; do
    case $opt in
        k) keyscope=$OPTARG ;;
        r) rounds=$OPTARG ;;
        d) seconds=$OPTARG ;;
        *) echo "usage: $0 [-k KEYSCOPE] [-r ROUNDS] [-d SECONDS] STORE" >&2; exit 2 ;;
    esac
done
shift $((OPTIND - 1))
store=${1:?usage: $0 [-k KEYSCOPE] [-r ROUNDS] [-d SECONDS] STORE}
command -v wrk >/dev/null || { echo "wrk is missing: apt-get install wrk" >&2; exit 2; }
[ -f "$store/request.json" ] || { echo "no $store/request.json: run bench_store.sh first" >&2; exit 2; }

work=$(mktemp -d)
trap 'kill "${pid:-}" 2>/dev/null || true; rm -rf "$work"' EXIT
tick=$(getconf CLK_TCK)

# A wrk script that POSTs the JSON body in file $1.
post_script() {
    printf 'wrk.method = "POST"\nwrk.headers["Content-Type"] = "application/json"\n'
    printf 'local f = io.open("%s")\nwrk.body = f:read("*a")\nf:close()\n' "$1"
}
post_script "$store/request.json" >"$work/one.lua"
# The load bench's batch: 100 allowed keys' evaluations under one set of top-level defaults.
python3 - "$work/batch.json" <<'PY'
import json, sys
keys = [a for a in range(980) if a % 250 == 1 and a % 3 == 0]
body = {
    "action": {"name": "invoke"},
    "resource": {"type": "Model", "id": "model-7-2025-01-01"},
    "context": {"source_ip": "10.1.2.3", "input_tokens": 1200, "max_output_tokens": 800},
    "evaluations": [{"subject": {"type": "Key", "id": "key-%d" % keys[i % len(keys)]}} for i in range(100)],
}
open(sys.argv[1], "w").write(json.dumps(body))
PY
post_script "$work/batch.json" >"$work/batch.lua"

# Starts the service on a port of the system's choosing with extra arguments; sets pid and
# port (read from the line the service prints once it listens).
start() {
    "$keyscope" serve --store "$store" --no-ledger --listen 127.0.0.1:0 \
        --now 2026-11-22T18:00:00Z "$@" >"$work/serve.log" 2>&1 &
    pid=$!
    for _ in $(seq 200); do
        port=$(sed -n 's#.*listening on http://127\.0\.0\.1:\([0-9]*\).*#\1#p' "$work/serve.log")
        [ -n "$port" ] && return
        sleep 0.05
    done
    cat "$work/serve.log" >&2
    exit 1
}
stop() { kill "$pid"; wait "$pid" 2>/dev/null || true; }
cpu_ticks() { awk '{print $14 + $15}' "/proc/$pid/stat"; }
# The host's stolen CPU ticks and all ticks (the first line of /proc/stat): on a shared VM a
# stolen share is time nothing here could run.
host_ticks() { awk 'NR == 1 {print $9, $2 + $3 + $4 + $5 + $6 + $7 + $8 + $9}' /proc/stat; }

# wrk with the script LUA on PATH over CONNECTIONS and THREADS for $seconds; prints
# "requests/s service-CPU-µs-per-request p50 p99 stolen-percent".
drive() {
    local lua=$1 path=$2 connections=$3 threads=$4 before after out requests host_before host_after
    before=$(cpu_ticks)
    host_before=$(host_ticks)
    out=$(wrk -t"$threads" -c"$connections" -d"${seconds}s" --latency -s "$lua" "http://127.0.0.1:$port$path")
    after=$(cpu_ticks)
    host_after=$(host_ticks)
    requests=$(awk '/requests in/ {print $1}' <<<"$out")
    printf '%s %s %s %s %s\n' \
        "$(awk '/Requests\/sec/ {print $2}' <<<"$out")" \
        "$(awk -v t="$tick" -v a="$after" -v b="$before" -v n="$requests" 'BEGIN {printf "%.1f", (a - b) / t * 1e6 / n}')" \
        "$(awk '$1 == "50%" {print $2}' <<<"$out")" \
        "$(awk '$1 == "99%" {print $2}' <<<"$out")" \
        "$(awk -v b="$host_before" -v a="$host_after" 'BEGIN {split(b, x, " "); split(a, y, " ");
            t = y[2] - x[2]; printf "%.1f", (t > 0 ? (y[1] - x[1]) * 100 / t : 0)}')"
}

echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "| round | audit off: evaluations/s (CPU µs/request; stolen) | audit on: evaluations/s (CPU µs/request; stolen) |"
echo "|---|---:|---:|"
off_sum=0 on_sum=0
for round in $(seq "$rounds"); do
    start
    read -r off off_cpu _ _ off_stolen < <(drive "$work/one.lua" /access/v1/evaluation 8 2)
    stop
    rm -rf "$work/audit"
    start --audit-log "$work/audit"
    read -r on on_cpu _ _ on_stolen < <(drive "$work/one.lua" /access/v1/evaluation 8 2)
    stop
    echo "| $round | $off ($off_cpu; $off_stolen%) | $on ($on_cpu; $on_stolen%) |"
    off_sum=$(awk -v a="$off_sum" -v b="$off" 'BEGIN {print a + b}')
    on_sum=$(awk -v a="$on_sum" -v b="$on" 'BEGIN {print a + b}')
done
awk -v a="$off_sum" -v b="$on_sum" -v r="$rounds" \
    'BEGIN {printf "| mean | %.0f | %.0f (%+.1f%%) |\n", a / r, b / r, (b / a - 1) * 100}'

echo
echo "| batch of 100, one connection | batches/s | CPU µs/batch | p50 | p99 | stolen |"
echo "|---|---:|---:|---:|---:|---:|"
for audit in off on; do
    rm -rf "$work/audit"
    if [ "$audit" = on ]; then start --audit-log "$work/audit"; else start; fi
    read -r rate cpu p50 p99 stolen < <(drive "$work/batch.lua" /access/v1/evaluations 1 1)
    stop
    echo "| audit $audit | $rate | $cpu | $p50 | $p99 | $stolen% |"
done
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
