// cpu/kernels/elementwise.h — helpers shared by the elementwise kernel files (elementwise.cpp,
// activations.cpp): value conversion between element types (the exact rules Cast uses), integer
// arithmetic that wraps instead of overflowing, unary maps, and a broadcasting iteration plan whose
// innermost loop is a contiguous run. Internal to the CPU backend's kernels.
#pragma once
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <string>
#include <type_traits>
#include <vector>

#include "core/half.h"
#include "core/parallel.h"
#include "cpu/util.h"

namespace opennpu::cpu::ew {

// Elements per parallel chunk: below this, threading costs more than it saves.
inline constexpr int64_t kGrain = 32768;

template <class T> inline constexpr bool is_low_float_v = std::is_same_v<T, Half> || std::is_same_v<T, BFloat16>;
template <class T> inline constexpr bool is_float_v = is_low_float_v<T> || std::is_floating_point_v<T>;
template <class T> inline constexpr bool is_int_v = std::is_integral_v<T> && !std::is_same_v<T, bool>;

// The float nearest to x, except that an inexact result is rounded to odd (toward zero, then the
// lowest mantissa bit set). Rounding that float once more to fp16/bf16 (RNE) then gives the
// correctly rounded result of x itself: a float keeps more than two extra bits beyond either, so
// no double-rounding error can occur. Used for double/int64 -> fp16/bf16.
inline float to_float_round_odd(long double x) {
  float f = static_cast<float>(x);
  if (std::isnan(f) || static_cast<long double>(f) == x) return f;
  if (std::fabs(static_cast<long double>(f)) > std::fabs(x)) f = std::nextafter(f, 0.0f);
  return f32_from_bits(f32_bits(f) | 1u);
}

// Float -> integer: truncate toward zero; NaN gives 0 and out-of-range values saturate to the
// type's limits (C++ leaves these undefined; ONNX does not specify them).
template <class D, class F>
D float_to_int(F v) {
  if (std::isnan(v)) return 0;
  long double t = std::trunc(static_cast<long double>(v));
  if (t <= static_cast<long double>(std::numeric_limits<D>::lowest())) return std::numeric_limits<D>::lowest();
  if (t >= static_cast<long double>(std::numeric_limits<D>::max())) return std::numeric_limits<D>::max();
  return static_cast<D>(t);
}

// Value conversion S -> D with the rules of Cast: floats round to nearest even, float -> int
// truncates (saturating, see float_to_int), int -> int wraps (two's complement), anything -> bool
// is "!= 0" (NaN is true), bool -> number is 0/1.
template <class D, class S>
inline D convert(S s) {
  if constexpr (std::is_same_v<D, S>) {
    return s;
  } else if constexpr (std::is_same_v<S, bool>) {
    return convert<D>(static_cast<uint8_t>(s ? 1 : 0));
  } else if constexpr (std::is_same_v<D, bool>) {
    if constexpr (is_low_float_v<S>) return static_cast<float>(s) != 0.0f;
    else return s != 0;
  } else if constexpr (is_low_float_v<D>) {
    if constexpr (is_low_float_v<S> || std::is_same_v<S, float>) return D(static_cast<float>(s));
    else return D(to_float_round_odd(static_cast<long double>(s)));
  } else if constexpr (std::is_floating_point_v<D>) {
    if constexpr (is_low_float_v<S>) return static_cast<D>(static_cast<float>(s));
    else return static_cast<D>(s);
  } else {  // integer destination
    if constexpr (is_low_float_v<S>) return float_to_int<D>(static_cast<float>(s));
    else if constexpr (std::is_floating_point_v<S>) return float_to_int<D>(s);
    else return static_cast<D>(s);  // modular since C++20
  }
}

// ---- dtype dispatch over explicit type lists (only the listed types are instantiated) ----
template <class... Ts> struct Types {};
using FloatTypes = Types<float, double, Half, BFloat16>;
using SignedIntTypes = Types<int8_t, int16_t, int32_t, int64_t>;
using UnsignedIntTypes = Types<uint8_t, uint16_t, uint32_t, uint64_t>;
using NumericTypes = Types<float, double, Half, BFloat16, int8_t, int16_t, int32_t, int64_t, uint8_t, uint16_t,
                           uint32_t, uint64_t>;
using SignedNumericTypes = Types<float, double, Half, BFloat16, int8_t, int16_t, int32_t, int64_t>;
using AllTypes = Types<float, double, Half, BFloat16, int8_t, int16_t, int32_t, int64_t, uint8_t, uint16_t,
                       uint32_t, uint64_t, bool>;

template <class T> constexpr DType dtype_of() {
  if constexpr (std::is_same_v<T, float>) return DType::Float32;
  else if constexpr (std::is_same_v<T, double>) return DType::Float64;
  else if constexpr (std::is_same_v<T, Half>) return DType::Float16;
  else if constexpr (std::is_same_v<T, BFloat16>) return DType::BFloat16;
  else if constexpr (std::is_same_v<T, int8_t>) return DType::Int8;
  else if constexpr (std::is_same_v<T, int16_t>) return DType::Int16;
  else if constexpr (std::is_same_v<T, int32_t>) return DType::Int32;
  else if constexpr (std::is_same_v<T, int64_t>) return DType::Int64;
  else if constexpr (std::is_same_v<T, uint8_t>) return DType::UInt8;
  else if constexpr (std::is_same_v<T, uint16_t>) return DType::UInt16;
  else if constexpr (std::is_same_v<T, uint32_t>) return DType::UInt32;
  else if constexpr (std::is_same_v<T, uint64_t>) return DType::UInt64;
  else if constexpr (std::is_same_v<T, bool>) return DType::Bool;
}

template <class... Ts>
std::string type_list_str(Types<Ts...>) {
  std::string s;
  ((s += (s.empty() ? "" : ", ") + std::string(dtype_name(dtype_of<Ts>()))), ...);
  return s;
}
template <class... Ts>
bool type_in(Types<Ts...>, DType t) { return ((dtype_of<Ts>() == t) || ...); }

// Calls f(Tag<T>{}) for the T among the list whose dtype is t; fails naming `what` otherwise.
template <class... Ts, class F>
void dispatch(const KernelContext& ctx, Types<Ts...> list, DType t, const char* what, F&& f) {
  bool done = ((dtype_of<Ts>() == t ? (f(Tag<Ts>{}), true) : false) || ...);
  if (!done) ctx.fail("{} has dtype {}, expected one of: {}", what, dtype_name(t), type_list_str(list));
}

// A plain tensor input (not a sequence or an empty optional).
inline const Tensor& tensor_in(const KernelContext& ctx, size_t i) {
  const Tensor& t = ctx.input(i);
  ctx.check(!t.is_sequence() && !t.is_none(), "input {} must be a tensor, not a sequence or optional", i);
  return t;
}

inline Shape broadcast_out(const KernelContext& ctx, const std::vector<Shape>& shapes) {
  return broadcast_shapes(shapes, ctx.node().where());
}

// Reads an element in its compute type (float for fp16/bf16).
template <class T> inline compute_t<T> load(T v) { return static_cast<compute_t<T>>(v); }

// Integer arithmetic in an unsigned type at least as wide as unsigned int, so overflow wraps
// (two's complement) instead of being undefined behaviour.
template <class T> using wide_unsigned_t =
    std::conditional_t<(sizeof(T) < sizeof(unsigned)), unsigned, std::make_unsigned_t<T>>;
template <class T> inline T wrap_add(T a, T b) { using U = wide_unsigned_t<T>; return static_cast<T>(U(a) + U(b)); }
template <class T> inline T wrap_sub(T a, T b) { using U = wide_unsigned_t<T>; return static_cast<T>(U(a) - U(b)); }
template <class T> inline T wrap_mul(T a, T b) { using U = wide_unsigned_t<T>; return static_cast<T>(U(a) * U(b)); }
template <class T> inline T wrap_neg(T a) { using U = wide_unsigned_t<T>; return static_cast<T>(U(0) - U(a)); }

// y[i] = f(x[i]) over two buffers of n elements; f gets and returns compute-type values, the
// result is converted to TO. The plain loop is what the compiler vectorises for float32.
template <class TI, class TO, class F>
void map_unary(const TI* x, TO* y, int64_t n, F f) {
  parallel_for(n, [&](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; ++i) y[i] = convert<TO>(f(load(x[i])));
  }, kGrain);
}

