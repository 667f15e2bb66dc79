#!/usr/bin/env bash
# A first look at opennpu: installs packages, builds, exports a seeded ResNet-50, runs it on the
# CPU reference backend (checked against PyTorch), then compares the CPU with a simulated Apple
# M1-class Neural Engine.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
scripts/build.sh release
/usr/bin/python3 scripts/export_models.py --only resnet50
npu=build/release/opennpu
model=models/resnet50.onnx
cat <<'TXT'

== 1. Run on the CPU ==
models/resnet50.onnx is torchvision's ResNet-50 with seeded random weights, exported by
scripts/export_models.py with a seeded input (models/resnet50.input.npy) and PyTorch's own output
for it (models/resnet50.torch_out.npy). `opennpu run` imports the ONNX file, runs the graph passes
(constant folding, Conv+BatchNorm folding, dead-code removal) and executes it on the CPU reference
backend: the golden model the simulated NPUs are checked against.
TXT
set -x
"$npu" run "$model" --input input=models/resnet50.input.npy --output-dir out/resnet50
{ set +x; } 2>/dev/null
echo "Compared with PyTorch:"
/usr/bin/python3 tests/models/compare.py out/resnet50/output.npy models/resnet50.torch_out.npy

cat <<'TXT'

== 2. CPU (measured) vs NPU (simulated) ==
`opennpu bench` compiles the model for a Neural Engine modelled on Apple's M1 (hw/ane_m1.toml:
16 cores, FP16 MAC arrays, local SRAM, DRAM bandwidth), simulates its time and energy, and times
the CPU backend on this machine. `opennpu plan` shows where each node runs and why.
TXT
set -x
"$npu" bench "$model" --hw ane_m1 --input input=models/resnet50.input.npy --runs 5 --warmup 1
{ set +x; } 2>/dev/null
echo
echo "More: $npu hw list | $npu plan $model --hw ane_a17pro | $npu run $model --hw ane_m1 ..."
