#!/usr/bin/env bash
# Installs every Debian package opennpu's build and tests need (Debian 12). Idempotent: when all
# are installed it only runs dpkg-query and returns in well under a second; apt-get update runs
# only when something is missing. Nothing is downloaded from anywhere but Debian's archive
# (the ONNX Runtime cross-check installs its own npm package on first use).
set -euo pipefail

packages=(
  # toolchain
  build-essential cmake ninja-build ccache pkg-config
  # ONNX + protobuf
  libonnx-dev python3-onnx libonnx-testdata libprotobuf-dev protobuf-compiler
  # math backends
  libdnnl-dev libeigen3-dev libopenblas-dev
  # C++ libraries
  libcli11-dev libfmt-dev libspdlog-dev nlohmann-json3-dev libtomlplusplus-dev libflatbuffers-dev flatbuffers-compiler
  # tests and benchmarks
  libgtest-dev libgmock-dev libbenchmark-dev
  # sanitizer builds and libFuzzer (scripts/sanitize.sh): clang, its runtimes, OpenMP, symbolizer
  clang-14 libclang-rt-14-dev libomp-14-dev llvm-14
  # Python: bindings, model export (torch/torchvision), comparisons
  pybind11-dev python3-pybind11 python3-dev python3-numpy python3-torch python3-torchvision
  # headless browser for screenshots of the HTML reports
  chromium
  # design-space exploration: Dask cluster entry point and plots (docs/explore.md)
  python3-dask python3-distributed python3-matplotlib
)
# node/npm run the ONNX Runtime reference harness. A node installed some other way (e.g. NodeSource)
# is kept: Debian's nodejs package would conflict with it.
if ! command -v node >/dev/null 2>&1; then
  packages+=(nodejs npm)
fi

# One dpkg-query for all of them (it lists the installed ones; unknown names go to stderr).
declare -A installed=()
while read -r pkg status; do
  if [[ $status == ii ]]; then installed[$pkg]=1; fi
done < <(dpkg-query -W -f='${Package} ${db:Status-Abbrev}\n' "${packages[@]}" 2>/dev/null || true)
missing=()
for p in "${packages[@]}"; do
  [[ -n ${installed[$p]:-} ]] || missing+=("$p")
done

if ((${#missing[@]} == 0)); then
  echo "setup: all ${#packages[@]} packages are installed"
  exit 0
fi

sudo=()
if ((EUID != 0)); then sudo=(sudo); fi
echo "setup: installing ${#missing[@]} missing packages: ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
"${sudo[@]}" apt-get update -q
"${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}"
echo "setup: done"
