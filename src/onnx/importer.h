// onnx/importer.h — ONNX protobuf -> ir::Model, treating the file as untrusted.
// Every length, offset, dim and index is checked before use; external data must resolve to a
// regular file inside the model's directory (no absolute paths, no "..", no links out); nesting
// depth and tensor sizes are bounded. The result is topologically sorted and validated; shape
// information present in the file (value_info) is kept.
#pragma once
#include <map>
#include <string>

#include "ir/graph.h"

namespace opennpu::onnx_import {

struct ImportOptions {
  int max_subgraph_depth = 64;
  std::map<std::string, int64_t> dims;  // --dim NAME=VALUE: binds symbolic input dims
  bool infer_shapes = true;             // fill value_info with ONNX's shape inference
};

ir::Model load_model(const std::string& path, const ImportOptions& opts = {});
// Parses a model from bytes; external data is resolved relative to base_dir.
ir::Model parse_model(const std::string& bytes, const std::string& base_dir, const std::string& what,
                      const ImportOptions& opts = {});
// Parses a serialized TensorProto (the test-data .pb files).
Tensor load_tensor_pb(const std::string& path);
// Parses a serialized TensorProto, SequenceProto or OptionalProto according to `kind`
// ("tensor", "sequence", "optional", "optional_sequence"; see ir::ValueInfo::kind).
Tensor load_value_pb(const std::string& path, const std::string& kind);

// The ai.onnx opset range this build accepts.
constexpr int kMinOpset = 1;
constexpr int kMaxOpset = 17;

}  // namespace opennpu::onnx_import
