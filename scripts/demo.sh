#!/usr/bin/env bash
# A first look at opennpu: installs packages, builds, exports a seeded ResNet-50 and runs it on
# the CPU reference backend, writing its output as .npy.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
scripts/build.sh release
/usr/bin/python3 scripts/export_models.py --only resnet50
cat <<'TXT'

== opennpu demo ==
models/resnet50.onnx is torchvision's ResNet-50 with seeded random weights, exported by
scripts/export_models.py together with a seeded input (models/resnet50.input.npy) and PyTorch's
own output for it (models/resnet50.torch_out.npy). `opennpu run` imports the ONNX file, runs the
graph passes (constant folding, Conv+BatchNorm folding, dead-code removal) and executes it on the
CPU reference backend, the golden model the simulated NPUs are checked against.

TXT
set -x
build/release/opennpu info models/resnet50.onnx | head -20
build/release/opennpu run models/resnet50.onnx --input input=models/resnet50.input.npy --output-dir out/resnet50
{ set +x; } 2>/dev/null
echo
echo "Compare with PyTorch:"
/usr/bin/python3 tests/models/compare.py out/resnet50/output.npy models/resnet50.torch_out.npy
