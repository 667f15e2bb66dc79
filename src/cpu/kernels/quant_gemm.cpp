// cpu/kernels/quant_gemm.cpp — com.microsoft QGemm (ONNX Runtime's contrib op), the reference
// kernel the NPU's int8 GEMM is checked against bit for bit. The IR pass fuse_qdq
// (ir/passes_qdq.cpp) produces it from DequantizeLinear -> Gemm -> QuantizeLinear.
//
//   inputs  A (uint8|int8), a_scale (float32 scalar), a_zero_point (A's type, scalar),
//           B (uint8|int8), b_scale (float32 scalar or [N]), b_zero_point (B's type, scalar or [N]),
//           C (optional int32, 1 or N elements), y_scale (float32 scalar), y_zero_point (uint8|int8 scalar)
//   attrs   alpha (default 1), transA, transB (default 0)
//   acc[i,j] = sum_k (A'[i,k] - a_zp) * (B'[k,j] - b_zp[j])   int32, wrapping modulo 2^32
//   y[i,j]   = saturate(round_half_even(float32(acc + C[j]) * mult[j]) + y_zp)
//   mult[j]  = float32(float32(a_s * b_s[j]) / y_s)                       when alpha == 1
//              float32(float32(float32(a_s * b_s[j]) * alpha) / y_s)      otherwise
// i.e. exactly the requantization of QLinearConv/QLinearMatMul (core/quant.h). ONNX Runtime's
// float-output form (no y_scale) is not implemented: it is declined with a message.
#include <cstring>

#include "core/parallel.h"
#include "core/quant.h"
#include "cpu/kernel.h"
#include "cpu/util.h"

