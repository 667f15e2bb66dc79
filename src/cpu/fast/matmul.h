// cpu/fast/matmul.h — a float32 matrix product with a constant, pre-packed weight (matmul.cpp):
// Y[rows, N] = act(A[rows, K] * alpha * W[K, N] + bias[N]), W given row-major [K, N] or, with
// trans, [N, K]. The packed weight is shared between all users of the same weight buffer.
#pragma once
#include <cstdint>
#include <memory>
#include <string>

namespace opennpu::cpu {

enum class Activation { None, Relu, Gelu };  // Gelu = x * 0.5 * (1 + erf(x / sqrt(2)))
struct Epilogue {
  Activation act = Activation::None;
};

class PackedMatMul {
 public:
  // nullptr (and *why) when oneDNN cannot run this shape. m_hint: the typical row count.
  static std::unique_ptr<PackedMatMul> create(const float* w, int64_t K, int64_t N, bool trans, float alpha,
                                              const float* bias, Epilogue epi, int64_t m_hint, std::string* why);
  ~PackedMatMul();
  // a: [rows, K] contiguous; y: [rows, N] contiguous (every element written). Uses up to
  // num_threads() threads (one when called inside a parallel region). Thread-safe.
  void run(const float* a, int64_t rows, float* y) const;
  int64_t K() const;
  int64_t N() const;
  size_t packed_bytes() const;

 private:
  PackedMatMul();
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace opennpu::cpu
