// Small makers for hand-built test graphs (ir::ValueInfo, ir::Node), shared by the CPU tests.
#pragma once

#include <string>
#include <utility>
#include <vector>

#include "ir/graph.h"

namespace opennpu::test_graph {

// A graph input/output with a fully static shape.
inline ir::ValueInfo vi(const std::string& name, DType dtype, const Shape& shape) {
  ir::ValueInfo v;
  v.name = name;
  v.dtype = dtype;
  v.has_shape = true;
  for (int64_t d : shape) v.dims.push_back(ir::Dim{d, ""});
  return v;
}
inline ir::ValueInfo vi(const std::string& name, const Shape& shape) { return vi(name, DType::Float32, shape); }

// A node named "<op>_<first output>".
inline ir::Node node(const std::string& op, std::vector<std::string> in, std::vector<std::string> out) {
  ir::Node n;
  n.name = op + "_" + out[0];
  n.op_type = op;
  n.inputs = std::move(in);
  n.outputs = std::move(out);
  return n;
}

}  // namespace opennpu::test_graph