namespace opennpu::cpu {
namespace {

bool is_q8(DType t) { return t == DType::UInt8 || t == DType::Int8; }

int32_t q_at(const Tensor& t, int64_t i) {
  return t.dtype() == DType::UInt8 ? static_cast<int32_t>(t.data<uint8_t>()[i])
                                   : static_cast<int32_t>(t.data<int8_t>()[i]);
}

// A float32 scale that is a scalar or has n elements; returns it broadcast to n.
std::vector<float> scales(const KernelContext& ctx, const Tensor& t, int64_t n, const char* what) {
  ctx.check(t.dtype() == DType::Float32, "{} must be float32, got {}", what, dtype_name(t.dtype()));
  ctx.check(t.numel() == 1 || (t.rank() == 1 && t.numel() == n), "{} must be a scalar or have {} elements, got {}",
            what, n, shape_str(t.shape()));
  std::vector<float> v(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) {
    v[i] = t.data<float>()[t.numel() == 1 ? 0 : i];
    ctx.check(std::isfinite(v[i]) && v[i] != 0.0f, "{} must be finite and non-zero, got {}", what, v[i]);
  }
  return v;
}

std::vector<int32_t> zero_points(const KernelContext& ctx, const Tensor& t, DType want, int64_t n, const char* what) {
  ctx.check(t.dtype() == want, "{} must have the type of its tensor ({}), got {}", what, dtype_name(want),
            dtype_name(t.dtype()));
  ctx.check(t.numel() == 1 || (t.rank() == 1 && t.numel() == n), "{} must be a scalar or have {} elements, got {}",
            what, n, shape_str(t.shape()));
  std::vector<int32_t> v(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) v[i] = q_at(t, t.numel() == 1 ? 0 : i);
  return v;
}

void qgemm(KernelContext& ctx) {
  const Tensor& a = ctx.input(0);
  const Tensor& b = ctx.input(3);
  ctx.check(is_q8(a.dtype()) && is_q8(b.dtype()), "A and B must be uint8 or int8, got {} and {}",
            dtype_name(a.dtype()), dtype_name(b.dtype()));
  ctx.check(a.rank() == 2 && b.rank() == 2, "A and B must be 2-D, got {} and {}", shape_str(a.shape()),
            shape_str(b.shape()));
  ctx.check(ctx.has_input(7) && ctx.has_input(8),
            "y_scale and y_zero_point are required (the float-output form of QGemm is not supported)");
  const bool ta = ctx.node().attr_i("transA", 0) != 0, tb = ctx.node().attr_i("transB", 0) != 0;
  const float alpha = ctx.node().attr_f("alpha", 1.0f);
  ctx.check(std::isfinite(alpha), "alpha must be finite, got {}", alpha);
  const int64_t M = ta ? a.dim(1) : a.dim(0), K = ta ? a.dim(0) : a.dim(1);
  const int64_t N = tb ? b.dim(0) : b.dim(1), Kb = tb ? b.dim(1) : b.dim(0);
  ctx.check(K == Kb, "inner dimensions differ: A' is [{},{}] and B' is [{},{}]", M, K, Kb, N);
  const Tensor& y_zp_t = ctx.input(8);
  ctx.check(is_q8(y_zp_t.dtype()) && y_zp_t.numel() == 1, "y_zero_point must be a uint8 or int8 scalar, got {} {}",
            dtype_name(y_zp_t.dtype()), shape_str(y_zp_t.shape()));
  ctx.check(ctx.input(1).numel() == 1 && ctx.input(2).numel() == 1 && ctx.input(7).numel() == 1,
            "a_scale, a_zero_point and y_scale must be scalars (per-tensor)");
  auto a_s = scales(ctx, ctx.input(1), 1, "a_scale");
  auto a_zp = zero_points(ctx, ctx.input(2), a.dtype(), 1, "a_zero_point");
  auto b_s = scales(ctx, ctx.input(4), N, "b_scale");
  auto b_zp = zero_points(ctx, ctx.input(5), b.dtype(), N, "b_zero_point");
  auto y_s = scales(ctx, ctx.input(7), 1, "y_scale");
  const int32_t y_zp = q_at(y_zp_t, 0);
  std::vector<int32_t> bias(static_cast<size_t>(N), 0);
  if (const Tensor* c = ctx.optional_input(6)) {
    ctx.check(c->dtype() == DType::Int32 && (c->numel() == 1 || c->numel() == N) &&
                  (c->rank() <= 1 || (c->rank() == 2 && c->dim(0) == 1)),
              "C must be an int32 tensor of 1 or {} elements ([N] or [1,N]), got {} {}", N, dtype_name(c->dtype()),
              shape_str(c->shape()));
    for (int64_t j = 0; j < N; ++j) bias[j] = c->data<int32_t>()[c->numel() == 1 ? 0 : j];
  }
  std::vector<float> mult(static_cast<size_t>(N));
  for (int64_t j = 0; j < N; ++j) {
    float s = a_s[0] * b_s[j];
    if (alpha != 1.0f) s = s * alpha;
    mult[j] = s / y_s[0];
  }
  Tensor& y = ctx.alloc_output(0, y_zp_t.dtype(), {M, N});  // first: checks the memory limit
  // A' - a_zp as [M,K] and B' - b_zp as [N,K] (rows contiguous along the reduction).
  std::vector<int32_t> aq(static_cast<size_t>(M * K)), bq(static_cast<size_t>(N * K));
  for (int64_t i = 0; i < M; ++i)
    for (int64_t k = 0; k < K; ++k) aq[i * K + k] = q_at(a, ta ? k * M + i : i * K + k) - a_zp[0];
  for (int64_t j = 0; j < N; ++j)
    for (int64_t k = 0; k < K; ++k) bq[j * K + k] = q_at(b, tb ? j * K + k : k * N + j) - b_zp[j];
  const quant::QRange r = quant::qrange(y.dtype());
  parallel_for(M, [&](int64_t beg, int64_t end) {
    for (int64_t i = beg; i < end; ++i)
      for (int64_t j = 0; j < N; ++j) {
        uint32_t sum = 0;  // wraps modulo 2^32 like a hardware accumulator (signed overflow is UB)
        for (int64_t k = 0; k < K; ++k) sum += static_cast<uint32_t>(aq[i * K + k] * bq[j * K + k]);
        int32_t q = quant::requantize(static_cast<int32_t>(sum), bias[j], mult[j], y_zp, r);
        if (y.dtype() == DType::UInt8) y.data<uint8_t>()[i * N + j] = static_cast<uint8_t>(q);
        else y.data<int8_t>()[i * N + j] = static_cast<int8_t>(q);
      }
  });
}

}  // namespace

void register_quant_gemm(Registry& r) {
  r.add({"QGemm", "com.microsoft", 1, 1, "uint8, int8 (per-column B scales) -> uint8, int8", qgemm});
}

}  // namespace opennpu::cpu