// Iteration plan for an output shape and N inputs that broadcast to it. Size-1 output dims are
// dropped and adjacent dims are merged wherever every input is laid out contiguously across
// them, so the work becomes rows() rows of `inner` elements; within a row input k advances by
// inner_stride[k], which is 1 (contiguous) or 0 (broadcast).
struct BroadcastPlan {
  int64_t inner = 1;
  Shape outer;                                  // merged outer dims (row-major)
  std::vector<std::vector<int64_t>> outer_strides;  // [input][outer dim], in elements
  std::vector<int64_t> inner_stride;            // [input]: 0 or 1
  int64_t rows() const {
    int64_t r = 1;
    for (int64_t d : outer) r *= d;
    return r;
  }
};
BroadcastPlan make_broadcast_plan(const Shape& out, const std::vector<Shape>& ins);

// Calls row(r, out_offset, in_offsets) for every row of the plan, rows split over threads. The
// offsets of a chunk's first row are computed once; later rows advance an odometer.
template <class F>
void for_each_row(const BroadcastPlan& p, F row) {
  const int64_t nrows = p.rows();
  const size_t nin = p.inner_stride.size();
  const int64_t rank = static_cast<int64_t>(p.outer.size());
  parallel_for(nrows, [&](int64_t b, int64_t e) {
    std::vector<int64_t> idx(rank, 0), off(nin, 0);
    int64_t r = b;
    for (int64_t d = rank - 1; d >= 0; --d) {
      idx[d] = r % p.outer[d];
      r /= p.outer[d];
      for (size_t k = 0; k < nin; ++k) off[k] += idx[d] * p.outer_strides[k][d];
    }
    for (int64_t i = b; i < e; ++i) {
      row(i * p.inner, off.data());
      for (int64_t d = rank - 1; d >= 0; --d) {
        if (++idx[d] < p.outer[d]) {
          for (size_t k = 0; k < nin; ++k) off[k] += p.outer_strides[k][d];
          break;
        }
        for (size_t k = 0; k < nin; ++k) off[k] -= p.outer_strides[k][d] * (p.outer[d] - 1);
        idx[d] = 0;
      }
    }
  }, std::max<int64_t>(1, kGrain / std::max<int64_t>(p.inner, 1)));
}

