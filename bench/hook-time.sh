#!/usr/bin/env bash
# What the keyscope pre-commit hook adds to a commit, measured through the real `pre-commit`
# (issue 18's target: under 50 ms). In a clone of this repository with one staged change, it
# times `pre-commit run keyscope-system` against `pre-commit run noop` (the same hook machinery
# running `true`), interleaved, and `keyscope scan --staged` alone; prints the medians.
#
#   bench/hook-time.sh [KEYSCOPE_BINARY] [ROUNDS]
#
# KEYSCOPE_BINARY defaults to target/release/keyscope: measure a release build on an idle
# machine; a debug build's times say nothing about the hook. pre-commit comes from
# .ci/hooks-deps.sh.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
binary="$(cd "$(dirname "${1:-$root/target/release/keyscope}")" && pwd)/$(basename "${1:-keyscope}")"
rounds="${2:-5}"
[ -x "$binary" ] || { echo "hook-time: no keyscope at $binary" >&2; exit 2; }
pre_commit="$(bash "$root/.ci/hooks-deps.sh")"

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
mkdir "$work/bin"
ln -s "$binary" "$work/bin/keyscope"
git clone -q "$root" "$work/repo"
cd "$work/repo"
cat >.pre-commit-config.yaml <<'YAML'
repos:
  - repo: local
    hooks:
      - id: keyscope-system
        name: keyscope (staged)
        entry: keyscope scan --staged
        language: system
        pass_filenames: false
      - id: noop
        name: no-op
        entry: "true"
        language: system
        pass_filenames: false
YAML
echo "// a staged change" >>crates/cli/src/main.rs
git add .pre-commit-config.yaml crates/cli/src/main.rs
echo "hook-time: $("$work/bin/keyscope" --version), $(git ls-files | wc -l | tr -d ' ') files, 2 staged; load: $(cut -d' ' -f1-3 /proc/loadavg 2>/dev/null || uptime)"

PATH="$work/bin:$PATH" PRE_COMMIT_HOME="$work/cache" python3 - "$pre_commit" "$rounds" <<'PY'
import statistics, subprocess, sys, time
pre_commit, rounds = sys.argv[1], int(sys.argv[2])
commands = {
    "pre-commit run keyscope-system": [pre_commit, "run", "keyscope-system"],
    "pre-commit run noop": [pre_commit, "run", "noop"],
    "keyscope scan --staged": ["keyscope", "scan", "--staged"],
}
for command in commands.values():
    subprocess.run(command, capture_output=True, check=True)
times = {name: [] for name in commands}
for _ in range(rounds):
    for name, command in commands.items():
        for _ in range(5):
            start = time.perf_counter()
            subprocess.run(command, capture_output=True, check=True)
            times[name].append((time.perf_counter() - start) * 1000)
for name, values in times.items():
    print(f"{name:34} median {statistics.median(values):7.1f} ms  min {min(values):7.1f} ms  ({len(values)} runs)")
added = statistics.median(times["pre-commit run keyscope-system"]) - statistics.median(times["pre-commit run noop"])
print(f"{'added by the keyscope hook':34} {added:7.1f} ms (median difference)")
PY
