#!/usr/bin/env bash
# How the keyscope Action (action.yml) gets its keyscope, kept here so it runs and is tested
# outside GitHub. Two phases, with action.yml's actions/cache/restore step between them:
#
#   action-install.sh find    tries, in order, and stops at the first that works:
#                               1. a `keyscope` on PATH that is the Action's own version;
#                               2. the release archive for the Action's ref (a tag `vX.Y.Z`),
#                                  checked against the SHA-256 published beside it;
#                             then prints the step outputs: `installed` (path, release or empty),
#                             `version`, `cache-dir` and `cache-key` (version, runner OS and arch,
#                             and a hash of the sources, for actions/cache).
#   action-install.sh build   builds from the Action's checkout with `cargo install --locked`
#                             into the cache directory, its progress in the log.
#
# Environment: INPUT_INSTALL (auto, the default; release; source; path), GITHUB_ACTION_PATH (the
# Action's checkout), ACTION_REF (github.action_ref), RUNNER_OS, RUNNER_ARCH, RUNNER_TEMP,
# GITHUB_PATH, GITHUB_OUTPUT; KEYSCOPE_RELEASE_URL replaces the releases download URL (tests).
#
# A missing release (a branch or commit ref, a runner with no archive) falls through to the cache
# and the build; an archive whose checksum does not match fails the step: that is tampering or a
# broken release, never something to run.
set -euo pipefail

action_path="${GITHUB_ACTION_PATH:-$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)}"
mode="${INPUT_INSTALL:-auto}"
output_file="${GITHUB_OUTPUT:-/dev/null}"
path_file="${GITHUB_PATH:-/dev/null}"
temp="${RUNNER_TEMP:-${TMPDIR:-/tmp}}"
release_url="${KEYSCOPE_RELEASE_URL:-https://github.com/keyscope/keyscope/releases/download}"

log() { printf 'keyscope-install: %s\n' "$*" >&2; }
die() {
    printf '::error title=keyscope::%s\n' "$*"
    exit 2
}

python=python3
command -v "$python" >/dev/null 2>&1 || python=python

# The version in the Action's Cargo.toml ([workspace.package] version).
version="$(sed -n 's/^version = "\([^"]*\)"$/\1/p' "$action_path/Cargo.toml" | head -n 1)"
[ -n "$version" ] || die "cannot read the version from $action_path/Cargo.toml"

target() {
    case "${RUNNER_OS:-$(uname -s)}-${RUNNER_ARCH:-$(uname -m)}" in
    Linux-X64 | Linux-x86_64) echo x86_64-unknown-linux-musl ;;
    Linux-ARM64 | Linux-aarch64) echo aarch64-unknown-linux-musl ;;
    macOS-X64 | Darwin-x86_64) echo x86_64-apple-darwin ;;
    macOS-ARM64 | Darwin-arm64) echo aarch64-apple-darwin ;;
    Windows-X64) echo x86_64-pc-windows-msvc ;;
    *) echo "" ;;
    esac
}

sha256() {
    "$python" -c 'import hashlib, sys; print(hashlib.sha256(open(sys.argv[1], "rb").read()).hexdigest())' "$1"
}

# A hash of what a build is made from, so a cache never serves a binary of other sources.
source_hash() {
    "$python" - "$action_path" <<'PY'
import hashlib, os, sys
root = sys.argv[1]
digest = hashlib.sha256()
for top in ["Cargo.toml", "Cargo.lock", "crates", "rules"]:
    start = os.path.join(root, top)
    paths = [start] if os.path.isfile(start) else sorted(
        os.path.join(d, f) for d, _, files in os.walk(start) for f in files
    )
    for path in sorted(paths):
        digest.update(os.path.relpath(path, root).encode() + b"\0")
        with open(path, "rb") as f:
            digest.update(f.read())
print(digest.hexdigest()[:16])
PY
}

on_path_is_ours() {
    command -v keyscope >/dev/null 2>&1 || return 1
    local found
    found="$(keyscope --version 2>/dev/null || true)"
    [ "$found" = "keyscope $version" ] && return 0
    log "the keyscope on PATH is \`${found:-unknown}\`, not $version; not using it"
    return 1
}

