# Shared by the scripts in this folder: strict mode, paths and caches outside the clone.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CACHE="${MEDIA_ANALYZER_CACHE:-$HOME/.cache/media-analyzer}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$CACHE/target}"
export npm_config_cache="${npm_config_cache:-$CACHE/npm}"
mkdir -p "$CACHE"

say() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

# Runs "$@" unless the stamp $1 records the same fingerprint $2 (skip work that is done).
stamp_matches() { [ -f "$CACHE/stamps/$1" ] && [ "$(cat "$CACHE/stamps/$1")" = "$2" ]; }
stamp_write() { mkdir -p "$CACHE/stamps"; printf '%s' "$2" >"$CACHE/stamps/$1"; }

fingerprint() { cat "$@" 2>/dev/null | sha256sum | cut -c1-16; }

# Free space, in GiB, on the filesystem that holds $1.
free_gib() { df -Pk "$1" | awk 'NR == 2 {print int($4 / 1048576)}'; }
# Size, in GiB (rounded up), of what the paths hold.
size_gib() { du -sk "$@" 2>/dev/null | awk '{k += $1} END {print int((k + 1048575) / 1048576)}'; }

# Makes sure there is room for the caches (build output, fuzz build, models) to grow to $1 GiB in
# all, and never less than $2 GiB free for logs, recordings and the container image. Reclaims what
# can be rebuilt, cheapest first: Docker's dangling images and build cache, the fuzz corpus grown
# under the cache, cargo's incremental state, the fuzz build, then the whole build output. Dies
# with a plain statement of what is free and what is needed when that is still not enough, rather
# than letting a step fail halfway with "No space left on device".
ensure_disk_space() {
  local total="$1" margin="$2" need have
  need=$((total - $(size_gib "$CACHE")))
  [ "$need" -ge "$margin" ] || need="$margin"
  have="$(free_gib "$CACHE")"
  [ "$have" -ge "$need" ] && return 0
  say "disk: $have GiB free under $CACHE, $need GiB wanted: reclaiming what can be rebuilt"
  reclaim() { # $1 what, then the paths
    local what="$1" size; shift
    [ -n "$(ls -d "$@" 2>/dev/null)" ] || return 0
    size="$(size_gib "$@")"
    rm -rf "$@"
    say "disk: removed $what (~$size GiB), $(free_gib "$CACHE") GiB free"
  }
  if docker info >/dev/null 2>&1; then
    docker image prune --force >/dev/null 2>&1 || true
    docker builder prune --force >/dev/null 2>&1 || true
    say "disk: pruned Docker's dangling images and build cache, $(free_gib "$CACHE") GiB free"
  fi
  local step
  for step in corpus incremental fuzz target; do
    [ "$(free_gib "$CACHE")" -ge "$need" ] && return 0
    case "$step" in
      corpus) reclaim "the fuzz corpus grown under the cache" "$CACHE"/fuzz-corpus ;;
      incremental) reclaim "cargo's incremental state" "$CARGO_TARGET_DIR"/*/incremental ;;
      fuzz) reclaim "the fuzz build" "$CACHE"/fuzz-target ;;
      target) reclaim "the build output (the next build is a cold one)" "$CARGO_TARGET_DIR" ;;
    esac
  done
  have="$(free_gib "$CACHE")"
  [ "$have" -ge "$need" ] ||
    die "only $have GiB free under $CACHE after reclaiming the caches; the tests need about $need GiB (build output, container image, models)"
}
