#!/usr/bin/env bash
# The logic of the keyscope GitHub Action (action.yml), kept here so it runs and is tested outside
# GitHub: give it GITHUB_EVENT_NAME, GITHUB_EVENT_PATH, GITHUB_OUTPUT and GITHUB_STEP_SUMMARY and
# it scans what the event introduces, the way the Action would.
#
# What is scanned:
#   pull_request, pull_request_target  pull_request.base.sha..pull_request.head.sha
#   push                               before..after; a new branch (before is all zeros) from
#                                      its merge base with the default branch, or the whole
#                                      history when there is none
#   merge_group                        merge_group.base_sha..merge_group.head_sha
#   anything else                      the checked-out working tree (what .gitignore excludes
#                                      is counted in the summary, not scanned; --no-ignore in
#                                      INPUT_ARGS scans it)
#
# Inputs (environment, as action.yml passes them):
#   INPUT_FORMAT            format printed to the job log: human (default), json, sarif or none
#   INPUT_SARIF_FILE        where the SARIF report goes (default: $RUNNER_TEMP/keyscope/
#                           keyscope.sarif, outside the scanned tree; a path inside the working
#                           tree is excluded from working-tree scans, so reruns do not scan it)
#   INPUT_FAIL_ON_FINDINGS  true (default) or false
#   INPUT_ARGS              extra arguments for `keyscope scan`, split on whitespace
#   KEYSCOPE                the keyscope executable (default: `keyscope` on PATH)
#   KEYSCOPE_OUT_DIR        where the reports go (default: $RUNNER_TEMP/keyscope)
#
# Outputs: findings, keys, usage-findings, exit-code, range, sarif-file and report-file (the full
# JSON report, never capped). When the run fails before its reports are written, sarif-file and
# report-file are empty, so `if: steps.keyscope.outputs.sarif-file != ''` skips the upload rather
# than failing on a missing file (an empty SARIF run would close the open alerts instead).
#
# Exit codes follow keyscope's: 0 clean (or findings with fail-on-findings false), 1 findings,
# 2 an error, including a base commit missing from a shallow checkout.
#
# JSON (the event payload, keyscope's report) is read with python3, which every GitHub-hosted
# runner has; scripts/github-action-report.py writes the annotations, the summary and caps the
# SARIF. keyscope's output is already redacted and nothing here adds file content.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

keyscope="${KEYSCOPE:-keyscope}"
format="${INPUT_FORMAT:-human}"
if [ -n "${KEYSCOPE_OUT_DIR:-}" ]; then
    # The container Action (docker/action.yml): $RUNNER_TEMP is not shared with the host there,
    # so the reports go in the workspace, where they are excluded from the scan.
    out_dir="$KEYSCOPE_OUT_DIR"
    mkdir -p "$out_dir"
elif [ -n "${RUNNER_TEMP:-}" ]; then
    out_dir="$RUNNER_TEMP/keyscope"
    mkdir -p "$out_dir"
else
    out_dir="$(mktemp -d "${TMPDIR:-/tmp}/keyscope-action.XXXXXX")"
fi
sarif_file="${INPUT_SARIF_FILE:-$out_dir/keyscope.sarif}"
report_file="$out_dir/keyscope.json"
fail_on_findings="${INPUT_FAIL_ON_FINDINGS:-true}"
event_name="${GITHUB_EVENT_NAME:-}"
event_path="${GITHUB_EVENT_PATH:-}"
output_file="${GITHUB_OUTPUT:-/dev/null}"
summary_file="${GITHUB_STEP_SUMMARY:-/dev/null}"
zero_sha='^0+$'

log() { printf 'keyscope-action: %s\n' "$*"; }

# Workflow-command data escaping (`::error ...::DATA`).
escape_data() {
    local s="$1"
    s="${s//'%'/%25}"
    s="${s//$'\r'/%0D}"
    s="${s//$'\n'/%0A}"
    printf '%s' "$s"
}

