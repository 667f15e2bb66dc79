// Loss reference kernels: NegativeLogLikelihoodLoss and SoftmaxCrossEntropyLoss (opset 12+).
// Both view the input as [N, C, D] (D = d1*...*dk, 1 for a 2-D input) and the target as [N, D].
// The per-element loss is -input[n, target[n,d], d] * weight[target[n,d]], or 0 where the target
// equals ignore_index. SoftmaxCrossEntropyLoss is the same loss applied to log_softmax(scores)
// over the class axis, which it can also return as its second output.
// Reductions follow the spec and ONNX's reference generators: 'sum' adds the element losses,
// 'mean' divides that sum by the sum of the effective weights (weight[target], or 1 without a
// weight input; 0 for ignored elements), which without weights and ignore_index is the element
// count. Element losses are computed in float (float16/bfloat16) or the input type; reductions
// accumulate in double serially in row-major order, so results do not depend on the thread count.
#include <algorithm>
#include <cmath>
#include <limits>
#include <string>
#include <vector>

#include "core/parallel.h"
#include "cpu/util.h"

namespace opennpu::cpu {
namespace {

enum class Reduction { None, Sum, Mean };

Reduction read_reduction(const KernelContext& ctx) {
  const std::string r = ctx.node().attr_s("reduction", "mean");
  if (r == "none") return Reduction::None;
  if (r == "sum") return Reduction::Sum;
  if (r == "mean") return Reduction::Mean;
  ctx.fail("reduction must be 'none', 'sum' or 'mean', got '{}'", r);
}

// The checked geometry of one loss node: input [N, C, d1..dk], target [N, d1..dk], weight [C].
struct LossShape {
  int64_t n = 0, c = 0, d = 1;  // d = d1*...*dk
  Shape target_shape;
};

LossShape check_shapes(const KernelContext& ctx, const Tensor& x, const Tensor& target, const Tensor* weight) {
  ctx.check(x.rank() >= 2, "input must have shape [N, C] or [N, C, d1, ..., dk], got {}", shape_str(x.shape()));
  ctx.check(target.dtype() == DType::Int32 || target.dtype() == DType::Int64,
            "target must be int32 or int64, got {}", dtype_name(target.dtype()));
  LossShape s;
  s.n = x.dim(0);
  s.c = x.dim(1);
  // Target is the input's shape without the class axis.
  Shape expect{s.n};
  for (int64_t i = 2; i < x.rank(); ++i) {
    expect.push_back(x.dim(i));
    s.d *= x.dim(i);
  }
  ctx.check(target.shape() == expect, "target shape {} does not match input shape {} (expected {})",
            shape_str(target.shape()), shape_str(x.shape()), shape_str(expect));
  s.target_shape = target.shape();
  if (weight) {
    ctx.check(weight->dtype() == x.dtype(), "weight must have the input's type {}, got {}", dtype_name(x.dtype()),
              dtype_name(weight->dtype()));
    ctx.check(weight->rank() == 1 && weight->dim(0) == s.c, "weight must have shape [C] = [{}], got {}", s.c,
              shape_str(weight->shape()));
  }
  return s;
}

// Reads the targets as int64 and checks each one is a class index or ignore_index. Done serially
// before any computation so a bad target is a clear error, never an out-of-bounds read.
std::vector<int64_t> read_targets(const KernelContext& ctx, const Tensor& target, int64_t classes, bool has_ignore,
                                  int64_t ignore_index) {
  std::vector<int64_t> t(static_cast<size_t>(target.numel()));
  for (int64_t i = 0; i < target.numel(); ++i) {
    t[static_cast<size_t>(i)] = target.dtype() == DType::Int32 ? int64_t{target.data<int32_t>()[i]}
                                                                : target.data<int64_t>()[i];
  }
  for (size_t i = 0; i < t.size(); ++i) {
    if (has_ignore && t[i] == ignore_index) continue;
    ctx.check(t[i] >= 0 && t[i] < classes, "target value {} at index {} is outside [0, {}) and is not ignore_index{}",
              t[i], i, classes, has_ignore ? fmt::format(" ({})", ignore_index) : std::string(" (none set)"));
  }
  return t;
}

// Computes the loss output from log-probabilities `logp` laid out [N, C, D] in compute type C.
template <class T>
void nll_from_logp(KernelContext& ctx, DType dtype, const std::vector<compute_t<T>>& logp, const LossShape& s,
                   const Tensor& target, const Tensor* weight) {
  using C = compute_t<T>;
  const Reduction red = read_reduction(ctx);
  const bool has_ignore = ctx.node().has_attr("ignore_index");
  const int64_t ignore_index = ctx.node().attr_i("ignore_index", 0);
  const std::vector<int64_t> tgt = read_targets(ctx, target, s.c, has_ignore, ignore_index);
  const T* w = weight ? weight->data<T>() : nullptr;

  // Effective weight and loss of each target element.
  const int64_t count = s.n * s.d;
  std::vector<C> wt(static_cast<size_t>(count)), loss(static_cast<size_t>(count));
  parallel_for(count, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) {
      const int64_t t = tgt[static_cast<size_t>(i)];
      if (has_ignore && t == ignore_index) continue;  // both stay 0
      const int64_t n = i / s.d, d = i % s.d;
      const C wi = w ? static_cast<C>(w[t]) : C(1);
      wt[static_cast<size_t>(i)] = wi;
      loss[static_cast<size_t>(i)] = -logp[static_cast<size_t>((n * s.c + t) * s.d + d)] * wi;
    }
  }, 1024);