# Downloads and checks the release archive for ref $1 into $2/bin; fails only on a bad checksum.
from_release() {
    local ref="$1" dest="$2" triple name archive
    triple="$(target)"
    if [ -z "$triple" ]; then
        log "no release build for ${RUNNER_OS:-?}/${RUNNER_ARCH:-?}"
        return 1
    fi
    case "$ref" in
    v[0-9]*) ;;
    *)
        log "the Action's ref \`${ref:-none}\` is not a release tag: no release archive to use"
        return 1
        ;;
    esac
    name="keyscope-$ref-$triple"
    archive="$name.tar.gz"
    [ "$triple" = x86_64-pc-windows-msvc ] && archive="$name.zip"
    local work
    work="$(mktemp -d "$temp/keyscope-release.XXXXXX")"
    if ! curl -fsSL --retry 3 -o "$work/$archive" "$release_url/$ref/$archive" ||
        ! curl -fsSL --retry 3 -o "$work/$archive.sha256" "$release_url/$ref/$archive.sha256"; then
        log "no release archive $archive for $ref"
        rm -rf "$work"
        return 1
    fi
    local want got
    want="$(awk '{print $1; exit}' "$work/$archive.sha256")"
    got="$(sha256 "$work/$archive")"
    if [ "$want" != "$got" ]; then
        rm -rf "$work"
        die "the release archive $archive does not match its published SHA-256 (expected $want, got $got): refusing to run it"
    fi
    log "release archive $archive: SHA-256 $got verified"
    mkdir -p "$dest/bin"
    case "$archive" in
    *.zip) (cd "$work" && unzip -q "$archive") ;;
    *) tar -xzf "$work/$archive" -C "$work" ;;
    esac
    cp "$work/$name/keyscope"* "$dest/bin/"
    rm -rf "$work"
}

case "${1:-}" in
find)
    case "$mode" in
    auto | release | source | path) ;;
    *) die "install must be auto, release, source or path, not \`$mode\`" ;;
    esac
    cache_dir="$temp/keyscope-build"
    {
        printf 'version=%s\n' "$version"
        printf 'cache-dir=%s\n' "$cache_dir"
        printf 'cache-key=keyscope-%s-%s-%s-%s\n' "$version" "${RUNNER_OS:-local}" "${RUNNER_ARCH:-local}" "$(source_hash)"
    } >>"$output_file"
    if [ "$mode" = path ]; then
        command -v keyscope >/dev/null 2>&1 || die "install is 'path' but keyscope is not on PATH"
        log "using $(command -v keyscope) ($(keyscope --version))"
        printf 'installed=path\n' >>"$output_file"
        exit 0
    fi
    if [ "$mode" = auto ] && on_path_is_ours; then
        log "using $(command -v keyscope), already keyscope $version"
        printf 'installed=path\n' >>"$output_file"
        exit 0
    fi
    if [ "$mode" = auto ] || [ "$mode" = release ]; then
        dest="$temp/keyscope-release"
        if from_release "${ACTION_REF:-}" "$dest"; then
            echo "$dest/bin" >>"$path_file"
            log "installed keyscope $version from the release"
            printf 'installed=release\n' >>"$output_file"
            exit 0
        fi
        [ "$mode" = release ] && die "install is 'release' but there is no release archive for \`${ACTION_REF:-}\`"
    fi
    printf 'installed=\n' >>"$output_file"
    ;;
build)
    cache_dir="${2:?the cache directory}"
    if [ ! -x "$cache_dir/bin/keyscope" ] && [ ! -x "$cache_dir/bin/keyscope.exe" ]; then
        command -v cargo >/dev/null 2>&1 || die "no release archive or cached build, and no cargo to build keyscope with: install Rust, or use a release tag of the Action"
        echo "::group::Building keyscope $version from source (several minutes on a 2-core runner; cached for the next run)"
        cargo install --locked --path "$action_path" --root "$cache_dir"
        echo "::endgroup::"
    else
        log "using the cached build in $cache_dir"
    fi
    echo "$cache_dir/bin" >>"$path_file"
    ;;
*)
    die "usage: action-install.sh find | build DIR"
    ;;
esac
