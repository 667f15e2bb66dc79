#include "cpu/fast/fast.h"

#include <cpuid.h>
#include <algorithm>
#include <cstring>
#include <fmt/format.h>

#include "cpu/fast/conv.h"
#include "cpu/fast/quant.h"

namespace opennpu::cpu {

const CpuFeatures& cpu_features() {
  static const CpuFeatures f = [] {
    CpuFeatures c;
    __builtin_cpu_init();
    c.avx2 = __builtin_cpu_supports("avx2");
    c.fma = __builtin_cpu_supports("fma");
    // CPUID leaf 1, ECX bit 29: clang 14's __builtin_cpu_supports does not know "f16c".
    unsigned eax = 0, ebx = 0, ecx = 0, edx = 0;
    c.f16c = __get_cpuid(1, &eax, &ebx, &ecx, &edx) && (ecx & bit_F16C);
    c.avx512f = __builtin_cpu_supports("avx512f");
    c.avx512bw = __builtin_cpu_supports("avx512bw");
    c.avx512vl = __builtin_cpu_supports("avx512vl");
    c.avx512vnni = __builtin_cpu_supports("avx512vnni");
    c.avx512bf16 = __builtin_cpu_supports("avx512bf16");
    return c;
  }();
  return f;
}

const Tensor* PrepareContext::constant(size_t i) const {
  if (i >= node_.inputs.size() || node_.inputs[i].empty()) return nullptr;
  auto it = graph_.initializers.find(node_.inputs[i]);
  return it == graph_.initializers.end() ? nullptr : &it->second;
}

const ir::ValueInfo* PrepareContext::input_info(size_t i) const {
  if (i >= node_.inputs.size() || node_.inputs[i].empty()) return nullptr;
  const std::string& n = node_.inputs[i];
  for (const auto& in : graph_.inputs)
    if (in.name == n) return &in;
  return graph_.find_value_info(n);
}

const ir::ValueInfo* PrepareContext::output_info(size_t i) const {
  if (i >= node_.outputs.size() || node_.outputs[i].empty()) return nullptr;
  const std::string& n = node_.outputs[i];
  for (const auto& o : graph_.outputs)
    if (o.name == n) return &o;
  return graph_.find_value_info(n);
}

std::unique_ptr<PreparedKernel> FastRegistry::prepare(const PrepareContext& pc, std::string* why) const {
  const ir::Node& n = pc.node();
  const std::string dom = n.domain == "ai.onnx" ? "" : n.domain;
  for (const auto& d : defs_) {
    if (d.op != n.op_type || d.domain != dom) continue;
    std::string reason;
    auto k = d.prepare(pc, &reason);
    if (k) return k;
    if (why) *why += fmt::format("{}{}: {}", why->empty() ? "" : "; ", d.name, reason.empty() ? "declined" : reason);
  }
  return nullptr;
}

const KernelDef* reference_of(const PrepareContext& pc) {
  const ir::Node& n = pc.node();
  return registry().find(n.domain == "ai.onnx" ? "" : n.domain, n.op_type, pc.opset());
}

bool is_reference_impl(const char* impl) { return impl && std::strncmp(impl, "ref", 3) == 0; }

bool spatial(const std::string& auto_pad, int64_t in, int64_t k, int64_t s, int64_t d, int64_t& pb, int64_t& pe,
             int64_t& out) {
  const int64_t ek = (k - 1) * d + 1;
  if (auto_pad == "SAME_UPPER" || auto_pad == "SAME_LOWER") {
    out = (in + s - 1) / s;
    const int64_t total = std::max<int64_t>(0, (out - 1) * s + ek - in);
    const int64_t small = total / 2, big = total - small;
    pb = auto_pad == "SAME_UPPER" ? small : big;
    pe = total - pb;
  } else {
    if (auto_pad == "VALID") pb = pe = 0;
    else if (auto_pad != "NOTSET") return false;
    if (in + pb + pe < ek) return false;
    out = (in + pb + pe - ek) / s + 1;
  }
  return out >= 1;
}

const FastRegistry& fast_registry() {
  static const FastRegistry r = [] {
    FastRegistry reg;
    register_fast_conv(reg);
    register_fast_conv_dw(reg);
    register_fast_matmul(reg);
    register_fast_rnn(reg);
    register_fast_transformer(reg);
    register_fast_elementwise(reg);
    register_fast_quant(reg);
    return reg;
  }();
  return r;
}

}  // namespace opennpu::cpu
