#!/usr/bin/env bash
# pre-push hook: scan the commits being pushed with `keyscope scan --range FROM..TO`.
#
# pre-commit passes the pushed range in PRE_COMMIT_FROM_REF and PRE_COMMIT_TO_REF. When it has no
# FROM (a new branch whose commits reach the root commit) or FROM is all zeros (a plain git hook
# for a new branch), the range starts at the parent of the oldest commit that no remote has; a
# branch that reaches the root commit is scanned with `--history` instead.
#
# Which keyscope runs:
#   scripts/pre-push.sh [ARGS...]              keyscope built from this checkout (once, into
#                                              target/pre-commit-hook; this is what the
#                                              `keyscope-pre-push` hook of .pre-commit-hooks.yaml
#                                              runs, pinned to the hook's rev)
#   scripts/pre-push.sh --installed [ARGS...]  the `keyscope` on PATH
# ARGS are passed on to `keyscope scan`.
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
if [ "${1:-}" = "--installed" ]; then
    shift
    keyscope="${KEYSCOPE:-keyscope}"
    if ! command -v "$keyscope" >/dev/null 2>&1; then
        echo "keyscope-pre-push: \`$keyscope\` is not on PATH (install it with \`cargo install --locked --path .\` in a keyscope checkout)" >&2
        exit 2
    fi
else
    keyscope="$repo/target/pre-commit-hook/bin/keyscope"
    if [ ! -x "$keyscope" ]; then
        echo "keyscope-pre-push: building keyscope from $repo (first run only)" >&2
        cargo install --locked --path "$repo" --root "$repo/target/pre-commit-hook" >&2
    fi
fi

zero='^0+$'
from="${PRE_COMMIT_FROM_REF:-}"
to="${PRE_COMMIT_TO_REF:-}"
if [ -z "$to" ]; then
    to="${PRE_COMMIT_LOCAL_BRANCH:-HEAD}"
fi

if [ -z "$from" ] || [[ "$from" =~ $zero ]]; then
    remote="${PRE_COMMIT_REMOTE_NAME:-}"
    not_remote=(--remotes)
    if [ -n "$remote" ]; then
        not_remote=("--remotes=$remote")
    fi
    # The whole list, then its first line: `| head -n 1` closes the pipe while git still writes
    # and, under pipefail, a long history's first push died of SIGPIPE (exit 141, no message).
    oldest="$(git rev-list --topo-order --reverse "$to" --not "${not_remote[@]}")"
    oldest="${oldest%%$'\n'*}"
    if [ -z "$oldest" ]; then
        echo "keyscope-pre-push: every commit of $to is already on the remote; nothing to scan" >&2
        exit 0
    fi
    if from="$(git rev-parse --verify --quiet "$oldest^")"; then
        echo "keyscope-pre-push: new branch; scanning from $from" >&2
    else
        echo "keyscope-pre-push: the push includes the root commit; scanning the whole history" >&2
        exec "$keyscope" scan --history "$@"
    fi
fi

exec "$keyscope" scan --range "$from..$to" "$@"
