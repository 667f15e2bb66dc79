// Small makers for hand-built test graphs (ir::ValueInfo, ir::Node), shared by the CPU tests.
#pragma once

#include <algorithm>
#include <cmath>
#include <random>
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

// Attribute makers.
inline ir::Attribute ints(std::vector<int64_t> v) {
  ir::Attribute a;
  a.kind = ir::Attribute::Kind::Ints;
  a.ints = std::move(v);
  return a;
}
inline ir::Attribute str(std::string s) {
  ir::Attribute a;
  a.kind = ir::Attribute::Kind::String;
  a.s = std::move(s);
  return a;
}
inline ir::Attribute num(int64_t i) {
  ir::Attribute a;
  a.kind = ir::Attribute::Kind::Int;
  a.i = i;
  return a;
}
inline ir::Attribute flt(float f) {
  ir::Attribute a;
  a.kind = ir::Attribute::Kind::Float;
  a.f = f;
  return a;
}

// A float32 tensor of uniform values in [lo, hi) from a seeded generator.
inline Tensor random_tensor(Shape s, uint32_t seed, float lo = -1.f, float hi = 1.f) {
  Tensor t(DType::Float32, std::move(s));
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> u(lo, hi);
  for (int64_t i = 0; i < t.numel(); ++i) t.data<float>()[i] = u(rng);
  return t;
}

// Max |a - b| relative to max(1, max |b|) for float32 tensors; +inf on a shape or dtype mismatch.
inline double rel_err(const Tensor& a, const Tensor& b) {
  if (a.shape() != b.shape() || a.dtype() != DType::Float32 || b.dtype() != DType::Float32) return INFINITY;
  double scale = 1, err = 0;
  for (int64_t i = 0; i < b.numel(); ++i) scale = std::max(scale, (double)std::fabs(b.data<float>()[i]));
  for (int64_t i = 0; i < b.numel(); ++i)
    err = std::max(err, (double)std::fabs(a.data<float>()[i] - b.data<float>()[i]));
  return err / scale;
}

}  // namespace opennpu::test_graph
