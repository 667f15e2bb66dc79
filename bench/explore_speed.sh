#!/usr/bin/env bash
# bench/explore_speed.sh — design points per second of `opennpu explore` on the built-in example
# sweep (examples/sweep_ane.toml: 252 designs x resnet50, mobilenet_v2, bert_base, timing-only).
# Runs into a fresh output directory (so nothing is resumed) and prints the CLI's JSON summary
# line: rows, seconds, points/s, compilations.
#   bench/explore_speed.sh [BUILD_DIR=build/release] [JOBS=2]
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build/release}
jobs=${2:-2}
for m in resnet50 mobilenet_v2 bert_base; do
  [[ -f models/$m.onnx ]] || { echo "models/$m.onnx missing: run /usr/bin/python3 scripts/export_models.py" >&2; exit 1; }
done
out=$(mktemp -d /tmp/opennpu-explore-bench.XXXXXX)
trap 'rm -rf "$out"' EXIT
start=$(date +%s.%N)
"$build/opennpu" explore examples/sweep_ane.toml --out "$out" --jobs "$jobs" --json > "$out/summary.out"
end=$(date +%s.%N)
/usr/bin/python3 - "$out/summary.out" "$start" "$end" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
wall = float(sys.argv[3]) - float(sys.argv[2])
print(f"explore_speed: {r['points']} design points x {len(r['models'])} models = {r['rows']} rows, "
      f"jobs {r['jobs']}, {r['compiles']} compilations")
print(f"explore_speed: simulation {r['seconds']:.1f} s, whole command {wall:.1f} s "
      f"(incl. model import and result files): {r['points'] / wall:.2f} design points/s "
      f"({r['points_per_second']:.2f} points/s over the simulation alone)")
PY
