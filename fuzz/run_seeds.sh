#!/usr/bin/env bash
# ctest `fuzz_seeds` (OPENNPU_FUZZ builds): generates the seed corpus into BUILD/fuzz-seeds and runs
# every fuzz target once over its seeds (-runs=0: no mutation), so each seed — and each regression
# input make_corpus.py adds — is checked on every asan run, not only while fuzzing.
#   fuzz/run_seeds.sh BUILD_DIR
set -euo pipefail
b=$1
here=$(dirname "$0")
rm -rf "$b/fuzz-seeds"
/usr/bin/python3 "$here/make_corpus.py" "$b/fuzz-seeds" "$b/opennpu"
for td in onnx:onnx npy:npy hw_toml:hw cache:cache; do
  t=${td%%:*} d=${td#*:}
  rc=0
  OPENNPU_CACHE_DIR=none "$b/fuzz/fuzz_$t" -runs=0 -timeout=20 -rss_limit_mb=2560 -malloc_limit_mb=2560 \
    "$b/fuzz-seeds/$d" >"$b/fuzz-seeds/$t.log" 2>&1 || rc=$?
  if ((rc != 0)); then
    echo "fuzz_$t failed on a seed (exit $rc):"; tail -60 "$b/fuzz-seeds/$t.log"; exit 1
  fi
  echo "fuzz_$t: $(grep -c . <(ls "$b/fuzz-seeds/$d")) seeds ok"
done
