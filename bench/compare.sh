#!/usr/bin/env bash
# Whole-process benchmark: keyscope against the peer secret scanners, same inputs, same machine,
# one run. See bench/README.md for what each scenario measures.
#
#   bench/compare.sh [options] [worktree|small|history|staged|all ...]    (default: all)
#
# Options (each also settable through the environment variable in brackets):
#   -k, --keyscope PATH   keyscope binary            [KEYSCOPE, default target/release/keyscope]
#   --peers "A B ..."     peers to compare           [PEERS, default "betterleaks kingfisher gitleaks"]
#   --no-keyscope         measure the peers only (baselines)
#   --interleave          round-robin: RUNS hyperfine calls of one run of every command each,
#                         instead of one hyperfine call running each command RUNS times in a row
#   --sweep               history: time `keyscope sweep REPO` (a full single-repository sweep)
#                         instead of `keyscope scan --history REPO`          [HISTORY_SWEEP=1]
#   --no-install          never install anything; fail instead
#   -o, --out DIR         results directory          [BENCH_OUT, default bench/out/<UTC time>]
#   -h, --help
#
# Other knobs: WARMUP / RUNS (default 1 / 5, the large scenarios), SMALL_WARMUP / SMALL_RUNS
# (3 / 20), STAGED_WARMUP / STAGED_RUNS (3 / 20), WORKTREE_DIR (default the Rust docs of the
# active toolchain), HISTORY_DIR (default ../bench-data/history beside the repo, built by the
# shared make-history-corpus.py when missing), BENCH_DATA, PEERS_PREFIX (/opt/peers),
# SHARED_BENCH (../shared/bench beside the repo).
#
# Peers exit non-zero when they find secrets, so hyperfine runs with -i; keyscope's exit codes
# are checked separately (2 = error fails the keyscope entry of that scenario, not the script).
set -uo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
KEYSCOPE=${KEYSCOPE:-$ROOT/target/release/keyscope}
PEERS=${PEERS:-betterleaks kingfisher gitleaks}
PEERS_PREFIX=${PEERS_PREFIX:-/opt/peers}
SHARED_BENCH=${SHARED_BENCH:-$ROOT/../shared/bench}
BENCH_DATA=${BENCH_DATA:-$(cd "$ROOT/.." && pwd)/bench-data}
HISTORY_DIR=${HISTORY_DIR:-$BENCH_DATA/history}
BENCH_OUT=${BENCH_OUT:-$ROOT/bench/out/$(date -u +%Y%m%dT%H%M%SZ)}
WARMUP=${WARMUP:-1}
RUNS=${RUNS:-5}
SMALL_WARMUP=${SMALL_WARMUP:-3}
SMALL_RUNS=${SMALL_RUNS:-20}
STAGED_WARMUP=${STAGED_WARMUP:-3}
STAGED_RUNS=${STAGED_RUNS:-20}
WITH_KEYSCOPE=1
INTERLEAVE=${INTERLEAVE:-0}
HISTORY_SWEEP=${HISTORY_SWEEP:-0}
INSTALL=1
SCENARIOS=()

usage() { sed -n '2,/^set -uo/p' "$0" | sed '$d; s/^# \{0,1\}//'; }
log() { printf '\n\033[1m== %s\033[0m\n' "$*" >&2; }
warn() { printf 'warning: %s\n' "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 2; }

while [ $# -gt 0 ]; do
    case $1 in
        -k|--keyscope) KEYSCOPE=$2; shift ;;
        --peers) PEERS=$2; shift ;;
        --no-keyscope) WITH_KEYSCOPE=0 ;;
        --interleave) INTERLEAVE=1 ;;
        --sweep) HISTORY_SWEEP=1 ;;
        --no-install) INSTALL=0 ;;
        -o|--out) BENCH_OUT=$2; shift ;;
        -h|--help) usage; exit 0 ;;
        all) SCENARIOS+=(worktree small history staged) ;;
        worktree|small|history|staged) SCENARIOS+=("$1") ;;
        *) usage >&2; die "unknown argument: $1" ;;
    esac
    shift
