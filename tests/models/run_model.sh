#!/usr/bin/env bash
# Real-model test: runs `opennpu run` on models/NAME.onnx with its seeded input and compares the
# output with PyTorch's own (models/NAME.torch_out.npy) using compare.py.
#   run_model.sh OPENNPU MODELS_DIR NAME INPUT_NAME
# Exit 0 pass, 1 fail, 77 skip (the models have not been exported: run scripts/export_models.py).
set -euo pipefail
opennpu=$1 models=$2 name=$3 input=$4
here="$(cd "$(dirname "$0")" && pwd)"
for f in "$models/$name.onnx" "$models/$name.input.npy" "$models/$name.torch_out.npy"; do
  if [[ ! -f $f ]]; then
    echo "SKIP: $f is missing; export the models first: /usr/bin/python3 scripts/export_models.py"
    exit 77
  fi
done
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
start=$EPOCHREALTIME
"$opennpu" run "$models/$name.onnx" --input "$input=$models/$name.input.npy" --output-dir "$tmp" --threads 2
awk -v a="$start" -v b="$EPOCHREALTIME" 'BEGIN { printf "opennpu run took %.2f s\n", b - a }'
exec /usr/bin/python3 "$here/compare.py" "$tmp/output.npy" "$models/$name.torch_out.npy"
