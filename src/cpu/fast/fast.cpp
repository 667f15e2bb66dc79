#include "cpu/fast/fast.h"

#include <cpuid.h>
#include <fmt/format.h>

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

const FastRegistry& fast_registry() {
  static const FastRegistry r = [] {
    FastRegistry reg;
    register_fast_conv(reg);
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