  if (red == Reduction::None) {
    T* out = ctx.alloc_output(0, dtype, s.target_shape).template data<T>();
    for (int64_t i = 0; i < count; ++i) out[i] = T(loss[static_cast<size_t>(i)]);
    return;
  }
  double sum = 0, wsum = 0;
  for (int64_t i = 0; i < count; ++i) {
    sum += static_cast<double>(loss[static_cast<size_t>(i)]);
    wsum += static_cast<double>(wt[static_cast<size_t>(i)]);
  }
  // 'mean' over zero total weight (all ignored, or empty) is 0/0 = NaN, as in the reference.
  const double v = red == Reduction::Sum ? sum : sum / wsum;
  ctx.alloc_output(0, dtype, {}).template data<T>()[0] = T(static_cast<C>(v));
}

// Types: float16, float, double; SoftmaxCrossEntropyLoss also takes bfloat16 from opset 13.
void check_type(const KernelContext& ctx, DType t, bool bf16_ok) {
  const bool ok = t == DType::Float16 || t == DType::Float32 || t == DType::Float64 || (bf16_ok && t == DType::BFloat16);
  ctx.check(ok, "{} at opset {} does not take {} input", ctx.node().op_type, ctx.opset(), dtype_name(t));
}

void nll_loss(KernelContext& ctx) {
  const Tensor& x = ctx.input(0);
  const Tensor& target = ctx.input(1);
  const Tensor* weight = ctx.optional_input(2);
  check_type(ctx, x.dtype(), false);
  const LossShape s = check_shapes(ctx, x, target, weight);
  dispatch_float(x.dtype(), [&](auto tag) {
    using T = typename decltype(tag)::type;
    using C = compute_t<T>;
    // The input already holds log-probabilities; only widen float16 to float.
    std::vector<C> logp(static_cast<size_t>(x.numel()));
    const T* xp = x.data<T>();
    for (int64_t i = 0; i < x.numel(); ++i) logp[static_cast<size_t>(i)] = static_cast<C>(xp[i]);
    nll_from_logp<T>(ctx, x.dtype(), logp, s, target, weight);
  }, "NegativeLogLikelihoodLoss");
}

void softmax_cross_entropy_loss(KernelContext& ctx) {
  const Tensor& x = ctx.input(0);
  const Tensor& target = ctx.input(1);
  const Tensor* weight = ctx.optional_input(2);
  check_type(ctx, x.dtype(), ctx.opset() >= 13);
  const LossShape s = check_shapes(ctx, x, target, weight);
  dispatch_float(x.dtype(), [&](auto tag) {
    using T = typename decltype(tag)::type;
    using C = compute_t<T>;
    // log_softmax over the class axis for each (n, d): x - max - log(sum(exp(x - max))), the
    // max subtracted so exp cannot overflow.
    std::vector<C> logp(static_cast<size_t>(x.numel()));
    const T* xp = x.data<T>();
    parallel_for(s.n * s.d, [&](int64_t begin, int64_t end) {
      for (int64_t i = begin; i < end; ++i) {
        const int64_t base = (i / s.d) * s.c * s.d + i % s.d;
        C m = -std::numeric_limits<C>::infinity();
        for (int64_t c = 0; c < s.c; ++c) m = std::max(m, static_cast<C>(xp[base + c * s.d]));
        C sum = 0;
        for (int64_t c = 0; c < s.c; ++c) sum += std::exp(static_cast<C>(xp[base + c * s.d]) - m);
        const C lse = m + std::log(sum);
        for (int64_t c = 0; c < s.c; ++c)
          logp[static_cast<size_t>(base + c * s.d)] = static_cast<C>(xp[base + c * s.d]) - lse;
      }
    }, 64);
    nll_from_logp<T>(ctx, x.dtype(), logp, s, target, weight);
    if (ctx.output_wanted(1)) {
      T* lp = ctx.alloc_output(1, x.dtype(), x.shape()).template data<T>();
      for (int64_t i = 0; i < x.numel(); ++i) lp[i] = T(logp[static_cast<size_t>(i)]);
    }
  }, "SoftmaxCrossEntropyLoss");
}

}  // namespace

void register_loss(Registry& r) {
  r.add({"NegativeLogLikelihoodLoss", "", 12, 18, "float16, float, double; target int32, int64", nll_loss});
  r.add({"SoftmaxCrossEntropyLoss", "", 12, 18, "float16, float, double, bfloat16 (13+); labels int32, int64",
         softmax_cross_entropy_loss});
}

}  // namespace opennpu::cpu
