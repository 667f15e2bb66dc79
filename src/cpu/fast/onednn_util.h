// cpu/fast/onednn_util.h — what the oneDNN-based fast kernels (conv.cpp, matmul.cpp) share: the
// CPU engine and a per-thread stream and scratchpad. Primitives run with a user scratchpad so that
// one primitive may execute on several threads at once; a thread runs one primitive at a time, so
// one scratchpad per thread serves every kernel.
#pragma once
#include <dnnl.hpp>

#include <cstddef>
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
inline ThreadState& thread_state() {
  static thread_local ThreadState s;
  return s;
}

}  // namespace opennpu::cpu::onednn
