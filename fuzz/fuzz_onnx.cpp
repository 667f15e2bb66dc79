// fuzz/fuzz_onnx.cpp — ONNX model bytes through import: protobuf parse, opset checks, external-data
// resolution (inside an empty directory), ONNX shape inference, conversion, validation and
// topological sort. (The cache's wire-format walk over model bytes is fuzzed by fuzz_cache, mode 4.)
#include <cstddef>
#include <cstdint>
#include <string>

#include "fuzz_util.h"
#include "onnx/importer.h"
#include "opennpu/errors.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string bytes(reinterpret_cast<const char*>(data), size);
  const std::string& dir = opennpu::fuzz::empty_dir();
  try {
    opennpu::ir::Model m = opennpu::onnx_import::parse_model(bytes, dir, "fuzz.onnx");
    (void)m;
  } catch (const opennpu::Error&) {
  }
  return 0;
}