fail() {
    # $1: exit code; $2: message. Reaches the log as an error annotation, the summary and outputs.
    local code="$1" message="$2"
    printf '::error title=keyscope::%s\n' "$(escape_data "$message")"
    {
        printf '## keyscope: scan failed\n\n'
        printf '%s\n\n' "$message"
        printf '%s\n' "No SARIF report was written: the \`sarif-file\` output is empty, so an upload step guarded by \`if: steps.keyscope.outputs.sarif-file != ''\` is skipped."
    } >>"$summary_file"
    {
        printf 'findings=0\nkeys=0\nusage-findings=0\n'
        printf 'exit-code=%s\n' "$code"
        printf 'sarif-file=\nreport-file=\n'
    } >>"$output_file"
    exit "$code"
}

if command -v python3 >/dev/null 2>&1; then
    python=python3
elif command -v python >/dev/null 2>&1; then
    python=python
else
    fail 2 "python3 is needed to read the event payload and keyscope's JSON report"
fi
if ! command -v "$keyscope" >/dev/null 2>&1; then
    fail 2 "\`$keyscope\` is not installed or not on PATH"
fi
case "$fail_on_findings" in
true | false) ;;
*) fail 2 "fail-on-findings must be true or false, not \`$fail_on_findings\`" ;;
esac
case "$format" in
human | json | sarif | none) ;;
*) fail 2 "format must be human, json, sarif or none, not \`$format\`" ;;
esac

# Prints the value of a dotted path in the event payload, or nothing.
event_field() {
    [ -n "$event_path" ] && [ -f "$event_path" ] || return 0
    "$python" - "$event_path" "$1" <<'PY'
import json, sys
value = json.load(open(sys.argv[1], encoding="utf-8"))
for key in sys.argv[2].split("."):
    value = value.get(key) if isinstance(value, dict) else None
if isinstance(value, bool):
    print("true" if value else "false")
elif value is not None:
    print(value)
PY
}

commit_exists() { git cat-file -e "$1^{commit}" 2>/dev/null; }

fetch_hint() {
    # $1: the missing commit; $2: what it is.
    fail 2 "the $2 commit $1 is not in this checkout, so the commits to scan cannot be worked out. The checkout is probably shallow: set \`fetch-depth: 0\` on actions/checkout (or run \`git fetch --unshallow\`) before keyscope"
}

# Sets scan_args (the keyscope arguments) and scope (a description for people).
base=""
head=""
scan_args=()
case "$event_name" in
pull_request | pull_request_target)
    base="$(event_field pull_request.base.sha)"
    head="$(event_field pull_request.head.sha)"
    scope="pull request #$(event_field pull_request.number)"
    ;;
merge_group)
    base="$(event_field merge_group.base_sha)"
    head="$(event_field merge_group.head_sha)"
    scope="merge group"
    ;;
push)
    base="$(event_field before)"
    head="$(event_field after)"
    scope="push to $(event_field ref)"
    kind="new branch"
    if [[ "$head" =~ $zero_sha ]] || [ "$(event_field deleted)" = "true" ]; then
        log "the push deleted $(event_field ref); nothing to scan"
        {
            printf '## keyscope\n\nThe push deleted a ref: nothing to scan.\n'
        } >>"$summary_file"
        printf 'findings=0\nkeys=0\nusage-findings=0\nexit-code=0\nsarif-file=\nreport-file=\nrange=\n' >>"$output_file"
        exit 0
    fi
    if [ "$(event_field forced)" = "true" ] && [ -n "$base" ] && ! commit_exists "$base"; then
        # A force push's old tip is no ancestor of the new one, so a full checkout lacks it too:
        # scan the branch as if it were new.
        log "note: force push; the old tip $base is not in the checkout, scanning the branch from its merge base with the default branch"
        base="0000000000000000000000000000000000000000"
        kind="force push to"
    fi
    if [[ "$base" =~ $zero_sha ]]; then
        # A new branch: its own commits are those not on the default branch.
        default_branch="$(event_field repository.default_branch)"
        base=""
        commit_exists "$head" || fetch_hint "$head" "pushed"
        for ref in "refs/remotes/origin/$default_branch" "refs/heads/$default_branch"; do
            if [ -n "$default_branch" ] && git rev-parse --verify --quiet "$ref" >/dev/null; then
                merge_base="$(git merge-base "$ref" "$head" 2>/dev/null || true)"
                if [ -n "$merge_base" ] && [ "$merge_base" != "$head" ]; then
                    base="$merge_base"
                    scope="$kind $(event_field ref), from its merge base with $default_branch"
                    break
                fi
            fi
        done
        if [ -z "$base" ]; then
            log "note: $kind $(event_field ref) has no merge base with the default branch \`$default_branch\` in this checkout; scanning the whole history (set fetch-depth: 0 to narrow it to the branch's own commits)"
            scan_args=(--history)
            scope="$kind $(event_field ref), whole history"
            head=""
        fi
    fi
    ;;