done
[ ${#SCENARIOS[@]} -gt 0 ] || SCENARIOS=(worktree small history staged)
case $KEYSCOPE in /*) ;; *) KEYSCOPE=$PWD/$KEYSCOPE ;; esac
mkdir -p "$BENCH_OUT" || die "cannot create $BENCH_OUT"
BENCH_OUT=$(cd "$BENCH_OUT" && pwd)
q() { printf '%q' "$1"; }

# ------------------------------------------------------------------------------------ installs
as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }
APT_UPDATED=0
apt_install() {
    [ "$INSTALL" = 1 ] || die "$1 is missing (and --no-install was given)"
    log "installing $* (apt)"
    if [ "$APT_UPDATED" = 0 ]; then as_root apt-get update -qq || true; APT_UPDATED=1; fi
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >&2 || die "apt-get install $* failed"
}
ensure_tools() {
    command -v hyperfine >/dev/null || apt_install hyperfine
    [ -x /usr/bin/time ] || apt_install time
    command -v python3 >/dev/null || apt_install python3
    command -v git >/dev/null || apt_install git
    local p missing=0
    for p in $PEERS; do [ -x "$PEERS_PREFIX/bin/$p" ] || missing=1; done
    if [ "$missing" = 1 ]; then
        [ "$INSTALL" = 1 ] || die "peers missing under $PEERS_PREFIX/bin (and --no-install was given)"
        [ -f "$SHARED_BENCH/install-peers.sh" ] || die "no $SHARED_BENCH/install-peers.sh (set SHARED_BENCH)"
        log "installing the peers under $PEERS_PREFIX (a few minutes)"
        # The script's smoke test may flag a peer that is not benchmarked here; only the
        # binaries this script needs are checked below.
        PEERS_PREFIX=$PEERS_PREFIX bash "$SHARED_BENCH/install-peers.sh" >&2 || warn "install-peers.sh exited non-zero"
        for p in $PEERS; do [ -x "$PEERS_PREFIX/bin/$p" ] || die "peer $p did not install"; done
    fi
}
ensure_worktree() {
    WORKTREE_DIR=${WORKTREE_DIR:-$(rustc --print sysroot 2>/dev/null)/share/doc/rust/html}
    if [ ! -d "$WORKTREE_DIR" ]; then
        [ "$INSTALL" = 1 ] && command -v rustup >/dev/null && { log "rustup component add rust-docs"; rustup component add rust-docs >&2; }
        [ -d "$WORKTREE_DIR" ] || die "large working tree $WORKTREE_DIR is missing (rustup component add rust-docs)"
    fi
}
ensure_history() {
    if [ ! -f "$HISTORY_DIR/keys.json" ] || [ ! -d "$HISTORY_DIR/repo" ]; then
        [ "$INSTALL" = 1 ] || die "history corpus $HISTORY_DIR missing (and --no-install was given)"
        [ ! -e "$HISTORY_DIR/repo" ] || die "$HISTORY_DIR/repo exists but keys.json does not: remove it to rebuild"
        log "building the history corpus in $HISTORY_DIR (about 2 minutes)"
        mkdir -p "$(dirname "$HISTORY_DIR")"
        python3 "$SHARED_BENCH/make-history-corpus.py" "$HISTORY_DIR" >&2 || die "make-history-corpus.py failed"
    fi
}

# ------------------------------------------------------------------------- command lines
# peer_cmd TOOL MODE TARGET OUTFILE   (MODE: fs | git | staged); prints nothing if unsupported
peer_cmd() {
    local b="$PEERS_PREFIX/bin/$1" t o
    t=$(q "$3"); o=$(q "$4"); b=$(q "$b")
    case $1:$2 in
        betterleaks:fs)  echo "$b fs --no-banner -s --log-level error -o $o $t" ;;
        betterleaks:git) echo "$b git --no-banner -s --log-level error -o $o $t" ;;
        betterleaks:staged) echo "$b git --staged --no-banner -s --log-level error ." ;;
        kingfisher:fs)   echo "$b scan --no-update-check -n -q -f json -o $o $t --git-history none" ;;
        kingfisher:git)  echo "$b scan --no-update-check -n -q -f json -o $o $t" ;;
        kingfisher:staged) echo "$b scan --no-update-check -n -q --staged ." ;;
        gitleaks:fs)     echo "$b dir --no-banner -l error -f json -r $o $t" ;;
        gitleaks:git)    echo "$b git --no-banner -l error -f json -r $o $t" ;;
        gitleaks:staged) echo "$b git --pre-commit --staged --no-banner ." ;;
    esac
}
# The same, writing a JSON report (for counting findings after the timed runs).
peer_staged_json() {
    local b; b=$(q "$PEERS_PREFIX/bin/$1"); local o; o=$(q "$2")
    case $1 in
        betterleaks) echo "$b git --staged --no-banner -s --log-level error -o $o ." ;;
        kingfisher)  echo "$b scan --no-update-check -n -q --staged -f json -o $o ." ;;
        gitleaks)    echo "$b git --pre-commit --staged --no-banner -l error -f json -r $o ." ;;
    esac
}
ks_cmd() { # MODE TARGET OUTFILE
    local k; k=$(q "$KEYSCOPE")
    case $1 in
        fs)     echo "$k scan --format json -o $(q "$3") $(q "$2")" ;;
        git) if [ "$HISTORY_SWEEP" = 1 ]; then
                 echo "$k sweep --format json -o $(q "$3") $(q "$2")"
             else
                 echo "$k scan --history --format json -o $(q "$3") $(q "$2")"
             fi ;;
        staged) echo "$k scan --staged" ;;
    esac
}

# keyscope_supports MODE: run keyscope once on a tiny input of the same kind; exit 0 or 1 means
# the mode works. Anything else (missing binary, unknown flag, exit 2, crash) skips keyscope in
# that scenario with a message, and the peers are still measured.
keyscope_supports() {
    [ "$WITH_KEYSCOPE" = 1 ] || return 1
    if [ ! -x "$KEYSCOPE" ]; then
        warn "keyscope binary $KEYSCOPE not found (cargo build --release): peers only"
        return 1
    fi
    local t; t=$(mktemp -d)
    printf 'print("hello")\n' > "$t/a.py"
    local rc
    case $1 in
        fs) "$KEYSCOPE" scan --format json -o "$t/o.json" "$t" >"$t/out" 2>"$t/err"; rc=$? ;;
        git|staged)
            git -C "$t" init -q && git -C "$t" add a.py &&
                git -C "$t" -c user.name=b -c user.email=b@example.com commit -qm init &&
                printf 'x = 1\n' > "$t/b.py" && git -C "$t" add b.py
            if [ "$1" = git ]; then
                "$KEYSCOPE" scan --history --format json -o "$t/o.json" "$t" >"$t/out" 2>"$t/err"; rc=$?
            else
                (cd "$t" && "$KEYSCOPE" scan --staged) >"$t/out" 2>"$t/err"; rc=$?
            fi ;;
    esac
    if [ "$rc" != 0 ] && [ "$rc" != 1 ]; then
        warn "keyscope cannot run this scenario yet (exit $rc on a tiny $1 input): $(head -c 300 "$t/err" | tr '\n' ' ')"
        rm -rf "$t"
        return 1
    fi
    rm -rf "$t"
    return 0
}

# ----------------------------------------------------------------------------- measuring
LOAD() { cut -d' ' -f1-3 /proc/loadavg; }

# bench SCENARIO WARMUP RUNS WRAP_TIME(0|1) NAME1 CMD1 [NAME2 CMD2 ...]
# Runs hyperfine (or the round-robin variant) and, when WRAP_TIME=1, wraps every command in
# GNU time so that each timed run also records its peak RSS (no extra runs needed).
bench() {
    local sc=$1 w=$2 r=$3 wrap=$4; shift 4
    local d="$BENCH_OUT/$sc" args=() names=() name cmd
    mkdir -p "$d"
    while [ $# -gt 0 ]; do
        name=$1 cmd=$2; shift 2
        names+=("$name")
        if [ "$wrap" = 1 ]; then
            rm -f "$d/$name.time"
            cmd="/usr/bin/time -a -o $(q "$d/$name.time") -f 'MEASURE rss_kb=%M wall=%e user=%U sys=%S exit=%x' $cmd"
        fi
        args+=(-n "$name" "$cmd")
        printf '%s\t%s\n' "$name" "$cmd" >> "$d/commands.tsv"
    done
    echo "load before $sc: $(LOAD)" | tee -a "$d/load.txt" >&2
    if [ "$INTERLEAVE" = 1 ]; then
        local i
        for ((i = 0; i < w + r; i++)); do
            hyperfine -i -r 1 --style basic --export-json "$d/round-$i.json" "${args[@]}" >&2
            # the first $w rounds are warm-up: drop them (and their RSS lines) from the results
            if [ "$i" -lt "$w" ]; then rm -f "$d/round-$i.json"; [ "$wrap" = 1 ] && for name in "${names[@]}"; do rm -f "$d/$name.time"; done; fi
        done
        python3 "$ROOT/bench/summarize.py" merge-rounds "$d" > "$d/hyperfine.json"
    else
        hyperfine -i -w "$w" -r "$r" --style basic --export-json "$d/hyperfine.json" "${args[@]}" >&2
    fi
    echo "load after $sc: $(LOAD)" | tee -a "$d/load.txt" >&2
    # GNU time lines from warm-up runs: keep only the last $r (the timed runs)
    if [ "$wrap" = 1 ]; then
        for name in "${names[@]}"; do
            [ -f "$d/$name.time" ] && grep '^MEASURE' "$d/$name.time" | tail -n "$r" > "$d/$name.rss" || true
        done
    fi
}

count_findings() { # TOOL JSONFILE -> prints count or '?'
    python3 "$ROOT/bench/summarize.py" count "$1" "$2" 2>/dev/null || echo '?'
}

run_fs_scenario() { # worktree|small TARGET
    local sc=$1 target=$2 w r wrap list=() t
    if [ "$sc" = worktree ]; then w=$WARMUP r=$RUNS wrap=1; else w=$SMALL_WARMUP r=$SMALL_RUNS wrap=0; fi
    local d="$BENCH_OUT/$sc"; mkdir -p "$d"; : > "$d/commands.tsv"
    echo "$target ($(find "$target" -type f | wc -l) files, $(du -sh "$target" | cut -f1))" > "$d/target.txt"
    if keyscope_supports fs; then list+=(keyscope "$(ks_cmd fs "$target" "$d/keyscope.json")"); fi
    for t in $PEERS; do list+=("$t" "$(peer_cmd "$t" fs "$target" "$d/$t.json")"); done
    bench "$sc" "$w" "$r" "$wrap" "${list[@]}"
    for ((t = 0; t < ${#list[@]}; t += 2)); do
        printf '%s\n' "$(count_findings "${list[t]}" "$d/${list[t]}.json")" > "$d/${list[t]}.findings"
    done
}

run_history() {
    local d="$BENCH_OUT/history" repo="$HISTORY_DIR/repo" list=() t
    mkdir -p "$d"; : > "$d/commands.tsv"
    echo "$repo" > "$d/target.txt"
    if keyscope_supports git; then list+=(keyscope "$(ks_cmd git "$repo" "$d/keyscope.json")"); fi
    for t in $PEERS; do list+=("$t" "$(peer_cmd "$t" git "$repo" "$d/$t.json")"); done
    bench history "$WARMUP" "$RUNS" 1 "${list[@]}"
    for ((t = 0; t < ${#list[@]}; t += 2)); do
        count_findings "${list[t]}" "$d/${list[t]}.json" > "$d/${list[t]}.findings"
        python3 "$ROOT/bench/summarize.py" recall "$HISTORY_DIR/keys.json" "$d/${list[t]}.json" \
            > "$d/${list[t]}.recall" 2>/dev/null || echo '?' > "$d/${list[t]}.recall"
    done
}

# A large repository with one staged (modified) file: a cheap local clone of the history corpus
# (its index holds a few thousand entries), with a fake key generated here appended to one file.
prepare_staged_repo() {
    local r="$BENCH_DATA/staged-repo"
    rm -rf "$r"
    git clone -q --local "$HISTORY_DIR/repo" "$r" || die "clone of $HISTORY_DIR/repo failed"
    local f; f=$(git -C "$r" ls-files 'Lib/*.py' | sed -n '100p')
    python3 - "$r/$f" <<'PYEOF'
import random, string, sys
rnd = random.Random(11)  # the same fake key every run
an = string.ascii_letters + string.digits
u = an + "-_"
r = lambda n, a=u: "".join(rnd.choice(a) for _ in range(n))
# Random and fake; built here so no key-shaped literal is stored in this script. It ends with an
# alphanumeric character: gitleaks' and Betterleaks' OpenAI rules miss keys ending in - or _,
# and this scenario measures latency, not recall.
key = "sk-proj-" + r(74) + "T3Blbk" + "FJ" + r(73) + r(1, an)
with open(sys.argv[1], "a") as f:
    f.write(f'\nOPENAI_API_KEY = "{key}"\n')
PYEOF
    git -C "$r" add "$f"
    echo "$r"
}

run_staged() {
    local d="$BENCH_OUT/staged" r list=() t c
    mkdir -p "$d"; : > "$d/commands.tsv"
    r=$(prepare_staged_repo)
    echo "$r ($(git -C "$r" ls-files | wc -l) tracked files, staged: $(git -C "$r" diff --cached --name-only))" > "$d/target.txt"
    if keyscope_supports staged; then list+=(keyscope "cd $(q "$r") && $(ks_cmd staged)"); fi
    for t in $PEERS; do
        c=$(peer_cmd "$t" staged "$r" "")
        [ -n "$c" ] || continue
        # only peers whose staged mode runs here (0 clean; 1, or kingfisher's 200, found)
        (cd "$r" && eval "$c") >/dev/null 2>&1; local rc=$?
        if [ $rc -le 1 ] || [ $rc = 200 ]; then list+=("$t" "cd $(q "$r") && $c"); else warn "$t staged mode exits $rc: skipped"; fi
    done
    # hyperfine runs the commands through a shell (for the cd) and subtracts the shell's spawn time
    bench staged "$STAGED_WARMUP" "$STAGED_RUNS" 0 "${list[@]}"
    for ((t = 0; t < ${#list[@]}; t += 2)); do
        local n=${list[t]}
        if [ "$n" = keyscope ]; then
            (cd "$r" && "$KEYSCOPE" scan --staged --format json -o "$d/keyscope.json") >/dev/null 2>&1
        else
            (cd "$r" && eval "$(peer_staged_json "$n" "$d/$n.json")") >/dev/null 2>&1
        fi
        count_findings "$n" "$d/$n.json" > "$d/$n.findings"
    done
}

# ---------------------------------------------------------------------------------- main
ensure_tools
{
    echo "date: $(date -u +%FT%TZ)"
    echo "host: $(nproc) cores, $(free -g | awk '/Mem:/{print $2}') GiB"
    echo "load at start: $(LOAD)"
    if [ -x "$KEYSCOPE" ] && [ "$WITH_KEYSCOPE" = 1 ]; then
        echo "keyscope: $KEYSCOPE ($("$KEYSCOPE" --version 2>/dev/null | head -1 || true), built $(date -u -r "$KEYSCOPE" +%FT%TZ); repo HEAD $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null))"
    else
        echo "keyscope: not measured"
    fi
    for p in $PEERS; do
        case $p in
            kingfisher) v=$("$PEERS_PREFIX/bin/$p" --version 2>&1 | head -1) ;;
            *) v=$("$PEERS_PREFIX/bin/$p" version 2>&1 | head -1) ;;
        esac
        echo "$p: $v"
    done
    echo "hyperfine: $(hyperfine --version)"
    echo "mode: $([ "$INTERLEAVE" = 1 ] && echo round-robin || echo hyperfine blocks)"
    echo "history: keyscope $([ "$HISTORY_SWEEP" = 1 ] && echo sweep || echo scan --history)"
} > "$BENCH_OUT/env.txt"
cat "$BENCH_OUT/env.txt" >&2

for sc in "${SCENARIOS[@]}"; do
    case $sc in
        worktree) ensure_worktree; log "worktree: $WORKTREE_DIR"; run_fs_scenario worktree "$WORKTREE_DIR" ;;
        small)
            rm -rf "$BENCH_DATA/small-checkout"; mkdir -p "$BENCH_DATA"
            git clone -q --local "$ROOT" "$BENCH_DATA/small-checkout" || die "clone of $ROOT failed"
            log "small: $BENCH_DATA/small-checkout (a clone of this repository)"
            run_fs_scenario small "$BENCH_DATA/small-checkout" ;;
        history) ensure_history; log "history: $HISTORY_DIR/repo"; run_history ;;
        staged) ensure_history; log "staged: one staged file in a clone of $HISTORY_DIR/repo"; run_staged ;;
    esac
done

python3 "$ROOT/bench/summarize.py" table "$BENCH_OUT" | tee "$BENCH_OUT/summary.md"
echo "results: $BENCH_OUT" >&2
