// cpu/fast/onednn_util.h — what the oneDNN-based fast kernels (conv.cpp, conv_dw.cpp, matmul.cpp,
// quant.cpp) share: the CPU engine, a per-thread stream and scratchpad, and aligned work buffers. Primitives run with a user scratchpad so that
// one primitive may execute on several threads at once; a thread runs one primitive at a time, so
// one scratchpad per thread serves every kernel.
#pragma once
#include <dnnl.hpp>

#include <cstddef>
#include <cstdlib>
#include <new>
#include <string>
#include <vector>

namespace opennpu::cpu::onednn {

inline dnnl::engine& engine() {
  static dnnl::engine e(dnnl::engine::kind::cpu, 0);
  return e;
}

struct ThreadState {
  dnnl::stream stream{engine()};
  std::vector<char> scratch;
  char* scratchpad(size_t n) {
    if (scratch.size() < n) scratch.resize(n);
    return scratch.data();
  }
};
// The post-ops of a fused conv: the residual sum (the output starts as Z), then the activation
// (FusedConv's: "" | Relu | LeakyRelu(alpha) | Clip(alpha, beta) | Sigmoid | Tanh).
inline dnnl::post_ops conv_post_ops(const std::string& act, float alpha, float beta, bool sum) {
  dnnl::post_ops po;
  if (sum) po.append_sum(1.f);
  if (act == "Relu") po.append_eltwise(1.f, dnnl::algorithm::eltwise_relu, 0.f, 0.f);
  else if (act == "LeakyRelu") po.append_eltwise(1.f, dnnl::algorithm::eltwise_relu, alpha, 0.f);
  else if (act == "Clip") po.append_eltwise(1.f, dnnl::algorithm::eltwise_clip, alpha, beta);
  else if (act == "Sigmoid") po.append_eltwise(1.f, dnnl::algorithm::eltwise_logistic, 0.f, 0.f);
  else if (act == "Tanh") po.append_eltwise(1.f, dnnl::algorithm::eltwise_tanh, 0.f, 0.f);
  return po;
}

inline ThreadState& thread_state() {
  static thread_local ThreadState s;
  return s;
}

// A grow-only 64-byte-aligned buffer for a kernel's per-thread work tensors (oneDNN's kernels are
// markedly slower on less aligned rows), so the steady state does not allocate. Growing does not
// keep the old contents.
class AlignedBuffer {
 public:
  AlignedBuffer() = default;
  AlignedBuffer(const AlignedBuffer&) = delete;
  AlignedBuffer& operator=(const AlignedBuffer&) = delete;
  ~AlignedBuffer() { std::free(p_); }
  char* get(size_t bytes) {
    if (bytes > cap_) {
      std::free(p_);
      p_ = nullptr;
      cap_ = (bytes + 63) / 64 * 64;
      p_ = static_cast<char*>(std::aligned_alloc(64, cap_));
      if (!p_) {
        cap_ = 0;
        throw std::bad_alloc();
      }
    }
    return p_;
  }

 private:
  char* p_ = nullptr;
  size_t cap_ = 0;
};

}  // namespace opennpu::cpu::onednn
