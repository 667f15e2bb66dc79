#!/usr/bin/env bash
# Cross-check against ONNX Runtime: runs the same model and input through `opennpu run` and through
# the ORT harness (ORT_DIR/ort-run.js, ONNX Runtime's CPU provider via onnxruntime-node), then
# compares every output file with compare.py.
#   vs_ort.sh OPENNPU ORT_DIR MODELS_DIR NAME INPUT_NAME
# Exit 0 pass, 1 fail, 77 skip (harness dir, node or the exported model missing: never a pass).
set -euo pipefail
opennpu=$1 ort=$2 models=$3 name=$4 input=$5
here="$(cd "$(dirname "$0")" && pwd)"
if [[ ! -f $ort/ort-run.js ]]; then
  echo "SKIP: ONNX Runtime harness not found at $ort (expected ../shared/tools/ort next to the checkout)"
  exit 77
fi
if ! command -v node >/dev/null; then
  echo "SKIP: node is not installed (needed by the ONNX Runtime harness)"
  exit 77
fi
for f in "$models/$name.onnx" "$models/$name.input.npy"; do
  if [[ ! -f $f ]]; then
    echo "SKIP: $f is missing; export the models first: /usr/bin/python3 scripts/export_models.py"
    exit 77
  fi
done
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
# setup.sh is idempotent (~30 ms once installed); it installs onnxruntime-node from npm the first time.
if ! bash "$ort/setup.sh" >"$tmp/setup.log" 2>&1; then
  cat "$tmp/setup.log"
  echo "FAIL: the ONNX Runtime harness could not be set up"
  exit 1
fi
node "$ort/ort-run.js" "$models/$name.onnx" --input "$input=$models/$name.input.npy" --output-dir "$tmp/ort" --quiet
"$opennpu" run "$models/$name.onnx" --input "$input=$models/$name.input.npy" --output-dir "$tmp/npu" --threads 2
rc=0 n=0
for ref in "$tmp"/ort/*.npy; do
  out="$tmp/npu/$(basename "$ref")"
  echo -n "$(basename "$ref" .npy) vs ONNX Runtime: "
  if [[ ! -f $out ]]; then echo "FAIL: opennpu wrote no $(basename "$ref")"; rc=1; continue; fi
  /usr/bin/python3 "$here/compare.py" "$out" "$ref" || rc=1
  n=$((n + 1))
done
if ((n == 0)); then echo "FAIL: ONNX Runtime produced no outputs"; exit 1; fi
exit $rc