// o = f(a, b) with numpy broadcasting of a (shape sa) and b (shape sb) to so. f takes raw elements
// (TA, TB) and returns a TO. Equal layouts and scalar operands take flat loops without index math.
template <class TA, class TB, class TO, class F>
void broadcast_binary(const TA* a, const Shape& sa, const TB* b, const Shape& sb, TO* o, const Shape& so, F f) {
  const int64_t n = checked_numel(so);
  if (n == 0) return;
  const int64_t na = checked_numel(sa), nb = checked_numel(sb);
  if (na == n && nb == n) {  // same layout (shapes differ at most by leading 1s)
    parallel_for(n, [&](int64_t s, int64_t e) { for (int64_t i = s; i < e; ++i) o[i] = f(a[i], b[i]); }, kGrain);
    return;
  }
  if (na == n && nb == 1) {
    const TB bv = b[0];
    parallel_for(n, [&](int64_t s, int64_t e) { for (int64_t i = s; i < e; ++i) o[i] = f(a[i], bv); }, kGrain);
    return;
  }
  if (na == 1 && nb == n) {
    const TA av = a[0];
    parallel_for(n, [&](int64_t s, int64_t e) { for (int64_t i = s; i < e; ++i) o[i] = f(av, b[i]); }, kGrain);
    return;
  }
  const BroadcastPlan p = make_broadcast_plan(so, {sa, sb});
  const int64_t m = p.inner, ia = p.inner_stride[0], ib = p.inner_stride[1];
  for_each_row(p, [&](int64_t oo, const int64_t* off) {
    const TA* ra = a + off[0];
    const TB* rb = b + off[1];
    TO* ro = o + oo;
    if (ia == 1 && ib == 1) {
      for (int64_t j = 0; j < m; ++j) ro[j] = f(ra[j], rb[j]);
    } else if (ia == 1) {
      const TB bv = rb[0];
      for (int64_t j = 0; j < m; ++j) ro[j] = f(ra[j], bv);
    } else if (ib == 1) {
      const TA av = ra[0];
      for (int64_t j = 0; j < m; ++j) ro[j] = f(av, rb[j]);
    } else {
      const TO v = f(ra[0], rb[0]);
      for (int64_t j = 0; j < m; ++j) ro[j] = v;
    }
  });
}

}  // namespace opennpu::cpu::ew