*)
    scope="working tree (event \`${event_name:-none}\`)"
    scan_args=(.)
    ;;
esac

range=""
if [ "${#scan_args[@]}" -eq 0 ]; then
    if [ -z "$base" ] || [ -z "$head" ]; then
        fail 2 "the \`$event_name\` event payload at \`$event_path\` has no base and head commits"
    fi
    commit_exists "$head" || fetch_hint "$head" "head"
    commit_exists "$base" || fetch_hint "$base" "base"
    range="$base..$head"
    scan_args=(--range "$range")
fi
log "scanning $scope: keyscope scan ${scan_args[*]}"

extra_args=()
if [ -n "${INPUT_ARGS:-}" ]; then
    read -r -a extra_args <<<"$INPUT_ARGS"
fi
if [ "${scan_args[0]}" = "." ]; then
    # Reports written inside the working tree (a sarif-file input such as `keyscope.sarif`) are
    # not scanned: on a rerun they would otherwise be findings of their own.
    while IFS= read -r glob; do
        [ -n "$glob" ] && extra_args+=(--exclude "$glob")
    done < <("$python" - "$sarif_file" "$report_file" <<'PY'
import os, re, sys
here = os.path.realpath(".")
for path in sys.argv[1:]:
    full = os.path.realpath(path)
    if full.startswith(here + os.sep):
        print("/" + re.sub(r"([\\*?\[\]!#])", r"\\\1", os.path.relpath(full, here)))
PY
    )
fi

json_file="$report_file"
rm -f "$json_file"
code=0
"$keyscope" scan "${scan_args[@]}" ${extra_args[@]+"${extra_args[@]}"} --format json -o "$json_file" || code=$?
if [ "$code" -ge 2 ] || [ ! -s "$json_file" ]; then
    fail 2 "keyscope scan ${scan_args[*]} failed (exit $code); its error is in the log above"
fi
sarif_code=0
mkdir -p "$(dirname "$sarif_file")"
"$keyscope" scan "${scan_args[@]}" ${extra_args[@]+"${extra_args[@]}"} --format sarif -o "$sarif_file" || sarif_code=$?
if [ "$sarif_code" -ge 2 ]; then
    rm -f "$sarif_file"
    fail 2 "keyscope scan --format sarif failed (exit $sarif_code)"
fi
case "$format" in
human) "$keyscope" scan "${scan_args[@]}" ${extra_args[@]+"${extra_args[@]}"} --format human || true ;;
json) cat "$json_file" ;;
sarif) cat "$sarif_file" ;;
none) ;;
esac

# Annotations on stdout, the summary appended to the summary file, the SARIF capped; the last
# line is `FINDINGS KEYS USAGE`.
findings="$("$python" "$here/github-action-report.py" "$json_file" "$sarif_file" "$summary_file" "$scope" "$range")"
counts="${findings##*$'\n'}"
if [ "$counts" != "$findings" ]; then
    printf '%s\n' "${findings%$'\n'*}"
fi
read -r count keys usage <<<"$counts"

exit_code=0
if [ "$count" -gt 0 ] && [ "$fail_on_findings" = "true" ]; then
    exit_code=1
fi
# The output is keyscope's own verdict (1 when there are findings), whatever fail-on-findings
# makes of it, so a workflow that does not fail the job can still branch on it.
{
    printf 'findings=%s\nkeys=%s\nusage-findings=%s\n' "$count" "$keys" "$usage"
    printf 'exit-code=%s\n' "$code"
    printf 'sarif-file=%s\n' "$sarif_file"
    printf 'report-file=%s\n' "$report_file"
    printf 'range=%s\n' "$range"
} >>"$output_file"
log "$count finding(s) in $scope: $keys leaked key(s), $usage usage finding(s)"
exit "$exit_code"
