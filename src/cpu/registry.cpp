// The kernel registry: the list of kernel files that make up the CPU backend.
#include <algorithm>

#include "cpu/kernel.h"
#include "cpu/fast/conv.h"  // register_conv_fused

#include <cstring>
#include <limits>

#include "core/buffer_pool.h"

namespace opennpu::cpu {

const Tensor& KernelContext::input(size_t i) const {
  if (!has_input(i)) fail("required input {} is missing", i);
  return *inputs_[i];
}

Tensor& KernelContext::alloc_output(size_t i, DType dtype, Shape shape, Init init) {
  if (i >= outputs_.size()) fail("produces output {} but the node declares only {}", i, outputs_.size());
  if (!pool_ || dtype == DType::String || dtype == DType::Undefined) {
    outputs_[i] = Tensor(dtype, std::move(shape));  // zeroed
    return outputs_[i];
  }
  int64_t n = 1;
  bool plain = true;  // no negative dim, no int64 overflow (else checked_numel throws, naming the node)
  for (int64_t d : shape) {
    if (d < 0 || (d != 0 && n > std::numeric_limits<int64_t>::max() / d)) plain = false;
    else n *= d;
  }
  if (!plain) n = checked_numel(shape, node_.where());
  const size_t es = dtype_size(dtype);
  if (es != 0 && static_cast<uint64_t>(n) > max_tensor_bytes() / es)
    fail("output {} of shape {} exceeds the memory limit of {} bytes (--max-memory)", i, shape_str(shape), max_tensor_bytes());
  const size_t bytes = static_cast<size_t>(n) * es;
  outputs_[i] = Tensor::adopt(dtype, std::move(shape), pool_->get(bytes), bytes);
  if (init == Init::Zero && bytes) std::memset(outputs_[i].raw(), 0, bytes);
  return outputs_[i];
}

Tensor& KernelContext::reuse_input_as_output(size_t i, size_t o, Shape shape) {
  if (!input_reusable(i)) fail("input {} cannot be reused in place", i);
  if (o >= outputs_.size()) fail("produces output {} but the node declares only {}", o, outputs_.size());
  outputs_[o] = inputs_[i]->reshaped(std::move(shape));
  reusable_[i] = false;
  return outputs_[o];
}

void KernelContext::set_output(size_t i, Tensor t) {
  if (i >= outputs_.size()) fail("produces output {} but the node declares only {}", i, outputs_.size());
  outputs_[i] = std::move(t);
}

const KernelDef* Registry::find(const std::string& domain, const std::string& op, int64_t opset) const {
  for (const auto& d : defs_)
    if (d.op == op && d.domain == domain && opset >= d.since && opset <= d.until) return &d;
  return nullptr;
}

std::string Registry::why_not(const std::string& domain, const std::string& op, int64_t opset) const {
  std::string ranges;
  for (const auto& d : defs_)
    if (d.op == op && d.domain == domain) ranges += fmt::format("{}{}-{}", ranges.empty() ? "" : ", ", d.since, d.until);
  std::string dom = domain.empty() ? "ai.onnx" : domain;
  if (ranges.empty()) return fmt::format("op {} of domain '{}' is not supported by the CPU backend", op, dom);
  return fmt::format("op {} at opset {} of domain '{}' is not supported (supported opsets: {})", op, opset, dom, ranges);
}

void register_fused_transformer(Registry& r);  // cpu/fast/transformer.cpp: opennpu.cpu fused ops

const Registry& registry() {
  static const Registry r = [] {
    Registry reg;
    register_elementwise(reg);
    register_math(reg);
    register_nn(reg);
    register_pool(reg);
    register_reduce(reg);
    register_loss(reg);
    register_tensor_ops(reg);
    register_indexing(reg);
    register_rnn(reg);
    register_control_flow(reg);
    register_sequence(reg);
    register_quant(reg);
    register_quant_gemm(reg);  // com.microsoft QGemm (kernels/quant_gemm.cpp)
    register_misc(reg);
    register_conv_fused(reg);  // opennpu.cpu FusedConv / NHWC pooling (cpu/fast/conv_fuse.cpp)
    register_conv_dw_fused(reg);  // opennpu.cpu FusedConvDw (cpu/fast/conv_dw.cpp)
    register_fused_transformer(reg);
    return reg;
  }();
  return r;
}

}  // namespace opennpu::cpu
