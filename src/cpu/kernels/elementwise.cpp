// Elementwise kernels with numpy broadcasting: arithmetic (Add Sub Mul Div Pow Mod BitShift),
// logic (And Or Xor), comparisons, the variadic Max/Min/Sum/Mean, Where, and Cast/CastLike.
// Unary math and activations are in activations.cpp. fp16/bf16 are computed in float and rounded
// back (RNE); integer arithmetic wraps (two's complement) instead of overflowing; integer division
// or modulo by zero is an error, never a crash.
#include <cerrno>
#include <charconv>
#include <cstdlib>
#include <cstring>

#include "cpu/kernels/elementwise.h"

namespace opennpu::cpu {

namespace ew {

BroadcastPlan make_broadcast_plan(const Shape& out, const std::vector<Shape>& ins) {
  const size_t nin = ins.size();
  std::vector<std::vector<int64_t>> st;
  for (const auto& s : ins) st.push_back(broadcast_strides(s, out));
  Shape dims;
  std::vector<std::vector<int64_t>> mst(nin);
  for (size_t d = 0; d < out.size(); ++d) {
    if (out[d] == 1) continue;  // contributes nothing to any offset
    bool merge = !dims.empty();
    // The previous (merged) dim and this one form a single dim for input k when stepping the
    // previous dim by one jumps exactly over a full run of this one (both 0 when broadcast).
    for (size_t k = 0; k < nin && merge; ++k) merge = mst[k].back() == st[k][d] * out[d];
    if (merge) {
      dims.back() *= out[d];
      for (size_t k = 0; k < nin; ++k) mst[k].back() = st[k][d];
      continue;
    }
    dims.push_back(out[d]);
    for (size_t k = 0; k < nin; ++k) mst[k].push_back(st[k][d]);
  }
  BroadcastPlan p;
  p.inner_stride.assign(nin, 0);
  p.outer_strides.assign(nin, {});
  if (dims.empty()) return p;  // a single element
  p.inner = dims.back();
  dims.pop_back();
  p.outer = dims;
  for (size_t k = 0; k < nin; ++k) {
    p.inner_stride[k] = mst[k].back();
    mst[k].pop_back();
    p.outer_strides[k] = mst[k];
  }
  return p;
}

}  // namespace ew

namespace {
using namespace ew;

void check_same_dtype(const KernelContext& ctx, const Tensor& a, const Tensor& b) {
  ctx.check(a.dtype() == b.dtype(), "inputs must have the same dtype, got {} and {}", dtype_name(a.dtype()),
            dtype_name(b.dtype()));
}

// The shape B broadcasts as. From opset 7 on this is B's own shape (numpy broadcasting). Opsets 1-6
// had no implicit broadcasting: shapes must be equal unless broadcast=1, and then B's dims match a
// contiguous run of A's dims starting at `axis` (default: A's trailing dims), e.g. A [2,3,4,5] with
// B [3,4] and axis=1. B is given 1s in the other dims so the numpy machinery applies.
Shape operand_b_shape(const KernelContext& ctx, const Tensor& A, const Tensor& B) {
  if (ctx.opset() >= 7) return B.shape();
  const auto& node = ctx.node();
  if (node.attr_i("broadcast", 0) == 0) {
    ctx.check(A.shape() == B.shape(), "shapes {} and {} differ and attribute broadcast is 0 (opset {})",
              shape_str(A.shape()), shape_str(B.shape()), ctx.opset());
    return B.shape();
  }
  const int64_t ra = A.rank(), rb = B.rank();
  ctx.check(rb <= ra, "B of rank {} cannot broadcast to A of rank {}", rb, ra);
  int64_t axis = node.has_attr("axis") ? node.attr_i("axis", 0) : ra - rb;
  if (axis < 0) axis += ra;
  ctx.check(axis >= 0 && axis + rb <= ra, "attribute axis {} does not fit B {} into A {}", node.attr_i("axis", 0),
            shape_str(B.shape()), shape_str(A.shape()));
  Shape s(static_cast<size_t>(ra), 1);
  for (int64_t i = 0; i < rb; ++i) {
    ctx.check(B.dim(i) == A.dim(axis + i) || B.dim(i) == 1, "B {} does not match A {} at axis {}",
              shape_str(B.shape()), shape_str(A.shape()), axis);
    s[static_cast<size_t>(axis + i)] = B.dim(i);
  }
  return s;
}

// Binary op whose inputs and output share one dtype from `list`; op gets and returns compute
// values (float for fp16/bf16).
template <class List, class Op>
void same_type_binary(KernelContext& ctx, List list, Op op) {
  const Tensor& A = tensor_in(ctx, 0);
  const Tensor& B = tensor_in(ctx, 1);
  check_same_dtype(ctx, A, B);
  const Shape sb = operand_b_shape(ctx, A, B);
  const Shape so = broadcast_out(ctx, {A.shape(), sb});
  dispatch(ctx, list, A.dtype(), "input A", [&](auto tag) {
    using T = typename decltype(tag)::type;
    Tensor& O = ctx.alloc_output(0, A.dtype(), so);
    broadcast_binary(A.data<T>(), A.shape(), B.data<T>(), sb, O.data<T>(), so,
                     [&](T a, T b) { return convert<T>(op(load(a), load(b))); });
  });
}

// Binary predicate over two inputs of one dtype from `list`; the output is bool.
template <class List, class Op>
void compare_binary(KernelContext& ctx, List list, Op op) {
  const Tensor& A = tensor_in(ctx, 0);
  const Tensor& B = tensor_in(ctx, 1);
  check_same_dtype(ctx, A, B);
  const Shape sb = operand_b_shape(ctx, A, B);
  const Shape so = broadcast_out(ctx, {A.shape(), sb});
  dispatch(ctx, list, A.dtype(), "input A", [&](auto tag) {
    using T = typename decltype(tag)::type;
    Tensor& O = ctx.alloc_output(0, DType::Bool, so);
    broadcast_binary(A.data<T>(), A.shape(), B.data<T>(), sb, O.data<bool>(), so,
                     [&](T a, T b) { return static_cast<bool>(op(load(a), load(b))); });
  });
}

template <class T> constexpr bool is_integral_compute_v = std::is_integral_v<T> && !std::is_same_v<T, bool>;

bool any_zero(const KernelContext& ctx, const Tensor& t) {
  bool zero = false;
  dispatch(ctx, NumericTypes{}, t.dtype(), "divisor", [&](auto tag) {
    using T = typename decltype(tag)::type;
    const T* p = t.data<T>();
    for (int64_t i = 0; i < t.numel() && !zero; ++i) zero = load(p[i]) == 0;
  });
  return zero;
}

// ---- arithmetic ----

void k_add(KernelContext& ctx) {
  same_type_binary(ctx, NumericTypes{}, [](auto a, auto b) {
    if constexpr (is_integral_compute_v<decltype(a)>) return wrap_add(a, b); else return a + b;
  });
}
void k_sub(KernelContext& ctx) {
  same_type_binary(ctx, NumericTypes{}, [](auto a, auto b) {
    if constexpr (is_integral_compute_v<decltype(a)>) return wrap_sub(a, b); else return a - b;
  });
}
void k_mul(KernelContext& ctx) {
  same_type_binary(ctx, NumericTypes{}, [](auto a, auto b) {
    if constexpr (is_integral_compute_v<decltype(a)>) return wrap_mul(a, b); else return a * b;
  });
}
// Integer division truncates toward zero (C semantics, as ONNX Runtime and the uint8 test).
void k_div(KernelContext& ctx) {
  if (dtype_is_integer(tensor_in(ctx, 1).dtype()) && any_zero(ctx, tensor_in(ctx, 1)))
    ctx.fail("integer division by zero");
  same_type_binary(ctx, NumericTypes{}, [](auto a, auto b) {
    using C = decltype(a);
    if constexpr (is_integral_compute_v<C> && std::is_signed_v<C>) {
      if (b == -1) return wrap_neg(a);  // INT_MIN / -1 overflows (traps on x86): wrap instead
      return static_cast<C>(a / b);
    } else {
      return static_cast<C>(a / b);
    }
  });
}

// Mod: fmod=1 is C fmod (sign of the dividend); fmod=0 is Python's % (sign of the divisor), which
// ONNX allows only for integers.
void k_mod(KernelContext& ctx) {
  const int64_t fmod = ctx.node().attr_i("fmod", 0);
  ctx.check(fmod == 0 || fmod == 1, "attribute fmod must be 0 or 1, got {}", fmod);
  const Tensor& B = tensor_in(ctx, 1);
  if (dtype_is_float(tensor_in(ctx, 0).dtype())) {
    ctx.check(fmod == 1, "attribute fmod must be 1 for floating-point inputs ({})", dtype_name(B.dtype()));
    same_type_binary(ctx, FloatTypes{}, [](auto a, auto b) { return std::fmod(a, b); });
    return;
  }
  using IntTypes = Types<int8_t, int16_t, int32_t, int64_t, uint8_t, uint16_t, uint32_t, uint64_t>;
  if (type_in(IntTypes{}, B.dtype()) && any_zero(ctx, B)) ctx.fail("integer modulo by zero");
  same_type_binary(ctx, IntTypes{}, [fmod](auto a, auto b) {
    using C = decltype(a);
    if constexpr (std::is_signed_v<C>) {
      if (b == -1) return C(0);  // INT_MIN % -1 traps on x86; the remainder is 0
      C r = static_cast<C>(a % b);
      if (fmod == 0 && r != 0 && ((r < 0) != (b < 0))) r = static_cast<C>(r + b);
      return r;
    } else {
      return static_cast<C>(a % b);
    }
  });
}

// Integer power by squaring, wrapping on overflow. A negative exponent goes through double pow
// and truncation: 0 for |a| >= 2, +-1 for a = +-1, saturated for a = 0 (1/0).
template <class TB, class TE>
TB int_pow(TB a, TE e) {
  if constexpr (std::is_signed_v<TE>) {
    if (e < 0) return float_to_int<TB>(std::pow(static_cast<double>(a), static_cast<double>(e)));
  }
  auto n = static_cast<uint64_t>(e);
  TB result = 1;
  while (n) {
    if (n & 1u) result = wrap_mul(result, a);
    a = wrap_mul(a, a);
    n >>= 1;
  }
  return result;
}

// Pow: the output has the base's dtype. float^float uses powf (the common path); other mixes
// compute in double and round once to the base type, as numpy does for mixed types.
template <class TB, class TE>
TB pow_value(TB a, TE b) {
  if constexpr (std::is_same_v<TB, float> && std::is_same_v<TE, float>) {
    return std::pow(a, b);
  } else if constexpr (is_int_v<TB> && is_int_v<TE>) {
    return int_pow(a, b);
  } else {
    return convert<TB>(std::pow(static_cast<double>(load(a)), static_cast<double>(load(b))));
  }
}

void k_pow(KernelContext& ctx) {
  const Tensor& X = tensor_in(ctx, 0);
  const Tensor& Y = tensor_in(ctx, 1);
  const Shape sy = operand_b_shape(ctx, X, Y);
  const Shape so = broadcast_out(ctx, {X.shape(), sy});
  using BaseTypes = Types<float, double, Half, BFloat16, int32_t, int64_t>;
  dispatch(ctx, BaseTypes{}, X.dtype(), "base X", [&](auto bt) {
    using TB = typename decltype(bt)::type;
    dispatch(ctx, NumericTypes{}, Y.dtype(), "exponent Y", [&](auto et) {
      using TE = typename decltype(et)::type;
      Tensor& O = ctx.alloc_output(0, X.dtype(), so);
      broadcast_binary(X.data<TB>(), X.shape(), Y.data<TE>(), sy, O.data<TB>(), so,
                       [](TB a, TE b) { return pow_value(a, b); });
    });
  });
}

// BitShift: shifting by the bit width or more gives 0 (C++ leaves it undefined).
void k_bitshift(KernelContext& ctx) {
  const std::string dir = ctx.node().attr_s("direction", "");
  ctx.check(dir == "LEFT" || dir == "RIGHT", "attribute direction must be \"LEFT\" or \"RIGHT\", got \"{}\"", dir);
  const bool left = dir == "LEFT";
  same_type_binary(ctx, UnsignedIntTypes{}, [left](auto x, auto s) {
    using T = decltype(x);
    if (s >= sizeof(T) * 8) return T(0);
    return left ? static_cast<T>(static_cast<wide_unsigned_t<T>>(x) << s) : static_cast<T>(x >> s);
  });
}

// ---- comparisons and logic ----

using EqualTypes = Types<float, double, Half, BFloat16, int8_t, int16_t, int32_t, int64_t, uint8_t, uint16_t,
                         uint32_t, uint64_t, bool>;
void k_equal(KernelContext& ctx) { compare_binary(ctx, EqualTypes{}, [](auto a, auto b) { return a == b; }); }
void k_greater(KernelContext& ctx) { compare_binary(ctx, NumericTypes{}, [](auto a, auto b) { return a > b; }); }
void k_greater_equal(KernelContext& ctx) { compare_binary(ctx, NumericTypes{}, [](auto a, auto b) { return a >= b; }); }
void k_less(KernelContext& ctx) { compare_binary(ctx, NumericTypes{}, [](auto a, auto b) { return a < b; }); }
void k_less_equal(KernelContext& ctx) { compare_binary(ctx, NumericTypes{}, [](auto a, auto b) { return a <= b; }); }
void k_and(KernelContext& ctx) { compare_binary(ctx, Types<bool>{}, [](bool a, bool b) { return a && b; }); }
void k_or(KernelContext& ctx) { compare_binary(ctx, Types<bool>{}, [](bool a, bool b) { return a || b; }); }
void k_xor(KernelContext& ctx) { compare_binary(ctx, Types<bool>{}, [](bool a, bool b) { return a != b; }); }

// ---- variadic Max / Min / Sum / Mean ----

// Folds all inputs (broadcast together) with op into an accumulator of the compute type, so
// fp16/bf16 sums are rounded once at the end. Mean divides the sum by the input count.
template <class List, class Op>
void variadic(KernelContext& ctx, List list, Op op, bool mean) {
  const size_t n = ctx.num_inputs();
  ctx.check(n >= 1, "needs at least one input");
  std::vector<Shape> shapes;
  for (size_t i = 0; i < n; ++i) {
    check_same_dtype(ctx, tensor_in(ctx, 0), tensor_in(ctx, i));
    shapes.push_back(ctx.input(i).shape());
  }
  const Shape so = broadcast_out(ctx, shapes);
  const DType dt = ctx.input(0).dtype();
  dispatch(ctx, list, dt, "input 0", [&](auto tag) {
    using T = typename decltype(tag)::type;
    using C = compute_t<T>;
    Tensor& O = ctx.alloc_output(0, dt, so);
    std::vector<C> buf;
    C* acc;
    if constexpr (std::is_same_v<C, T>) {
      acc = O.data<T>();
    } else {
      buf.resize(static_cast<size_t>(O.numel()));
      acc = buf.data();
    }
    const Tensor& A = ctx.input(0);
    if (n == 1) {
      map_unary(A.data<T>(), acc, A.numel(), [](C v) { return v; });
    } else {
      const Tensor& B = ctx.input(1);
      broadcast_binary(A.data<T>(), A.shape(), B.data<T>(), B.shape(), acc, so,
                       [&](T a, T b) { return static_cast<C>(op(load(a), load(b))); });
      for (size_t k = 2; k < n; ++k) {
        const Tensor& K = ctx.input(k);
        // In place: element i of acc is read before it is written, and only by the same i.
        broadcast_binary(acc, so, K.data<T>(), K.shape(), acc, so,
                         [&](C a, T b) { return static_cast<C>(op(a, load(b))); });
      }
    }
    if (mean) {
      const C count = static_cast<C>(n);
      for (int64_t i = 0; i < O.numel(); ++i) acc[i] /= count;
    }
    if constexpr (!std::is_same_v<C, T>) {
      T* o = O.data<T>();
      for (int64_t i = 0; i < O.numel(); ++i) o[i] = convert<T>(acc[i]);
    }
  });
}

// numpy maximum/minimum semantics: NaN wins.
struct MaxOp {
  template <class C> C operator()(C a, C b) const {
    if constexpr (std::is_floating_point_v<C>) {
      if (std::isnan(a)) return a;
      if (std::isnan(b)) return b;
    }
    return a < b ? b : a;
  }
};
struct MinOp {
  template <class C> C operator()(C a, C b) const {
    if constexpr (std::is_floating_point_v<C>) {
      if (std::isnan(a)) return a;
      if (std::isnan(b)) return b;
    }
    return b < a ? b : a;
  }
};

void k_max(KernelContext& ctx) { variadic(ctx, NumericTypes{}, MaxOp{}, false); }
void k_min(KernelContext& ctx) { variadic(ctx, NumericTypes{}, MinOp{}, false); }
void k_sum(KernelContext& ctx) { variadic(ctx, FloatTypes{}, [](auto a, auto b) { return a + b; }, false); }
void k_mean(KernelContext& ctx) { variadic(ctx, FloatTypes{}, [](auto a, auto b) { return a + b; }, true); }

// ---- Where ----

// o = c ? x : y over three broadcast inputs; T is any element type (copied, not computed on).
template <class T>
void where_impl(const bool* c, const Shape& sc, const T* x, const Shape& sx, const T* y, const Shape& sy, T* o,
                const Shape& so) {
  const int64_t n = checked_numel(so);
  if (n == 0) return;
  if (checked_numel(sc) == n && checked_numel(sx) == n && checked_numel(sy) == n) {
    parallel_for(n, [&](int64_t b, int64_t e) { for (int64_t i = b; i < e; ++i) o[i] = c[i] ? x[i] : y[i]; }, kGrain);
    return;
  }
  const BroadcastPlan p = make_broadcast_plan(so, {sc, sx, sy});
  const int64_t m = p.inner, s0 = p.inner_stride[0], s1 = p.inner_stride[1], s2 = p.inner_stride[2];
  for_each_row(p, [&](int64_t oo, const int64_t* off) {
    for (int64_t j = 0; j < m; ++j) o[oo + j] = c[off[0] + j * s0] ? x[off[1] + j * s1] : y[off[2] + j * s2];
  });
}

void k_where(KernelContext& ctx) {
  const Tensor& C = tensor_in(ctx, 0);
  const Tensor& X = tensor_in(ctx, 1);
  const Tensor& Y = tensor_in(ctx, 2);
  ctx.check(C.dtype() == DType::Bool, "condition must be bool, got {}", dtype_name(C.dtype()));
  check_same_dtype(ctx, X, Y);
  const Shape so = broadcast_out(ctx, {C.shape(), X.shape(), Y.shape()});
  Tensor& O = ctx.alloc_output(0, X.dtype(), so);
  const bool* c = C.data<bool>();
  auto run = [&](auto tag) {  // by element size: Where only moves bytes
    using U = typename decltype(tag)::type;
    where_impl(c, C.shape(), static_cast<const U*>(X.raw()), X.shape(), static_cast<const U*>(Y.raw()), Y.shape(),
               static_cast<U*>(O.raw()), so);
  };
  if (X.dtype() == DType::String) {
    where_impl(c, C.shape(), X.strings().data(), X.shape(), Y.strings().data(), Y.shape(), O.strings().data(), so);
    return;
  }
  switch (dtype_size(X.dtype())) {
    case 1: run(Tag<uint8_t>{}); break;
    case 2: run(Tag<uint16_t>{}); break;
    case 4: run(Tag<uint32_t>{}); break;
    case 8: run(Tag<uint64_t>{}); break;
    default: ctx.fail("unsupported dtype {} for X and Y", dtype_name(X.dtype()));
  }
}

// ---- Cast / CastLike ----

// Digits and decimal exponent of the shortest decimal that reads back as the same value of T.
struct Decimal {
  std::string digits;  // no leading zeros, at least one digit
  int exp10 = 0;       // value = 0.d1d2d3... * 10^(exp10 + 1), i.e. d1 is at 10^exp10
};

// Splits "d.ddde[+-]xx" (to_chars / printf %e output, sign removed) into a Decimal.
Decimal parse_scientific(const char* s, const char* end) {
  Decimal d;
  const char* p = s;
  for (; p < end && *p != 'e'; ++p)
    if (*p != '.') d.digits += *p;
  // to_chars does not NUL-terminate: read the exponent only up to end (atoi read on into stale
  // bytes of the buffer, so "2.961402e-01" after a longer number became e-011).
  if (p < end) {
    const char* q = p + 1;
    if (q < end && *q == '+') ++q;
    std::from_chars(q, end, d.exp10);
  }
  while (d.digits.size() > 1 && d.digits.back() == '0') d.digits.pop_back();
  return d;
}

template <class T>
Decimal shortest_decimal(T v) {  // v finite and > 0
  char buf[64];
  if constexpr (std::is_same_v<T, float> || std::is_same_v<T, double>) {
    auto r = std::to_chars(buf, buf + sizeof buf, v, std::chars_format::scientific);
    return parse_scientific(buf, r.ptr);
  } else {  // fp16/bf16: the fewest significant digits that round back to the same bits
    for (int prec = 1; prec <= 9; ++prec) {
      int len = std::snprintf(buf, sizeof buf, "%.*e", prec - 1, static_cast<double>(static_cast<float>(v)));
      if (T(static_cast<float>(std::strtod(buf, nullptr))).bits == v.bits) return parse_scientific(buf, buf + len);
    }
    int len = std::snprintf(buf, sizeof buf, "%.8e", static_cast<double>(static_cast<float>(v)));
    return parse_scientific(buf, buf + len);
  }
}

// The text numpy's str() gives for a float scalar: shortest round-trip digits, positional
// notation for 1e-4 <= |v| < 1e16 ("0.5", "100.0"), scientific otherwise ("1e-05", "1.5e+20").
template <class T>
std::string float_to_string(T v) {
  const double d = static_cast<double>(load(v));
  if (std::isnan(d)) return "nan";
  if (std::isinf(d)) return d < 0 ? "-inf" : "inf";
  std::string sign = std::signbit(d) ? "-" : "";
  if (d == 0) return sign + "0.0";
  Decimal dec = shortest_decimal(std::signbit(d) ? convert<T>(-load(v)) : v);
  const int e = dec.exp10;
  const double mag = std::fabs(d);
  if (mag >= 1e-4 && mag < 1e16) {
    std::string s;
    if (e < 0) {
      s = "0." + std::string(static_cast<size_t>(-e - 1), '0') + dec.digits;
    } else if (static_cast<size_t>(e) + 1 >= dec.digits.size()) {
      s = dec.digits + std::string(static_cast<size_t>(e) + 1 - dec.digits.size(), '0') + ".0";
    } else {
      s = dec.digits.substr(0, static_cast<size_t>(e) + 1) + "." + dec.digits.substr(static_cast<size_t>(e) + 1);
    }
    return sign + s;
  }
  std::string s = dec.digits.substr(0, 1);
  if (dec.digits.size() > 1) s += "." + dec.digits.substr(1);
  return sign + s + fmt::format("e{}{:02d}", e < 0 ? '-' : '+', std::abs(e));
}

template <class T>
std::string value_to_string(T v) {
  if constexpr (std::is_same_v<T, bool>) return v ? "True" : "False";  // numpy's str(np.bool_)
  else if constexpr (is_float_v<T>) return float_to_string(v);
  else return std::to_string(v);
}

// Parses s as a value of T: integers in decimal (saturating to T's range), floats as C strtod
// reads them ("1.5", "1e-3", "NaN", "INF", "+INF", "-inf"), bools as true/false or a number.
// Surrounding whitespace is allowed; anything else left over is an error.
template <class T>
bool parse_value(const std::string& s, T& out) {
  const char* b = s.c_str();
  char* end = nullptr;
  auto rest_is_space = [&](const char* p) {
    while (*p && std::isspace(static_cast<unsigned char>(*p))) ++p;
    return *p == '\0' && p != b;
  };
  if constexpr (std::is_same_v<T, bool>) {
    std::string low;
    for (char ch : s)
      if (!std::isspace(static_cast<unsigned char>(ch))) low += static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
    if (low == "true") { out = true; return true; }
    if (low == "false") { out = false; return true; }
    double v = 0;
    if (!parse_value(s, v)) return false;
    out = v != 0;
    return true;
  } else if constexpr (std::is_same_v<T, float>) {
    errno = 0;
    out = std::strtof(b, &end);  // correctly rounded; ERANGE still gives +-inf / 0
    return rest_is_space(end);
  } else if constexpr (std::is_same_v<T, double>) {
    out = std::strtod(b, &end);
    return rest_is_space(end);
  } else if constexpr (is_low_float_v<T>) {
    long double v = std::strtold(b, &end);
    out = convert<T>(v);
    return rest_is_space(end);
  } else {
    errno = 0;
    if constexpr (std::is_signed_v<T>) {
      long long v = std::strtoll(b, &end, 10);
      if (rest_is_space(end)) {
        out = v < std::numeric_limits<T>::lowest() ? std::numeric_limits<T>::lowest()
              : v > std::numeric_limits<T>::max() ? std::numeric_limits<T>::max() : static_cast<T>(v);
        return true;
      }
    } else {
      const char* q = b;
      while (std::isspace(static_cast<unsigned char>(*q))) ++q;
      if (*q != '-') {
        unsigned long long v = std::strtoull(b, &end, 10);
        if (rest_is_space(end)) {
          out = v > std::numeric_limits<T>::max() ? std::numeric_limits<T>::max() : static_cast<T>(v);
          return true;
        }
      }
    }
    long double v = std::strtold(b, &end);  // "1.5", "1e3", "-2" for unsigned: via float rules
    if (!rest_is_space(end)) return false;
    out = float_to_int<T>(v);
    return true;
  }
}

void cast_to(KernelContext& ctx, const Tensor& X, DType to) {
  if (X.dtype() == to) {
    ctx.set_output(0, X);
    return;
  }
  Tensor& Y = ctx.alloc_output(0, to, X.shape());
  const int64_t n = X.numel();
  if (X.dtype() == DType::String) {
    const auto& in = X.strings();
    dispatch(ctx, AllTypes{}, to, "target type 'to'", [&](auto tag) {
      using D = typename decltype(tag)::type;
      D* y = Y.data<D>();
      for (int64_t i = 0; i < n; ++i)
        if (!parse_value(in[i], y[i])) ctx.fail("cannot cast string \"{}\" to {}", in[i], dtype_name(to));
    });
    return;
  }
  dispatch(ctx, AllTypes{}, X.dtype(), "input", [&](auto stag) {
    using S = typename decltype(stag)::type;
    const S* x = X.data<S>();
    if (to == DType::String) {
      auto& out = Y.strings();
      for (int64_t i = 0; i < n; ++i) out[i] = value_to_string(x[i]);
      return;
    }
    dispatch(ctx, AllTypes{}, to, "target type 'to'", [&](auto dtag) {
      using D = typename decltype(dtag)::type;
      D* y = Y.data<D>();
      parallel_for(n, [&](int64_t b, int64_t e) { for (int64_t i = b; i < e; ++i) y[i] = convert<D>(x[i]); }, kGrain);
    });
  });
}

// Cast-1 names the type as a string ("FLOAT"); later opsets use the TensorProto enum value.
DType cast_target(const KernelContext& ctx) {
  const ir::Attribute* a = ctx.node().attr("to");
  ctx.check(a != nullptr, "attribute 'to' is required");
  if (a->kind == ir::Attribute::Kind::String) {
    static const std::pair<const char*, DType> names[] = {
        {"FLOAT", DType::Float32}, {"FLOAT16", DType::Float16}, {"BFLOAT16", DType::BFloat16},
        {"DOUBLE", DType::Float64}, {"INT8", DType::Int8}, {"INT16", DType::Int16}, {"INT32", DType::Int32},
        {"INT64", DType::Int64}, {"UINT8", DType::UInt8}, {"UINT16", DType::UInt16}, {"UINT32", DType::UInt32},
        {"UINT64", DType::UInt64}, {"BOOL", DType::Bool}, {"STRING", DType::String}};
    for (const auto& [name, t] : names)
      if (a->s == name) return t;
    ctx.fail("attribute 'to' names an unsupported type \"{}\"", a->s);
  }
  ctx.check(a->kind == ir::Attribute::Kind::Int, "attribute 'to' must be an int");
  try {
    return dtype_from_onnx(static_cast<int>(a->i));
  } catch (const Error& e) {
    ctx.fail("attribute 'to': {}", e.what());
  }
}

void k_cast(KernelContext& ctx) { cast_to(ctx, tensor_in(ctx, 0), cast_target(ctx)); }
void k_castlike(KernelContext& ctx) { cast_to(ctx, tensor_in(ctx, 0), tensor_in(ctx, 1).dtype()); }

}  // namespace

void register_activations(Registry& r);  // activations.cpp: unary math, activations, Clip, PRelu

void register_elementwise(Registry& r) {
  const std::string num = "float, double, float16, bfloat16, int8-64, uint8-64";
  const std::string flt = "float, double, float16, bfloat16";
  const std::string all = num + ", bool, string";
  // Opsets 1-6 of Add/Sub/Mul/Div/Pow/And/Or/Xor/Equal/Greater/Less used the legacy broadcast/axis
  // attributes (see operand_b_shape); opsets 1-5 also had the consumed_inputs memory hint, which
  // does not change values.
  r.add({"Add", "", 1, 17, num, k_add});
  r.add({"Sub", "", 1, 17, num, k_sub});
  r.add({"Mul", "", 1, 17, num, k_mul});
  r.add({"Div", "", 1, 17, num, k_div});
  r.add({"Pow", "", 1, 17, "base: float, double, float16, bfloat16, int32, int64; exponent: any numeric", k_pow});
  r.add({"Mod", "", 10, 17, num, k_mod});
  r.add({"BitShift", "", 11, 17, "uint8, uint16, uint32, uint64", k_bitshift});
  r.add({"And", "", 1, 17, "bool", k_and});
  r.add({"Or", "", 1, 17, "bool", k_or});
  r.add({"Xor", "", 1, 17, "bool", k_xor});
  r.add({"Equal", "", 1, 17, num + ", bool", k_equal});
  r.add({"Greater", "", 1, 17, num, k_greater});
  r.add({"Less", "", 1, 17, num, k_less});
  r.add({"GreaterOrEqual", "", 12, 17, num, k_greater_equal});
  r.add({"LessOrEqual", "", 12, 17, num, k_less_equal});
  // Opset 1 had only the legacy consumed_inputs hint and opset 6 required equal shapes: both are
  // covered by the broadcasting kernels of opset 8.
  r.add({"Max", "", 1, 17, num, k_max});
  r.add({"Min", "", 1, 17, num, k_min});
  r.add({"Sum", "", 1, 17, flt, k_sum});
  r.add({"Mean", "", 1, 17, flt, k_mean});
  r.add({"Where", "", 9, 17, all, k_where});
  r.add({"Cast", "", 1, 17, all, k_cast});
  r.add({"CastLike", "", 15, 17, all, k_castlike});
  register_activations(r);
}

}  // namespace opennpu::cpu
