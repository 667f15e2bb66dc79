// cpu/fast/matmul.h — a float32 matrix product with a constant, pre-packed weight (matmul.cpp):
// Y[rows, N] = act(A[rows, K] * alpha * W[K, N] + bias[N]), W a float32 tensor [K, N] or, with
// trans, [N, K]. The packed weight is shared between all users of the same weight buffer (and
// holds a reference to that buffer).
#pragma once
#include <cstdint>
#include <memory>
#include <string>

#include "opennpu/tensor.h"

namespace opennpu::cpu {

enum class Activation { None, Relu, Gelu };  // Gelu = x * 0.5 * (1 + erf(x / sqrt(2)))
struct Epilogue {
  Activation act = Activation::None;
};

class PackedMatMul {
 public:
  // nullptr (and *why) when oneDNN cannot run this shape. m_hint: the typical row count.
  static std::unique_ptr<PackedMatMul> create(const Tensor& W, bool trans, float alpha, const float* bias, Epilogue epi,
                                              int64_t m_hint, std::string* why);
  ~PackedMatMul();
  // a: [rows, K] contiguous; y: [rows, N] contiguous (every element written). Uses up to
  // num_threads() threads (one when called inside a parallel region). Thread-safe.
  void run(const float* a, int64_t rows, float* y) const;
  int64_t K() const;
  int64_t N() const;
  size_t packed_bytes() const;
  // True when few rows were declared and the product runs as an AVX-512 matrix-vector product
  // (matmul.cpp); more rows at run time still take oneDNN.
  bool gemv() const;

 private:
  PackedMatMul();
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace opennpu::cpu
