// Reduction reference kernels: the Reduce* family, ArgMax/ArgMin, CumSum and TopK.
// A reduction views its input as "kept" dims x "reduced" dims; each output element folds the
// reduced elements in row-major order and is computed by exactly one thread, so results never
// depend on the thread count. Floating types accumulate in double (float16/bfloat16 are read as
// float first); integer sums and products wrap modulo 2^64 and are truncated to the element type,
// which is exactly two's-complement wrap-around in that type (numpy's behaviour).
#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>
#include <string>
#include <vector>

#include "core/parallel.h"
#include "cpu/util.h"

namespace opennpu::cpu {
namespace {

template <class T> constexpr bool is_float_v = std::is_floating_point_v<compute_t<T>>;

// Element types the Reduce* schemas list (bfloat16 from opset 13); ReduceMax/ReduceMin also take
// int8/uint8 from opset 12.
bool reduce_type_ok(DType t, int64_t opset, bool minmax) {
  switch (t) {
    case DType::Float32: case DType::Float64: case DType::Float16:
    case DType::Int32: case DType::Int64: case DType::UInt32: case DType::UInt64: return true;
    case DType::BFloat16: return opset >= 13;
    case DType::Int8: case DType::UInt8: return minmax && opset >= 12;
    default: return false;
  }
}

// Converts a double result to an integer element type: truncates toward zero, saturates at the
// type's range and maps NaN to 0, so no input can trigger undefined behaviour.
template <class T>
T saturate_to(double v) {
  if constexpr (is_float_v<T>) {
    return T(static_cast<compute_t<T>>(v));
  } else {
    if (std::isnan(v)) return T(0);
    if (v <= static_cast<double>(std::numeric_limits<T>::lowest())) return std::numeric_limits<T>::lowest();
    if (v >= static_cast<double>(std::numeric_limits<T>::max())) return std::numeric_limits<T>::max();
    return static_cast<T>(v);
  }
}

// The input seen as (kept dims) x (reduced dims): offset of each output element's first input
// element, and the strides/sizes of the reduced sub-space.
struct ReducePlan {
  Shape out_shape;                     // with keepdims applied
  Shape kept_dims, kept_strides;       // in input order
  Shape red_dims, red_strides;         // in input order
  int64_t out_count = 1, red_count = 1;

