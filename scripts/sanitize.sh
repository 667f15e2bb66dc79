#!/usr/bin/env bash
# Sanitizer builds and fuzzing (docs/security.md, "Fuzzing and sanitizers"). Called by
# scripts/test.sh after the release suite; each step fails on any sanitizer report.
#
#   scripts/sanitize.sh asan        build the asan preset (clang-14, ASan + UBSan, with the libFuzzer
#                                   targets) into build/asan and run the whole ctest suite on it
#   scripts/sanitize.sh fuzz [S]    run each libFuzzer target of build/asan for S seconds (default
#                                   $OPENNPU_FUZZ_SECONDS or 60) from a fresh seed corpus
#   scripts/sanitize.sh tsan        build test_concurrent_predict with the tsan preset into
#                                   build/tsan and run the `threads` tests under ThreadSanitizer
#   scripts/sanitize.sh all         the three in that order
#
# Findings: ASan/UBSan/TSan reports abort the process (halt_on_error), which fails its ctest; a
# fuzzer stops at its first finding and leaves the input in build/asan/fuzz-findings/<target>/.
set -euo pipefail
cd "$(dirname "$0")/.."
jobs=${OPENNPU_JOBS:-$(nproc)}

symbolizer=$(command -v llvm-symbolizer-14 || command -v llvm-symbolizer || true)
# detect_leaks: LeakSanitizer runs at exit (it needs ptrace-free /proc access; works in Debian
# containers). One report fails the test like any other finding.
export ASAN_OPTIONS="detect_leaks=1:abort_on_error=1:detect_stack_use_after_return=0:strict_string_checks=1:check_initialization_order=1${symbolizer:+:external_symbolizer_path=$symbolizer}"
export UBSAN_OPTIONS="halt_on_error=1:print_stacktrace=1${symbolizer:+:external_symbolizer_path=$symbolizer}"
export TSAN_OPTIONS="halt_on_error=1:second_deadlock_stack=1:suppressions=$PWD/tests/tsan/tsan.supp${symbolizer:+:external_symbolizer_path=$symbolizer}"

private_cache() {  # keep the tests' compiled-model cache entries out of the user's cache
  if [ -z "${OPENNPU_CACHE_DIR:-}" ]; then
    OPENNPU_CACHE_DIR="$(mktemp -d)"
    export OPENNPU_CACHE_DIR
    trap 'rm -rf "$OPENNPU_CACHE_DIR"' EXIT
  fi
}

step_asan() {
  local t0=$SECONDS
  cmake --preset asan >/dev/null
  cmake --build --preset asan -j"$jobs"
  echo "sanitize.sh: asan build took $((SECONDS - t0)) s; running ctest"
  t0=$SECONDS
  private_cache
  ctest --test-dir build/asan --output-on-failure -j"$jobs"
  echo "sanitize.sh: asan ctest took $((SECONDS - t0)) s"
}

step_fuzz() {
  local secs=${1:-${OPENNPU_FUZZ_SECONDS:-60}} t0=$SECONDS b=build/asan
  [ -x $b/fuzz/fuzz_onnx ] || { echo "sanitize.sh: build the asan preset first (scripts/sanitize.sh asan)"; exit 1; }
  rm -rf $b/fuzz-corpus $b/fuzz-findings
  /usr/bin/python3 fuzz/make_corpus.py $b/fuzz-corpus $b/opennpu
  # Each writes its log and, on a finding, the input; new coverage goes to fuzz-work (the seeds
  # stay as generated). Two targets at a time on two cores.
  run_one() {
    local t=$1 dir=$2
    mkdir -p $b/fuzz-findings/$t $b/fuzz-work/$t
    OPENNPU_CACHE_DIR=none $b/fuzz/fuzz_$t -max_total_time="$secs" -timeout=20 -rss_limit_mb=2560 \
      -malloc_limit_mb=2560 -print_final_stats=1 -artifact_prefix=$b/fuzz-findings/$t/ \
      $b/fuzz-work/$t $b/fuzz-corpus/$dir >$b/fuzz-findings/$t.log 2>&1
  }
  report() {
    local t=$1 rc=$2
    if ((rc == 0)); then
      echo "sanitize.sh: fuzz_$t: $(grep -E '^stat::(number_of_executed_units|new_units_added)' $b/fuzz-findings/$t.log | tr '\n' ' ')"
    else
      echo "sanitize.sh: fuzz_$t FAILED (exit $rc; input in $b/fuzz-findings/$t/; end of its log:)"
      tail -60 $b/fuzz-findings/$t.log
      failed=1
    fi
  }
  rm -rf $b/fuzz-work
  local failed=0 rc1 rc2
  for pair in "onnx:onnx cache:cache" "npy:npy hw_toml:hw"; do
    set -- $pair
    run_one "${1%%:*}" "${1#*:}" & local p1=$!
    run_one "${2%%:*}" "${2#*:}" & local p2=$!
    rc1=0; wait $p1 || rc1=$?
    rc2=0; wait $p2 || rc2=$?
    report "${1%%:*}" $rc1
    report "${2%%:*}" $rc2
  done
  echo "sanitize.sh: fuzzing took $((SECONDS - t0)) s (${secs} s per target)"
  return $failed
}

step_tsan() {
  local t0=$SECONDS
  cmake --preset tsan >/dev/null
  cmake --build --preset tsan -j"$jobs" --target test_concurrent_predict
  echo "sanitize.sh: tsan build took $((SECONDS - t0)) s"
  t0=$SECONDS
  ctest --test-dir build/tsan --output-on-failure -L threads
  echo "sanitize.sh: tsan tests took $((SECONDS - t0)) s"
}

case ${1:-all} in
  asan) step_asan ;;
  fuzz) step_fuzz "${2:-}" ;;
  tsan) step_tsan ;;
  all) step_asan; step_fuzz "${2:-}"; step_tsan ;;
  *) echo "usage: scripts/sanitize.sh asan|fuzz [SECONDS]|tsan|all"; exit 2 ;;
esac
