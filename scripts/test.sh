#!/usr/bin/env bash
# The whole test suite, from a fresh Debian 12 machine: install packages, build the release
# preset, export the real models (seeded, no downloads; skipped when present), run ctest.
# ctest's summary is the last thing printed.
set -euo pipefail
cd "$(dirname "$0")/.."
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