  int64_t base_offset(int64_t out_linear) const {
    int64_t off = 0;
    for (size_t d = kept_dims.size(); d-- > 0;) {
      off += (out_linear % kept_dims[d]) * kept_strides[d];
      out_linear /= kept_dims[d];
    }
    return off;
  }
  // Calls fn(offset) for each reduced element of the output element at `base`, row-major.
  template <class F>
  void for_each(int64_t base, F&& fn) const {
    if (red_count == 0) return;
    std::vector<int64_t> idx(red_dims.size(), 0);
    int64_t off = base;
    for (;;) {
      fn(off);
      size_t d = red_dims.size();
      for (;;) {
        if (d == 0) return;
        --d;
        off += red_strides[d];
        if (++idx[d] < red_dims[d]) break;
        off -= red_strides[d] * red_dims[d];
        idx[d] = 0;
      }
    }
  }
};

ReducePlan make_plan(const Shape& in, const std::vector<bool>& reduced, bool keepdims) {
  ReducePlan p;
  auto st = strides_of(in);
  for (size_t d = 0; d < in.size(); ++d) {
    if (reduced[d]) {
      p.red_dims.push_back(in[d]);
      p.red_strides.push_back(st[d]);
      p.red_count *= in[d];
      if (keepdims) p.out_shape.push_back(1);
    } else {
      p.kept_dims.push_back(in[d]);
      p.kept_strides.push_back(st[d]);
      p.out_count *= in[d];
      p.out_shape.push_back(in[d]);
    }
  }
  return p;
}

// Normalises axes into [0, rank), rejecting out-of-range and repeated ones. Returns a mask.
std::vector<bool> axes_mask(const KernelContext& ctx, const std::vector<int64_t>& axes, int64_t rank) {
  std::vector<bool> mask(static_cast<size_t>(rank), false);
  for (int64_t a : axes) {
    ctx.check(a >= -rank && a < rank, "axis {} is out of range for an input of rank {}", a, rank);
    int64_t n = a < 0 ? a + rank : a;
    ctx.check(!mask[static_cast<size_t>(n)], "axis {} is given more than once in axes", a);
    mask[static_cast<size_t>(n)] = true;
  }
  return mask;
}

// An attribute the op only has from opset `since` on must not appear in older models.
void reject_before(const KernelContext& ctx, const char* attr, int64_t since) {
  ctx.check(ctx.opset() >= since || !ctx.node().has_attr(attr), "{} has no '{}' attribute before opset {}",
            ctx.node().op_type, attr, since);
}

enum class Red { Sum, Mean, Max, Min, Prod, L1, L2, LogSum, LogSumExp, SumSquare };

// Folds the values of one output element. `each(fn)` calls fn(value) per reduced element.
// Empty reductions follow ONNX: sum-like 0, prod 1, max -inf (lowest), min +inf (highest),
// mean NaN, log-sum and log-sum-exp -inf.
template <class T, class Each>
T reduce_one(Red op, int64_t n, Each&& each) {
  using C = compute_t<T>;
  if constexpr (is_float_v<T>) {
    const double inf = std::numeric_limits<double>::infinity();
    double acc = 0;
    switch (op) {
      case Red::Sum: case Red::Mean: case Red::LogSum:
        each([&](C v) { acc += static_cast<double>(v); });
        if (op == Red::Mean) acc /= static_cast<double>(n);
        if (op == Red::LogSum) acc = std::log(acc);
        break;
      case Red::Max: case Red::Min: {
        // NaN propagates, as in numpy's max/min.
        acc = op == Red::Max ? -inf : inf;
        each([&](C c) {
          double v = static_cast<double>(c);
          if (std::isnan(v) || std::isnan(acc)) acc = std::isnan(acc) ? acc : v;
          else acc = op == Red::Max ? std::max(acc, v) : std::min(acc, v);
        });
        break;
      }
      case Red::Prod: acc = 1; each([&](C v) { acc *= static_cast<double>(v); }); break;
      case Red::L1: each([&](C v) { acc += std::fabs(static_cast<double>(v)); }); break;
      case Red::L2: case Red::SumSquare:
        each([&](C v) { acc += static_cast<double>(v) * static_cast<double>(v); });
        if (op == Red::L2) acc = std::sqrt(acc);
        break;
      case Red::LogSumExp: {
        // log(sum(exp(x))) computed as m + log(sum(exp(x - m))) with m = max(x): same value,
        // without overflow. All -inf (or empty) gives -inf; a +inf gives +inf.
        double m = -inf;
        bool nan = false;
        each([&](C c) { double v = static_cast<double>(c); if (std::isnan(v)) nan = true; else m = std::max(m, v); });
        if (nan) { acc = std::numeric_limits<double>::quiet_NaN(); break; }
        if (std::isinf(m)) { acc = m; break; }
        each([&](C v) { acc += std::exp(static_cast<double>(v) - m); });
        acc = m + std::log(acc);
        break;
      }
    }
    return T(static_cast<C>(acc));
  } else {
    using U = std::make_unsigned_t<T>;
    switch (op) {
      case Red::Sum: case Red::Prod: case Red::L1: case Red::SumSquare: {
        // Wrapping uint64 arithmetic; the final conversion keeps the low bits (two's complement).
        uint64_t acc = op == Red::Prod ? 1 : 0;
        each([&](T v) {
          uint64_t u = static_cast<uint64_t>(static_cast<std::conditional_t<std::is_signed_v<T>, int64_t, uint64_t>>(v));
          if constexpr (std::is_signed_v<T>) {
            if (op == Red::L1 && v < 0) u = 0 - u;  // |v| modulo 2^64, fine even for the minimum
          }
          if (op == Red::SumSquare) u *= u;
          if (op == Red::Prod) acc *= u; else acc += u;
        });
        return static_cast<T>(static_cast<U>(acc));
      }
      case Red::Mean: {
        if (n == 0) return T(0);  // unreachable: reduce_kernel rejects it before the parallel loop
        uint64_t acc = 0;
        each([&](T v) { acc += static_cast<uint64_t>(static_cast<std::conditional_t<std::is_signed_v<T>, int64_t, uint64_t>>(v)); });
        // Integer division truncates toward zero, like numpy's float mean cast back to int.
        if constexpr (std::is_signed_v<T>) return static_cast<T>(static_cast<int64_t>(acc) / n);
        else return static_cast<T>(acc / static_cast<uint64_t>(n));
      }
      case Red::Max: case Red::Min: {
        T acc = op == Red::Max ? std::numeric_limits<T>::lowest() : std::numeric_limits<T>::max();
        each([&](T v) { acc = op == Red::Max ? std::max(acc, v) : std::min(acc, v); });
        return acc;
      }
      case Red::L2: case Red::LogSum: case Red::LogSumExp: {
        // These are real-valued by nature: computed in double, then truncated to the int type.
        double acc = 0;
        if (op == Red::LogSumExp) {
          double m = -std::numeric_limits<double>::infinity();
          each([&](T v) { m = std::max(m, static_cast<double>(v)); });
          if (!std::isinf(m)) {
            each([&](T v) { acc += std::exp(static_cast<double>(v) - m); });
            acc = m + std::log(acc);
          } else {
            acc = m;
          }
        } else {
          each([&](T v) { double d = static_cast<double>(v); acc += op == Red::L2 ? d * d : d; });
          acc = op == Red::L2 ? std::sqrt(acc) : std::log(acc);
        }
        return saturate_to<T>(acc);
      }
    }
    return T(0);
  }
}

// Reads the axes of a Reduce* node: the `axes` input from `axes_input_since` on, the attribute
// before. Returns false when no axes were given (or an empty list).
std::vector<int64_t> read_axes(const KernelContext& ctx, int64_t axes_input_since) {
  if (ctx.opset() >= axes_input_since) {
    ctx.check(!ctx.node().has_attr("axes"), "axes is an input, not an attribute, from opset {}", axes_input_since);
    const Tensor* a = ctx.optional_input(1);
    if (!a) return {};
    ctx.check(a->dtype() == DType::Int64 && a->rank() <= 1, "axes must be a 1-D int64 tensor, got {} {}",
              dtype_name(a->dtype()), shape_str(a->shape()));
    return a->to_i64_vector();
  }
  ctx.check(ctx.num_inputs() <= 1, "takes axes as an attribute (not an input) before opset {}", axes_input_since);
  return ctx.node().attr_ints("axes");
}

template <Red op, int64_t axes_input_since>
void reduce_kernel(KernelContext& ctx) {
  const Tensor& x = ctx.input(0);
  const bool minmax = op == Red::Max || op == Red::Min;
  ctx.check(reduce_type_ok(x.dtype(), ctx.opset(), minmax), "{} at opset {} does not take {} input",
            ctx.node().op_type, ctx.opset(), dtype_name(x.dtype()));
  const bool keepdims = ctx.node().attr_i("keepdims", 1) != 0;
  // noop_with_empty_axes exists since axes became an input.
  reject_before(ctx, "noop_with_empty_axes", axes_input_since);
  const bool noop = ctx.node().attr_i("noop_with_empty_axes", 0) != 0;
  std::vector<int64_t> axes = read_axes(ctx, axes_input_since);
  if (axes.empty() && noop) {
    // "The output tensor would be equivalent to the input tensor" (the schema): no reduction.
    ctx.set_output(0, x);
    return;
  }
  std::vector<bool> mask = axes.empty() ? std::vector<bool>(static_cast<size_t>(x.rank()), true)
                                        : axes_mask(ctx, axes, x.rank());
  const ReducePlan plan = make_plan(x.shape(), mask, keepdims);
  ctx.check(op != Red::Mean || dtype_is_float(x.dtype()) || plan.red_count > 0 || plan.out_count == 0,
            "the mean of an empty set is undefined for integer type {}", dtype_name(x.dtype()));
  Tensor& y = ctx.alloc_output(0, x.dtype(), plan.out_shape);
  // No check may throw inside parallel_for (worker threads do not forward exceptions).
  dispatch_numeric(x.dtype(), [&](auto tag) {
    using T = typename decltype(tag)::type;
    if constexpr (!std::is_same_v<T, bool>) {
      const T* xp = x.data<T>();
      T* yp = y.data<T>();
      parallel_for(plan.out_count, [&](int64_t b, int64_t e) {
        for (int64_t o = b; o < e; ++o) {
          const int64_t base = plan.base_offset(o);
          auto each = [&](auto&& fn) { plan.for_each(base, [&](int64_t off) { fn(static_cast<compute_t<T>>(xp[off])); }); };
          yp[o] = reduce_one<T>(op, plan.red_count, each);
        }
      }, std::max<int64_t>(1, 4096 / std::max<int64_t>(plan.red_count, 1)));
    }
  }, "Reduce");
}

// ---- ArgMax / ArgMin ---------------------------------------------------------------------------

template <bool is_max>
void arg_kernel(KernelContext& ctx) {
  const Tensor& x = ctx.input(0);
  ctx.check(x.dtype() != DType::Bool && x.dtype() != DType::String, "does not take {} input", dtype_name(x.dtype()));
  ctx.check(x.dtype() != DType::BFloat16 || ctx.opset() >= 13, "takes bfloat16 only from opset 13");
  const int64_t axis = normalize_axis(ctx, ctx.node().attr_i("axis", 0), x.rank());
  const bool keepdims = ctx.node().attr_i("keepdims", 1) != 0;
  reject_before(ctx, "select_last_index", 12);
  const bool last = ctx.node().attr_i("select_last_index", 0) != 0;
  std::vector<bool> mask(static_cast<size_t>(x.rank()), false);
  if (x.rank() > 0) mask[static_cast<size_t>(axis)] = true;
  const ReducePlan plan = make_plan(x.shape(), mask, keepdims);
  ctx.check(plan.red_count > 0 || plan.out_count == 0, "cannot take the arg{} over an empty axis", is_max ? "max" : "min");
  Tensor& y = ctx.alloc_output(0, DType::Int64, plan.out_shape);
  int64_t* yp = y.data<int64_t>();
  dispatch_numeric(x.dtype(), [&](auto tag) {
    using T = typename decltype(tag)::type;
    using C = compute_t<T>;
    const T* xp = x.data<T>();
    parallel_for(plan.out_count, [&](int64_t b, int64_t e) {
      for (int64_t o = b; o < e; ++o) {
        C best{};
        int64_t best_i = -1, i = 0;
        plan.for_each(plan.base_offset(o), [&](int64_t off) {
          C v = static_cast<C>(xp[off]);
          bool take;
          if (best_i < 0) take = true;
          else if constexpr (is_float_v<T>) {
            // numpy semantics: a NaN counts as the extreme (the first NaN, or the last one with
            // select_last_index).
            bool vn = std::isnan(static_cast<double>(v)), bn = std::isnan(static_cast<double>(best));
            if (bn) take = vn && last;
            else if (vn) take = true;
            else take = is_max ? (v > best || (last && v == best)) : (v < best || (last && v == best));
          } else {
            take = is_max ? (v > best || (last && v == best)) : (v < best || (last && v == best));
          }
          if (take) { best = v; best_i = i; }
          ++i;
        });
        yp[o] = best_i;
      }
    });
  }, is_max ? "ArgMax" : "ArgMin");
}

// ---- CumSum ------------------------------------------------------------------------------------

void cumsum(KernelContext& ctx) {
  const Tensor& x = ctx.input(0);
  const Tensor& a = ctx.input(1);
  const DType dt = x.dtype();
  ctx.check(dt == DType::Float32 || dt == DType::Float64 || dt == DType::Int32 || dt == DType::Int64 ||
                dt == DType::UInt32 || dt == DType::UInt64 ||
                ((dt == DType::Float16 || dt == DType::BFloat16) && ctx.opset() >= 14),
            "CumSum at opset {} does not take {} input", ctx.opset(), dtype_name(dt));
  ctx.check((a.dtype() == DType::Int32 || a.dtype() == DType::Int64) && a.numel() == 1 && a.rank() <= 1,
            "axis must be a scalar int32/int64 tensor, got {} {}", dtype_name(a.dtype()), shape_str(a.shape()));
  ctx.check(x.rank() >= 1, "input must have rank >= 1");
  const int64_t axis = normalize_axis(ctx, a.get_i64(0), x.rank());
  const bool exclusive = ctx.node().attr_i("exclusive", 0) != 0;
  const bool reverse = ctx.node().attr_i("reverse", 0) != 0;
  const int64_t len = x.dim(axis);
  const int64_t inner = strides_of(x.shape())[static_cast<size_t>(axis)];
  const int64_t lines = len == 0 ? 0 : x.numel() / len;  // outer * inner
  Tensor& y = ctx.alloc_output(0, dt, x.shape());
  dispatch_numeric(dt, [&](auto tag) {
    using T = typename decltype(tag)::type;
    if constexpr (!std::is_same_v<T, bool>) {
      // Floats accumulate in double; integers wrap in uint64 (two's complement in T).
      using Acc = std::conditional_t<is_float_v<T>, double, uint64_t>;
      const T* xp = x.data<T>();
      T* yp = y.data<T>();
      parallel_for(lines, [&](int64_t b, int64_t e) {
        for (int64_t l = b; l < e; ++l) {
          const int64_t start = (l / inner) * len * inner + l % inner;
          Acc acc = 0;
          for (int64_t s = 0; s < len; ++s) {
            const int64_t off = start + (reverse ? len - 1 - s : s) * inner;
            Acc v;
            if constexpr (is_float_v<T>) v = static_cast<double>(static_cast<compute_t<T>>(xp[off]));
            else v = static_cast<uint64_t>(static_cast<std::conditional_t<std::is_signed_v<T>, int64_t, uint64_t>>(xp[off]));
            if (!exclusive) acc += v;
            if constexpr (is_float_v<T>) yp[off] = T(static_cast<compute_t<T>>(acc));
            else yp[off] = static_cast<T>(static_cast<std::make_unsigned_t<T>>(acc));
            if (exclusive) acc += v;
          }
        }
      });
    }
  }, "CumSum");
}

// ---- TopK --------------------------------------------------------------------------------------

void topk(KernelContext& ctx) {
  const Tensor& x = ctx.input(0);
  const DType dt = x.dtype();
  ctx.check(dt != DType::Bool && dt != DType::String && dt != DType::BFloat16, "TopK does not take {} input", dtype_name(dt));
  ctx.check(dtype_is_float(dt) || ctx.opset() >= 11, "TopK takes integer input only from opset 11");
  ctx.check(x.rank() >= 1, "input must have rank >= 1");
  int64_t k;
  if (ctx.opset() >= 10) {
    ctx.check(!ctx.node().has_attr("k"), "k is an input, not an attribute, from opset 10");
    const Tensor& kt = ctx.input(1);
    ctx.check(kt.dtype() == DType::Int64 && kt.numel() == 1 && kt.rank() <= 1, "K must be a 1-element int64 tensor, got {} {}",
              dtype_name(kt.dtype()), shape_str(kt.shape()));
    k = kt.get_i64(0);
  } else {
    ctx.check(ctx.node().has_attr("k"), "attribute k is required before opset 10");
    ctx.check(ctx.num_inputs() <= 1, "takes k as an attribute (not an input) before opset 10");
    k = ctx.node().attr_i("k", 0);
  }
  int64_t axis_attr = ctx.node().attr_i("axis", -1);
  ctx.check(ctx.opset() >= 11 || axis_attr >= 0 || axis_attr == -1, "negative axis {} needs opset 11", axis_attr);
  const int64_t axis = normalize_axis(ctx, axis_attr, x.rank());
  reject_before(ctx, "largest", 11);
  reject_before(ctx, "sorted", 11);
  const bool largest = ctx.node().attr_i("largest", 1) != 0;
  // sorted = 0 leaves the order unspecified; returning the sorted order satisfies it too.
  const int64_t len = x.dim(axis);
  ctx.check(k >= 0 && k <= len, "k = {} must be in [0, {}] (the size of axis {})", k, len, axis);
  Shape yshape = x.shape();
  yshape[static_cast<size_t>(axis)] = k;
  Tensor& vals = ctx.alloc_output(0, dt, yshape);
  Tensor& idxs = ctx.alloc_output(1, DType::Int64, yshape);
  const int64_t inner = strides_of(x.shape())[static_cast<size_t>(axis)];
  const int64_t lines = len == 0 ? 0 : x.numel() / len;
  dispatch_numeric(dt, [&](auto tag) {
    using T = typename decltype(tag)::type;
    using C = compute_t<T>;
    const T* xp = x.data<T>();
    T* vp = vals.data<T>();
    int64_t* ip = idxs.data<int64_t>();
    parallel_for(lines, [&](int64_t b, int64_t e) {
      std::vector<int64_t> order(static_cast<size_t>(len));
      for (int64_t l = b; l < e; ++l) {
        const int64_t outer = l / inner, in = l % inner;
        const int64_t start = outer * len * inner + in;
        auto at = [&](int64_t i) { return static_cast<C>(xp[start + i * inner]); };
        // Strict total order: by value (NaN above +inf, as PyTorch orders it), ties by lower index.
        auto before = [&](int64_t i, int64_t j) {
          C a = at(i), c = at(j);
          bool an = false, cn = false;
          if constexpr (is_float_v<T>) { an = std::isnan(static_cast<double>(a)); cn = std::isnan(static_cast<double>(c)); }
          if (an || cn) {
            if (an && cn) return i < j;
            return largest ? an : cn;
          }
          if (a != c) return largest ? a > c : a < c;
          return i < j;
        };
        std::iota(order.begin(), order.end(), int64_t{0});
        std::partial_sort(order.begin(), order.begin() + k, order.end(), before);
        const int64_t ostart = outer * k * inner + in;
        for (int64_t r = 0; r < k; ++r) {
          vp[ostart + r * inner] = xp[start + order[static_cast<size_t>(r)] * inner];
          ip[ostart + r * inner] = order[static_cast<size_t>(r)];
        }
      }
    });
  }, "TopK");
}

}  // namespace

void register_reduce(Registry& r) {
  const char* types = "float16, float, double, bfloat16 (13+), int32, int64, uint32, uint64";
  const char* mm_types = "float16, float, double, bfloat16 (13+), int8/uint8 (12+), int32, int64, uint32, uint64";
  // Axes: an attribute before opset 18 (ReduceSum: before 13), an optional input from then on.
  r.add({"ReduceSum", "", 1, 18, types, reduce_kernel<Red::Sum, 13>});
  r.add({"ReduceMean", "", 1, 18, types, reduce_kernel<Red::Mean, 18>});
  r.add({"ReduceMax", "", 1, 18, mm_types, reduce_kernel<Red::Max, 18>});
  r.add({"ReduceMin", "", 1, 18, mm_types, reduce_kernel<Red::Min, 18>});
  r.add({"ReduceProd", "", 1, 18, types, reduce_kernel<Red::Prod, 18>});
  r.add({"ReduceL1", "", 1, 18, types, reduce_kernel<Red::L1, 18>});
  r.add({"ReduceL2", "", 1, 18, types, reduce_kernel<Red::L2, 18>});
  r.add({"ReduceLogSum", "", 1, 18, types, reduce_kernel<Red::LogSum, 18>});
  r.add({"ReduceLogSumExp", "", 1, 18, types, reduce_kernel<Red::LogSumExp, 18>});
  r.add({"ReduceSumSquare", "", 1, 18, types, reduce_kernel<Red::SumSquare, 18>});
  const char* arg_types = "all numeric types (bfloat16 from 13)";
  r.add({"ArgMax", "", 1, 18, arg_types, arg_kernel<true>});
  r.add({"ArgMin", "", 1, 18, arg_types, arg_kernel<false>});
  r.add({"CumSum", "", 11, 18, "float, double, int32, int64, uint32, uint64; float16, bfloat16 (14+)", cumsum});
  r.add({"TopK", "", 1, 18, "float16, float, double; integer types from opset 11", topk});
}

}  // namespace opennpu::cpu
