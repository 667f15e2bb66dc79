// tests/npu/npu_test_util.h — helpers shared by the NPU value and timing tests: building small
// ir::Model graphs in code (static shapes, so the compiler takes every node), running them on the
// functional simulator, generating awkward FP16 inputs and comparing results bit for bit.
#pragma once
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <map>
#include <random>
#include <string>
#include <vector>

#include <fmt/format.h>

#include "core/half.h"
#include "cpu/kernel.h"
#include "ir/graph.h"
#include "npu/arch/hardware.h"
#include "npu/compiler/compiler.h"
#include "npu/sim/simulator.h"

namespace npt {

using namespace opennpu;

inline int64_t numel(const Shape& s) {
  int64_t n = 1;
  for (auto d : s) n *= d;
  return n;
}

inline ir::ValueInfo value_info(const std::string& name, const Shape& shape, DType dt = DType::Float32) {
  ir::ValueInfo v;
  v.name = name;
  v.dtype = dt;
  v.has_shape = true;  // rank-0 is a static scalar
  for (int64_t d : shape) v.dims.push_back(ir::Dim{d, ""});
  return v;
}

inline ir::Attribute attr_i(int64_t v) { ir::Attribute a; a.kind = ir::Attribute::Kind::Int; a.i = v; return a; }
inline ir::Attribute attr_f(float v) { ir::Attribute a; a.kind = ir::Attribute::Kind::Float; a.f = v; return a; }
inline ir::Attribute attr_s(const std::string& v) { ir::Attribute a; a.kind = ir::Attribute::Kind::String; a.s = v; return a; }
inline ir::Attribute attr_ints(std::vector<int64_t> v) {
  ir::Attribute a; a.kind = ir::Attribute::Kind::Ints; a.ints = std::move(v); return a;
}

// A graph under construction. Every value gets a static type: inputs/outputs as graph
// inputs/outputs, intermediates in value_info, constants as initializers.
struct Net {
  ir::Model m;
  explicit Net(int64_t opset = 17) {
    m.opsets[""] = opset;
    m.ir_version = 8;
    m.graph.name = "npu_test";
  }
  void input(const std::string& n, const Shape& s) { m.graph.inputs.push_back(value_info(n, s)); }
  void output(const std::string& n, const Shape& s) { m.graph.outputs.push_back(value_info(n, s)); }
  void value(const std::string& n, const Shape& s) { m.graph.value_info[n] = value_info(n, s); }
  void init(const std::string& n, const Tensor& t) { m.graph.initializers[n] = t; }
  ir::Node& node(const std::string& op, std::vector<std::string> ins, std::vector<std::string> outs) {
    ir::Node n;
    n.name = fmt::format("{}_{}", op, m.graph.nodes.size());
    n.op_type = op;
    n.inputs = std::move(ins);
    n.outputs = std::move(outs);
    m.graph.nodes.push_back(std::move(n));
    return m.graph.nodes.back();
  }
};

inline Tensor tensor(const Shape& s, const std::vector<float>& v) {
  Tensor t(DType::Float32, s);
  for (int64_t i = 0; i < t.numel(); ++i) t.data<float>()[i] = v.at(static_cast<size_t>(i));
  return t;
}

inline std::vector<float> values(const Tensor& t) {
  std::vector<float> v(static_cast<size_t>(t.numel()));
  for (int64_t i = 0; i < t.numel(); ++i) v[i] = static_cast<float>(t.get_f64(i));
  return v;
}

inline std::vector<float> rounded(std::vector<float> v) {
  for (auto& x : v) x = round_f16(x);
  return v;
}

// Mostly ordinary values, with a share of the awkward ones FP16 arithmetic meets: exact zeros of
// both signs, FP16 subnormals, values that round to infinity, and values between FP16 neighbours
// (the NPU rounds them on entry). `positive` keeps everything > 0 (Sqrt, BN variance).
inline std::vector<float> random_values(int64_t n, std::mt19937_64& rng, float scale = 3.f, bool positive = false,
                                        bool awkward = true) {
  std::uniform_real_distribution<float> u(-1.f, 1.f), p(0.f, 1.f);
  std::vector<float> v(static_cast<size_t>(n));
  for (auto& x : v) {
    float r = p(rng);
    if (!awkward || r < 0.9f) x = scale * u(rng);
    else if (r < 0.92f) x = 0.f;
    else if (r < 0.93f) x = -0.f;
    else if (r < 0.96f) x = u(rng) * 6e-5f;      // FP16 subnormal range (< 6.1e-5)
    else if (r < 0.98f) x = u(rng) * 7e4f;       // may overflow to inf when rounded
    else x = u(rng) * 1e3f;
    if (positive) x = std::fabs(x) + (x == 0.f ? 0.5f : 0.f);
  }
  return v;
}

inline bool same_bits(float a, float b) {
  if (std::isnan(a) && std::isnan(b)) return true;
  return f32_bits(a) == f32_bits(b);
}

// Distance in FP16 units in the last place between two FP16 values (inf/nan: huge unless equal).
inline int64_t f16_ulps(float a, float b) {
  if (same_bits(a, b)) return 0;
  if (std::isnan(a) || std::isnan(b)) return 1 << 20;
  auto ord = [](float x) {
    int32_t h = f32_to_f16_bits(x);
    return (h & 0x8000) ? -(h & 0x7FFF) : h;
  };
  return std::abs(ord(a) - ord(b));
}

// Bit-for-bit comparison of two float vectors; reports the first few mismatches.
inline ::testing::AssertionResult bit_equal(const std::vector<float>& got, const std::vector<float>& want,
                                            const std::string& what = "") {
  if (got.size() != want.size())
    return ::testing::AssertionFailure() << what << ": size " << got.size() << " != " << want.size();
  int64_t bad = 0;
  std::string msg;
  for (size_t i = 0; i < got.size(); ++i)
    if (!same_bits(got[i], want[i])) {
      if (bad < 5) msg += fmt::format("\n  [{}] got {} (0x{:08x}) want {} (0x{:08x})", i, got[i], f32_bits(got[i]), want[i], f32_bits(want[i]));
      ++bad;
    }
  if (!bad) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure() << what << ": " << bad << " of " << got.size() << " elements differ" << msg;
}

inline npu::HardwareConfig preset(const std::string& name) { return npu::HardwareConfig::resolve(name); }

// Compiles `m` for `hw`, requires every node on the NPU, runs every segment on the functional
// simulator and returns the graph outputs.
inline std::map<std::string, Tensor> run_npu(const ir::Model& m, const npu::HardwareConfig& hw,
                                             const std::map<std::string, Tensor>& feeds, npu::Program* out_program = nullptr) {
  npu::Program p = npu::compile(m, hw);
  for (const auto& pl : p.placements)
    if (!pl.npu) throw Error(fmt::format("node {} ({}) not on the NPU of {}: {}", pl.node, pl.op, hw.name, pl.reason));
  npu::ValueMap vals;
  for (const auto& [k, v] : m.graph.initializers) vals[k] = v;
  for (const auto& [k, v] : feeds) vals[k] = v;
  for (const auto& s : p.segments) {
    if (!s.npu) throw Error("unexpected CPU segment");
    npu::run_segment(p, s, hw, vals);
  }
  std::map<std::string, Tensor> out;
  for (const auto& o : m.graph.outputs) out[o.name] = vals.at(o.name);
  if (out_program) *out_program = std::move(p);
  return out;
}

// Runs the CPU reference kernel of node `n` (opset `opset`) on the given inputs.
inline std::vector<Tensor> run_cpu_kernel(const ir::Node& n, const std::vector<const Tensor*>& ins, int64_t opset) {
  const cpu::KernelDef* k = cpu::registry().find(n.domain, n.op_type, opset);
  if (!k) throw Error("no CPU kernel for " + n.op_type + ": " + cpu::registry().why_not(n.domain, n.op_type, opset));
  cpu::KernelContext ctx(n, ins, opset, [](const ir::Graph&, const std::vector<Tensor>&) -> std::vector<Tensor> {
    throw Error("no subgraphs here");
  });
  k->fn(ctx);
  return ctx.outputs();
}

}  // namespace npt
