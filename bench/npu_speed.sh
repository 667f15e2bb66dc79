#!/usr/bin/env bash
# NPU compiler/simulator speed on ResNet-50 for ane_m1 (issue: compile <= 1 s, timing-only
# simulation <= 0.2 s, functional + timing <= 3 s with 2 threads). Uses `opennpu bench --json`
# with a disabled compiled-model cache so the compile is real.
#   bench/npu_speed.sh [build/release/opennpu] [MODEL] [HW]
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${1:-build/release/opennpu}
model=${2:-models/resnet50.onnx}
hw=${3:-ane_m1}
OPENNPU_CACHE_DIR=none "$bin" bench "$model" --hw "$hw" --threads 2 --runs 1 --warmup 0 --json |
/usr/bin/python3 -c '
import json, sys
j = json.load(sys.stdin)["npu"]
print("compile                 %9.1f ms   (target <= 1000)" % j["compile_ms"])
print("timing-only simulation  %9.1f ms   (target <= 200)" % j["timing_sim_ms"])
print("functional simulation   %9.1f ms   (target <= 3000, 2 threads)" % j["functional_sim_ms"])
print("simulated cycles        %11d" % j["cycles"])
print("cycles per wall second  timing %.3g, functional %.3g" % (j["timing_sim_cycles_per_second"], j["functional_sim_cycles_per_second"]))
'
