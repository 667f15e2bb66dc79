#!/usr/bin/env bash
# The whole test suite, from a fresh Debian 12 machine: install packages, build the release
# preset, export the real models (seeded, no downloads; skipped when present), run ctest; then
# the sanitizer stage (scripts/sanitize.sh all): the whole ctest suite again under ASan + UBSan,
# each libFuzzer target for 60 s, and the concurrency tests under ThreadSanitizer. Any failure
# stops it with a non-zero exit.
#
#   scripts/test.sh            everything (CI runs this)
#   scripts/test.sh --quick    the release suite only (no sanitizer builds)
set -euo pipefail
cd "$(dirname "$0")/.."
quick=0
case ${1:-} in
  --quick) quick=1 ;;
  "") ;;
  *) echo "usage: scripts/test.sh [--quick]"; exit 2 ;;
esac
t0=$SECONDS
scripts/setup.sh
scripts/build.sh release
/usr/bin/python3 scripts/export_models.py
echo "test.sh: setup + build + export took $((SECONDS - t0)) s; running ctest"
# Tests load many throwaway models: keep their compiled-model cache entries out of the user's
# cache (tests that exercise the cache set their own directories).
if [ -z "${OPENNPU_CACHE_DIR:-}" ]; then
  OPENNPU_CACHE_DIR="$(mktemp -d)"
  export OPENNPU_CACHE_DIR
  trap 'rm -rf "$OPENNPU_CACHE_DIR"' EXIT
fi
ctest --test-dir build/release --output-on-failure -j2
echo "test.sh: release suite passed after $((SECONDS - t0)) s"
if ((quick)); then
  echo "test.sh: --quick: sanitizer stage skipped"
  exit 0
fi
scripts/sanitize.sh all
echo "test.sh: release suite and sanitizer stage passed in $((SECONDS - t0)) s"
