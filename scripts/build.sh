#!/usr/bin/env bash
# Builds cmi out of tree: scripts/build.sh [--asan|--tsan] [--werror] [--debug]
# Prints the build folder's path on its last line.
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
dir="$top/build"
flags=()
for a in "$@"; do
  case "$a" in
    --asan) dir="$top/build-asan"; flags+=(--enable-asan) ;;
    --tsan) dir="$top/build-tsan"; flags+=(--enable-tsan) ;;
    --werror) flags+=(--enable-werror) ;;
    --debug) flags+=(CFLAGS="-g -O0") ;;
    *) echo "build: unknown option $a" >&2; exit 2 ;;
  esac
done
[ -x "$top/configure" ] || (cd "$top" && autoreconf -fi >/dev/null)
mkdir -p "$dir"
cd "$dir"
want="${flags[*]:-}"
if [ ! -f Makefile ] || [ "$(cat .cmi-configure-flags 2>/dev/null)" != "$want" ]; then
  "$top/configure" -q "${flags[@]}"
  echo "$want" > .cmi-configure-flags
fi
make -j"$(nproc)" >/dev/null
echo "$dir"
