// Unary elementwise kernels: math functions (Abs ... Tanh, Erf, Round), predicates (IsInf, IsNaN,
// Not), activations (Relu ... ThresholdedRelu, Shrink), Clip and PRelu. Each kernel is one map over
// the input in its compute type (float for fp16/bf16, rounded back RNE); formulas are written in
// their numerically stable forms where the textbook one overflows (Sigmoid, Softplus).
#include <optional>

#include "cpu/kernels/elementwise.h"

namespace opennpu::cpu {
namespace {
using namespace ew;

// y = f(x) with y of x's dtype; x's dtype must be in `list`.
template <class List, class F>
void unary(KernelContext& ctx, List list, F f) {
  const Tensor& X = tensor_in(ctx, 0);
  dispatch(ctx, list, X.dtype(), "input", [&](auto tag) {
    using T = typename decltype(tag)::type;
    Tensor& Y = ctx.alloc_output(0, X.dtype(), X.shape());
    map_unary(X.data<T>(), Y.data<T>(), X.numel(), f);
  });
}

// y = pred(x) with a bool output.
template <class List, class F>
void unary_predicate(KernelContext& ctx, List list, F pred) {
  const Tensor& X = tensor_in(ctx, 0);
  dispatch(ctx, list, X.dtype(), "input", [&](auto tag) {
    using T = typename decltype(tag)::type;
    Tensor& Y = ctx.alloc_output(0, DType::Bool, X.shape());
    map_unary(X.data<T>(), Y.data<bool>(), X.numel(), [&](auto v) { return static_cast<bool>(pred(v)); });
  });
}

template <class C> constexpr bool is_int_compute_v = std::is_integral_v<C> && !std::is_same_v<C, bool>;

// Round half to even (ONNX Round), independent of the floating-point environment.
template <class C>
C round_half_even(C x) {
  if (std::fabs(x - std::trunc(x)) == C(0.5)) return C(2) * std::round(x / C(2));
  return std::round(x);
}

// ---- math ----

#define OPENNPU_FLOAT_UNARY(NAME, EXPR) \
  void NAME(KernelContext& ctx) { unary(ctx, FloatTypes{}, [](auto x) { return EXPR; }); }
OPENNPU_FLOAT_UNARY(k_acos, std::acos(x))
OPENNPU_FLOAT_UNARY(k_acosh, std::acosh(x))
OPENNPU_FLOAT_UNARY(k_asin, std::asin(x))
OPENNPU_FLOAT_UNARY(k_asinh, std::asinh(x))
OPENNPU_FLOAT_UNARY(k_atan, std::atan(x))
OPENNPU_FLOAT_UNARY(k_atanh, std::atanh(x))
OPENNPU_FLOAT_UNARY(k_ceil, std::ceil(x))
OPENNPU_FLOAT_UNARY(k_cos, std::cos(x))
OPENNPU_FLOAT_UNARY(k_cosh, std::cosh(x))
OPENNPU_FLOAT_UNARY(k_exp, std::exp(x))
OPENNPU_FLOAT_UNARY(k_floor, std::floor(x))
OPENNPU_FLOAT_UNARY(k_log, std::log(x))
OPENNPU_FLOAT_UNARY(k_reciprocal, decltype(x)(1) / x)
OPENNPU_FLOAT_UNARY(k_round, round_half_even(x))
OPENNPU_FLOAT_UNARY(k_sin, std::sin(x))
OPENNPU_FLOAT_UNARY(k_sinh, std::sinh(x))
OPENNPU_FLOAT_UNARY(k_sqrt, std::sqrt(x))
OPENNPU_FLOAT_UNARY(k_tan, std::tan(x))
OPENNPU_FLOAT_UNARY(k_tanh, std::tanh(x))
// 1/(1+e^-x) overflows e^-x for very negative x; e^x/(1+e^x) is the same value without overflow.
OPENNPU_FLOAT_UNARY(k_sigmoid, x >= 0 ? 1 / (1 + std::exp(-x)) : std::exp(x) / (1 + std::exp(x)))
// log(1+e^x) = max(x,0) + log1p(e^-|x|): no overflow for large x, no cancellation for small.
OPENNPU_FLOAT_UNARY(k_softplus, (x > 0 ? x : decltype(x)(0)) + std::log1p(std::exp(-std::fabs(x))))
OPENNPU_FLOAT_UNARY(k_softsign, x / (1 + std::fabs(x)))
#undef OPENNPU_FLOAT_UNARY

void k_abs(KernelContext& ctx) {
  unary(ctx, NumericTypes{}, [](auto x) {
    using C = decltype(x);
    if constexpr (is_int_compute_v<C>) {
      if constexpr (std::is_signed_v<C>) return x < 0 ? wrap_neg(x) : x;  // abs(INT_MIN) wraps
      else return x;
    } else {
      return std::fabs(x);
    }
  });
}

void k_neg(KernelContext& ctx) {
  unary(ctx, SignedNumericTypes{}, [](auto x) {
    if constexpr (is_int_compute_v<decltype(x)>) return wrap_neg(x); else return -x;
  });
}

void k_sign(KernelContext& ctx) {
  unary(ctx, NumericTypes{}, [](auto x) {
    using C = decltype(x);
    if constexpr (std::is_floating_point_v<C>) {
      if (std::isnan(x)) return x;
    }
    return x > 0 ? C(1) : x < 0 ? C(-1) : C(0);  // C(-1) is unreachable for unsigned C
  });
}

// Erf is defined for integers too (opset 13); computed in double, truncated back.
void k_erf(KernelContext& ctx) {
  unary(ctx, NumericTypes{}, [](auto x) {
    if constexpr (is_int_compute_v<decltype(x)>) return std::erf(static_cast<double>(x)); else return std::erf(x);
  });
}

void k_isnan(KernelContext& ctx) { unary_predicate(ctx, FloatTypes{}, [](auto x) { return std::isnan(x); }); }

void k_isinf(KernelContext& ctx) {
  const bool neg = ctx.node().attr_i("detect_negative", 1) != 0;
  const bool pos = ctx.node().attr_i("detect_positive", 1) != 0;
  unary_predicate(ctx, FloatTypes{}, [=](auto x) { return std::isinf(x) && (x > 0 ? pos : neg); });
}

void k_not(KernelContext& ctx) { unary_predicate(ctx, Types<bool>{}, [](bool x) { return !x; }); }

// ---- activations ----

void k_relu(KernelContext& ctx) {
  // x < 0 ? 0 : x keeps NaN (as max(x, 0) in numpy does).
  unary(ctx, SignedNumericTypes{}, [](auto x) { return x < 0 ? decltype(x)(0) : x; });
}

void k_leaky_relu(KernelContext& ctx) {
  const float alpha = ctx.node().attr_f("alpha", 0.01f);
  unary(ctx, FloatTypes{}, [=](auto x) { return x < 0 ? decltype(x)(alpha) * x : x; });
}

void k_elu(KernelContext& ctx) {
  const float alpha = ctx.node().attr_f("alpha", 1.0f);
  unary(ctx, FloatTypes{}, [=](auto x) { return x < 0 ? decltype(x)(alpha) * std::expm1(x) : x; });
}

void k_selu(KernelContext& ctx) {
  const float alpha = ctx.node().attr_f("alpha", 1.67326319217681884765625f);
  const float gamma = ctx.node().attr_f("gamma", 1.05070102214813232421875f);
  unary(ctx, FloatTypes{}, [=](auto x) {
    using C = decltype(x);
    return x > 0 ? C(gamma) * x : C(gamma) * C(alpha) * std::expm1(x);
  });
}

void k_celu(KernelContext& ctx) {
  const float alpha = ctx.node().attr_f("alpha", 1.0f);
  ctx.check(alpha != 0.0f, "attribute alpha must not be 0 (Celu divides by it)");
  unary(ctx, FloatTypes{}, [=](auto x) {
    using C = decltype(x);
    return x > 0 ? x : C(alpha) * std::expm1(x / C(alpha));
  });
}

template <class C>
C hard_sigmoid(C x, float alpha, float beta) {
  C v = C(alpha) * x + C(beta);
  return v < 0 ? C(0) : v > 1 ? C(1) : v;
}

void k_hard_sigmoid(KernelContext& ctx) {
  const float alpha = ctx.node().attr_f("alpha", 0.2f);
  const float beta = ctx.node().attr_f("beta", 0.5f);
  unary(ctx, FloatTypes{}, [=](auto x) { return hard_sigmoid(x, alpha, beta); });
}

// HardSwish(x) = x * HardSigmoid(x) with alpha = 1/6, beta = 0.5 (the ONNX definition).
void k_hard_swish(KernelContext& ctx) {
  unary(ctx, FloatTypes{}, [](auto x) { return x * hard_sigmoid(x, 1.0f / 6.0f, 0.5f); });
}

void k_thresholded_relu(KernelContext& ctx) {
  const float alpha = ctx.node().attr_f("alpha", 1.0f);
  unary(ctx, FloatTypes{}, [=](auto x) { return x > decltype(x)(alpha) ? x : decltype(x)(0); });
}

// Shrink: x+bias below -lambd, x-bias above lambd, 0 between. Integer inputs compute in double
// (lambd and bias are floats) and truncate back.
void k_shrink(KernelContext& ctx) {
  const float lambd = ctx.node().attr_f("lambd", 0.5f);
  const float bias = ctx.node().attr_f("bias", 0.0f);
  unary(ctx, NumericTypes{}, [=](auto x) {
    using C = std::conditional_t<is_int_compute_v<decltype(x)>, double, decltype(x)>;
    const C v = static_cast<C>(x);
    return v < -C(lambd) ? v + C(bias) : v > C(lambd) ? v - C(bias) : C(0);
  });
}

// ---- Clip ----

// min(max(x, lo), hi), each bound optional; lo > hi gives hi everywhere (numpy.clip, ONNX).
// NaN passes through. An absent bound is no bound (so +-inf inputs stay infinite).
template <class List>
void clip_impl(KernelContext& ctx, List list, std::optional<double> lo_attr, std::optional<double> hi_attr,
               const Tensor* lo_t, const Tensor* hi_t) {
  const Tensor& X = tensor_in(ctx, 0);
  dispatch(ctx, list, X.dtype(), "input", [&](auto tag) {
    using T = typename decltype(tag)::type;
    using C = compute_t<T>;
    std::optional<C> lo, hi;
    auto bound = [&](const Tensor* t, const char* name) -> std::optional<C> {
      if (!t) return std::nullopt;
      ctx.check(t->dtype() == X.dtype(), "{} has dtype {} but input has {}", name, dtype_name(t->dtype()),
                dtype_name(X.dtype()));
      ctx.check(t->numel() == 1, "{} must be a scalar, got shape {}", name, shape_str(t->shape()));
      return load(t->data<T>()[0]);
    };
    lo = lo_attr ? std::optional<C>(static_cast<C>(*lo_attr)) : bound(lo_t, "min");
    hi = hi_attr ? std::optional<C>(static_cast<C>(*hi_attr)) : bound(hi_t, "max");
    Tensor& Y = ctx.alloc_output(0, X.dtype(), X.shape());
    const bool has_lo = lo.has_value(), has_hi = hi.has_value();
    const C l = has_lo ? *lo : C(0), h = has_hi ? *hi : C(0);
    map_unary(X.data<T>(), Y.data<T>(), X.numel(), [=](C v) {
      if (has_lo && v < l) v = l;
      if (has_hi && v > h) v = h;
      return v;
    });
  });
}

// Clip-1..10: bounds are float attributes; float inputs only.
void k_clip_attrs(KernelContext& ctx) {
  const auto& n = ctx.node();
  std::optional<double> lo, hi;
  if (n.has_attr("min")) lo = n.attr_f("min", 0.0f);
  if (n.has_attr("max")) hi = n.attr_f("max", 0.0f);
  clip_impl(ctx, FloatTypes{}, lo, hi, nullptr, nullptr);
}

// Clip-11+: bounds are optional scalar inputs of the input's dtype; integers from opset 12.
void k_clip_inputs(KernelContext& ctx) {
  clip_impl(ctx, NumericTypes{}, std::nullopt, std::nullopt, ctx.optional_input(1), ctx.optional_input(2));
}

// ---- PRelu ----

// The shape the slope broadcasts as. Opset 7 on: numpy broadcasting of slope to X. Before opset 7
// the slope was one value or one per channel (dim 1 of X), or X's full shape.
Shape slope_shape(const KernelContext& ctx, const Tensor& X, const Tensor& S) {
  if (ctx.opset() >= 7 || S.numel() == 1 || S.shape() == X.shape()) return S.shape();
  ctx.check(S.rank() == 1 && X.rank() >= 2 && S.dim(0) == X.dim(1),
            "slope of shape {} must have 1 element, one per channel (dim 1 of X {}) or X's shape (opset {})",
            shape_str(S.shape()), shape_str(X.shape()), ctx.opset());
  Shape s(static_cast<size_t>(X.rank() - 1), 1);
  s[0] = S.dim(0);
  return s;
}

// y = x < 0 ? slope * x : x, slope broadcast unidirectionally to x.
void k_prelu(KernelContext& ctx) {
  const Tensor& X = tensor_in(ctx, 0);
  const Tensor& S = tensor_in(ctx, 1);
  ctx.check(X.dtype() == S.dtype(), "slope has dtype {} but X has {}", dtype_name(S.dtype()), dtype_name(X.dtype()));
  const Shape ss = slope_shape(ctx, X, S);
  ctx.check(broadcast_out(ctx, {X.shape(), ss}) == X.shape(),
            "slope of shape {} does not broadcast to X of shape {}", shape_str(S.shape()), shape_str(X.shape()));
  using PReluTypes = Types<float, double, Half, BFloat16, int32_t, int64_t, uint32_t, uint64_t>;
  dispatch(ctx, PReluTypes{}, X.dtype(), "input X", [&](auto tag) {
    using T = typename decltype(tag)::type;
    Tensor& Y = ctx.alloc_output(0, X.dtype(), X.shape());
    broadcast_binary(X.data<T>(), X.shape(), S.data<T>(), ss, Y.data<T>(), X.shape(), [](T xv, T sv) {
      auto x = load(xv), s = load(sv);
      if constexpr (is_int_compute_v<decltype(x)>) return x < 0 ? wrap_mul(s, x) : x;
      else return convert<T>(x < 0 ? s * x : x);
    });
  });
}

}  // namespace

void register_activations(Registry& r) {
  const std::string flt = "float, double, float16, bfloat16";
  const std::string num = "float, double, float16, bfloat16, int8-64, uint8-64";
  const std::string snum = "float, double, float16, bfloat16, int8-64";
  // Opset 1-5 versions of the ops registered since 1 differ only by the legacy consumed_inputs
  // attribute, a memory hint with no effect on values.
  r.add({"Abs", "", 1, 17, num, k_abs});
  r.add({"Acos", "", 7, 17, flt, k_acos});
  r.add({"Acosh", "", 9, 17, flt, k_acosh});
  r.add({"Asin", "", 7, 17, flt, k_asin});
  r.add({"Asinh", "", 9, 17, flt, k_asinh});
  r.add({"Atan", "", 7, 17, flt, k_atan});
  r.add({"Atanh", "", 9, 17, flt, k_atanh});
  r.add({"Ceil", "", 1, 17, flt, k_ceil});
  r.add({"Cos", "", 7, 17, flt, k_cos});
  r.add({"Cosh", "", 9, 17, flt, k_cosh});
  r.add({"Erf", "", 9, 17, num, k_erf});
  r.add({"Exp", "", 1, 17, flt, k_exp});
  r.add({"Floor", "", 1, 17, flt, k_floor});
  r.add({"Log", "", 1, 17, flt, k_log});
  r.add({"Neg", "", 1, 17, snum, k_neg});
  r.add({"Reciprocal", "", 1, 17, flt, k_reciprocal});
  r.add({"Round", "", 11, 17, flt, k_round});
  r.add({"Sign", "", 9, 17, num, k_sign});
  r.add({"Sin", "", 7, 17, flt, k_sin});
  r.add({"Sinh", "", 9, 17, flt, k_sinh});
  r.add({"Sqrt", "", 1, 17, flt, k_sqrt});
  r.add({"Tan", "", 7, 17, flt, k_tan});
  r.add({"Tanh", "", 1, 17, flt, k_tanh});
  r.add({"IsNaN", "", 9, 17, flt, k_isnan});
  r.add({"IsInf", "", 10, 17, flt, k_isinf});
  r.add({"Not", "", 1, 17, "bool", k_not});
  r.add({"Relu", "", 1, 17, snum, k_relu});
  r.add({"LeakyRelu", "", 1, 17, flt, k_leaky_relu});
  r.add({"Elu", "", 1, 17, flt, k_elu});
  r.add({"Selu", "", 1, 17, flt, k_selu});
  r.add({"Celu", "", 12, 17, flt, k_celu});
  r.add({"HardSigmoid", "", 1, 17, flt, k_hard_sigmoid});
  r.add({"HardSwish", "", 14, 17, flt, k_hard_swish});
  r.add({"Sigmoid", "", 1, 17, flt, k_sigmoid});
  r.add({"Softplus", "", 1, 17, flt, k_softplus});
  r.add({"Softsign", "", 1, 17, flt, k_softsign});
  r.add({"ThresholdedRelu", "", 10, 17, flt, k_thresholded_relu});
  r.add({"Shrink", "", 9, 17, num, k_shrink});
  r.add({"Clip", "", 1, 10, flt + " (min/max attributes)", k_clip_attrs});
  r.add({"Clip", "", 11, 17, num + " (min/max scalar inputs)", k_clip_inputs});
  r.add({"PRelu", "", 1, 17, "float, double, float16, bfloat16, int32, int64, uint32, uint64", k_prelu});
}

}  // namespace opennpu::cpu
