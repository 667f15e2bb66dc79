// cpu/kernels/float_staging.h — float16/bfloat16 staging for the GEMM-based kernels (math.cpp,
// nn.cpp). Those kernels compute in a "compute type" Tc: double for float64 tensors, float for
// float32/float16/bfloat16. widen() gives a Tc view of an input (borrowed when it already holds Tc,
// converted otherwise); OutBuf gives a Tc buffer for an output and rounds it into the tensor's
// dtype once at the end (round-to-nearest-even), so a half-precision result differs from the
// float32 computation only by that final rounding.
#pragma once
#include <initializer_list>
#include <string>
#include <type_traits>
#include <vector>

#include "cpu/gemm.h"
#include "cpu/util.h"

namespace opennpu::cpu {

template <class Tc> constexpr DType dtype_of_compute() {
  return std::is_same_v<Tc, double> ? DType::Float64 : DType::Float32;
}

// Tc view of a floating-point tensor; `tmp` holds the converted copy when one is needed.
template <class Tc>
const Tc* widen(const Tensor& t, std::vector<Tc>& tmp) {
  if (t.dtype() == dtype_of_compute<Tc>()) return t.data<Tc>();
  tmp.resize(static_cast<size_t>(t.numel()));
  dispatch_float(t.dtype(), [&](auto tag) {
    using T = typename decltype(tag)::type;
    const T* s = t.data<T>();
    for (int64_t i = 0; i < t.numel(); ++i) tmp[i] = static_cast<Tc>(static_cast<compute_t<T>>(s[i]));
  }, "widen");
  return tmp.data();
}

// A Tc buffer for writing output tensor `t`; commit() converts it into t when t's dtype differs.
template <class Tc>
class OutBuf {
 public:
  explicit OutBuf(Tensor& t) : t_(t), native_(t.dtype() == dtype_of_compute<Tc>()) {
    if (native_) {
      p_ = t.data<Tc>();
    } else {
      tmp_.assign(static_cast<size_t>(t.numel()), Tc(0));
      p_ = tmp_.data();
    }
  }
  Tc* data() { return p_; }
  void commit() {
    if (native_) return;
    dispatch_float(t_.dtype(), [&](auto tag) {
      using T = typename decltype(tag)::type;
      T* d = t_.data<T>();
      for (int64_t i = 0; i < t_.numel(); ++i) d[i] = T(static_cast<compute_t<T>>(tmp_[i]));
    }, "OutBuf");
  }

 private:
  Tensor& t_;
  bool native_;
  Tc* p_ = nullptr;
  std::vector<Tc> tmp_;
};

// Calls f(Tag<Tc>{}) with the compute type for a floating-point dtype.
template <class F>
void dispatch_compute(DType t, F&& f, const char* who) {
  switch (t) {
    case DType::Float64: f(Tag<double>{}); break;
    case DType::Float32: case DType::Float16: case DType::BFloat16: f(Tag<float>{}); break;
    default: throw Error(fmt::format("{}: expected a floating-point tensor, got {}", who, dtype_name(t)));
  }
}

}  // namespace opennpu::cpu

namespace opennpu::cpu {

// sgemm/dgemm under one name, so kernels templated on the compute type call gemm().
inline void gemm(bool ta, bool tb, int64_t M, int64_t N, int64_t K, float alpha, const float* A, int64_t lda,
                 const float* B, int64_t ldb, float beta, float* C, int64_t ldc) {
  sgemm(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
}
inline void gemm(bool ta, bool tb, int64_t M, int64_t N, int64_t K, double alpha, const double* A, int64_t lda,
                 const double* B, int64_t ldb, double beta, double* C, int64_t ldc) {
  dgemm(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
}

// Fails unless t's dtype is one of `ok` (the op's type constraint at this opset).
inline void check_dtype_in(const KernelContext& ctx, const Tensor& t, std::initializer_list<DType> ok,
                           const char* what) {
  std::string names;
  for (DType d : ok) {
    if (t.dtype() == d) return;
    names += fmt::format("{}{}", names.empty() ? "" : ", ", dtype_name(d));
  }
  ctx.fail("{} has dtype {}; at opset {} this op takes {}", what, dtype_name(t.dtype()), ctx.opset(), names);
}

}  // namespace opennpu::cpu
