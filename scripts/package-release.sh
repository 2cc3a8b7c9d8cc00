#!/usr/bin/env bash
# Packs one release archive, as .github/workflows/release.yml does for each target:
#
#   scripts/package-release.sh TARGET TAG [BINARY] [OUT_DIR]
#
# BINARY (default target/TARGET/release/keyscope[.exe]) is copied and stripped, then archived
# with the shell completions and the man page it prints itself, LICENSE, README.md and
# CHANGELOG.md, as OUT_DIR (default dist)/keyscope-TAG-TARGET.tar.gz (.zip for Windows), with
# a `.sha256` beside it in `sha256sum` format. Everything unpacks into one directory named like
# the archive, which is where the Action's installer and cargo-binstall look for the binary.
set -euo pipefail

target="${1:?usage: package-release.sh TARGET TAG [BINARY] [OUT_DIR]}"
tag="${2:?usage: package-release.sh TARGET TAG [BINARY] [OUT_DIR]}"
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
exe=""
case "$target" in *windows*) exe=".exe" ;; esac
binary="${3:-$root/target/$target/release/keyscope$exe}"
out="${4:-dist}"
name="keyscope-$tag-$target"

mkdir -p "$out"
out="$(cd "$out" && pwd)"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
dir="$work/$name"
mkdir -p "$dir/completions" "$dir/man"
cp "$binary" "$dir/keyscope$exe"
if [ -z "$exe" ] && command -v strip >/dev/null 2>&1; then
    strip "$dir/keyscope"
fi
"$dir/keyscope$exe" completions bash >"$dir/completions/keyscope.bash"
"$dir/keyscope$exe" completions zsh >"$dir/completions/_keyscope"
"$dir/keyscope$exe" completions fish >"$dir/completions/keyscope.fish"
"$dir/keyscope$exe" completions powershell >"$dir/completions/_keyscope.ps1"
"$dir/keyscope$exe" completions elvish >"$dir/completions/keyscope.elv"
"$dir/keyscope$exe" man >"$dir/man/keyscope.1"
cp "$root/LICENSE" "$root/README.md" "$root/CHANGELOG.md" "$dir/"

if [ -n "$exe" ]; then
    archive="$name.zip"
    (cd "$work" && 7z a -tzip -bd "$out/$archive" "$name" >/dev/null)
else
    archive="$name.tar.gz"
    tar -czf "$out/$archive" -C "$work" "$name"
fi
if command -v sha256sum >/dev/null 2>&1; then
    sum="$(sha256sum "$out/$archive" | awk '{print $1}')"
else
    sum="$(shasum -a 256 "$out/$archive" | awk '{print $1}')"
fi
printf '%s  %s\n' "$sum" "$archive" >"$out/$archive.sha256"
printf '%s %s bytes (keyscope%s %s bytes stripped)\n' "$archive" "$(wc -c <"$out/$archive" | tr -d ' ')" "$exe" "$(wc -c <"$dir/keyscope$exe" | tr -d ' ')"
