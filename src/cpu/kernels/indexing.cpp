// CPU reference kernels for indexing: Gather, GatherElements, GatherND, Scatter, ScatterElements,
// ScatterND, OneHot, NonZero, Compress, Unique.
// Every index read from a tensor is range-checked before use: an out-of-range index is an error
// naming the node, the input, the position and the value — never an out-of-bounds access.
// Gathers and scatters without reduction move bytes, so they take every dtype (strings too).
#include <cmath>
#include <functional>
#include <numeric>

#include "cpu/kernels/data_movement.h"

namespace opennpu::cpu {
namespace {

using dm::ElemCopy;

int64_t prod(const Shape& s, size_t from, size_t to) {
  int64_t p = 1;
  for (size_t i = from; i < to; ++i) p *= s[i];  // dims of an existing tensor: cannot overflow
  return p;
}

// ---------------------------------------------------------------- Gather family

void gather(KernelContext& ctx) {
  const Tensor& data = ctx.input(0);
  const Tensor& indices = ctx.input(1);
  ctx.check(data.rank() >= 1, "data must have rank >= 1");
  const int64_t axis = normalize_axis(ctx, ctx.node().attr_i("axis", 0), data.rank());
  auto idx = dm::read_ints(ctx, indices, "indices");
  const int64_t dim = data.dim(axis);
  for (size_t k = 0; k < idx.size(); ++k) idx[k] = dm::checked_index(ctx, idx[k], dim, "indices", static_cast<int64_t>(k));

  // Output: data.shape[:axis] + indices.shape + data.shape[axis+1:]
  const Shape& ds = data.shape();
  Shape os(ds.begin(), ds.begin() + axis);
  os.insert(os.end(), indices.shape().begin(), indices.shape().end());
  os.insert(os.end(), ds.begin() + axis + 1, ds.end());
  Tensor& out = ctx.alloc_output(0, data.dtype(), os);
  const int64_t outer = prod(ds, 0, axis), inner = prod(ds, axis + 1, ds.size());
  const int64_t n = static_cast<int64_t>(idx.size());
  ElemCopy copy(data, out);
  parallel_for(outer * n, [&](int64_t b, int64_t e) {
    for (int64_t r = b; r < e; ++r) {
      const int64_t o = r / n, k = r % n;
      copy.run(r * inner, (o * dim + idx[k]) * inner, inner);
    }
  });
}

// Shared walk of GatherElements / ScatterElements: for every position p of `indices` (row-major),
// calls fn(p, q) where q is the flat offset in `data` of p with its `axis` coordinate replaced by
// the (validated) index value. `indices` must have data's rank and fit inside data elsewhere.
template <class F>
void walk_elements(const KernelContext& ctx, const Tensor& data, const Tensor& indices, int64_t axis, F&& fn) {
  ctx.check(indices.rank() == data.rank(), "indices has rank {}, data has rank {}", indices.rank(), data.rank());
  for (int64_t d = 0; d < data.rank(); ++d)
    ctx.check(d == axis || indices.dim(d) <= data.dim(d), "indices shape {} does not fit data shape {} on axis {}",
              shape_str(indices.shape()), shape_str(data.shape()), d);
  const auto idx = dm::read_ints(ctx, indices, "indices");
  const auto dst = strides_of(data.shape());
  const int64_t r = data.rank(), dim = data.dim(axis);
  std::vector<int64_t> coord(r, 0);
  for (int64_t p = 0; p < indices.numel(); ++p) {
    int64_t q = 0;
    for (int64_t d = 0; d < r; ++d) {
      const int64_t c = d == axis ? dm::checked_index(ctx, idx[p], dim, "indices", p) : coord[d];
      q += c * dst[d];
    }
    fn(p, q);
    for (int64_t d = r - 1; d >= 0; --d) {  // advance the row-major coordinate of p
      if (++coord[d] < indices.dim(d)) break;
      coord[d] = 0;
    }
  }
}

void gather_elements(KernelContext& ctx) {
  const Tensor& data = ctx.input(0);
  const Tensor& indices = ctx.input(1);
  ctx.check(data.rank() >= 1, "data must have rank >= 1");
  const int64_t axis = normalize_axis(ctx, ctx.node().attr_i("axis", 0), data.rank());
  Tensor& out = ctx.alloc_output(0, data.dtype(), indices.shape());
  ElemCopy copy(data, out);
  walk_elements(ctx, data, indices, axis, [&](int64_t p, int64_t q) { copy.one(p, q); });
}

void gather_nd(KernelContext& ctx) {
  const Tensor& data = ctx.input(0);
  const Tensor& indices = ctx.input(1);
  ctx.check(indices.dtype() == DType::Int64, "indices must be int64, got {}", dtype_name(indices.dtype()));
  const int64_t b = ctx.opset() >= 12 ? ctx.node().attr_i("batch_dims", 0) : 0;
  const int64_t r = data.rank(), q = indices.rank();
  ctx.check(r >= 1 && q >= 1, "data and indices must have rank >= 1");
  ctx.check(b >= 0 && b < std::min(r, q), "batch_dims {} must be in [0, min(rank(data), rank(indices)) = {})", b,
            std::min(r, q));
  const int64_t m = indices.dim(q - 1);
  ctx.check(m >= 1 && m <= r - b, "indices' last dim {} must be in [1, rank(data) - batch_dims = {}]", m, r - b);
  for (int64_t d = 0; d < b; ++d)
    ctx.check(data.dim(d) == indices.dim(d), "batch dim {} differs: data {} vs indices {}", d, shape_str(data.shape()),
              shape_str(indices.shape()));
  // Output: indices.shape[:-1] + data.shape[b+m:]
  Shape os(indices.shape().begin(), indices.shape().end() - 1);
  os.insert(os.end(), data.shape().begin() + b + m, data.shape().end());
  Tensor& out = ctx.alloc_output(0, data.dtype(), os);

  const int64_t batches = prod(data.shape(), 0, b);
  const int64_t batch_block = prod(data.shape(), b, r);                  // data elements per batch
  const int64_t slice = prod(data.shape(), b + m, r);                    // elements per gathered slice
  const int64_t tuples = batches == 0 ? 0 : indices.numel() / m / batches;  // index tuples per batch
  const auto st = strides_of(data.shape());
  const int64_t* idx = indices.data<int64_t>();
  ElemCopy copy(data, out);
  for (int64_t bi = 0; bi < batches; ++bi)
    for (int64_t t = 0; t < tuples; ++t) {
      const int64_t tuple = bi * tuples + t;
      int64_t off = bi * batch_block;
      for (int64_t j = 0; j < m; ++j) {
        const int64_t pos = tuple * m + j;
        off += dm::checked_index(ctx, idx[pos], data.dim(b + j), "indices", pos) * st[b + j];
      }
      copy.run(tuple * slice, off, slice);
    }
}

// ---------------------------------------------------------------- Scatter family

enum class Reduction { None, Add, Mul };

Reduction read_reduction(const KernelContext& ctx) {
  if (ctx.opset() < 16) {
    ctx.check(!ctx.node().has_attr("reduction"), "attribute 'reduction' needs opset 16");
    return Reduction::None;
  }
  const std::string s = ctx.node().attr_s("reduction", "none");
  if (s == "none") return Reduction::None;
  if (s == "add") return Reduction::Add;
  if (s == "mul") return Reduction::Mul;
  ctx.fail("unknown reduction '{}' (none, add, mul)", s);
}

// Calls body(update) where update(di, si) combines updates[si] into out[di] by `red`.
// Updates are applied in order, so with duplicate indices the last write wins (reduction none)
// or every update is combined (add/mul), as ONNX specifies.
template <class Body>
void with_updater(const KernelContext& ctx, Reduction red, const Tensor& updates, Tensor& out, Body&& body) {
  if (red == Reduction::None) {
    ElemCopy c(updates, out);
    body([&](int64_t di, int64_t si) { c.one(di, si); });
    return;
  }
  ctx.check(out.dtype() != DType::String, "reduction add/mul needs a numeric tensor, got string");
  dispatch_numeric(out.dtype(), [&](auto tag) {
    using T = typename decltype(tag)::type;
    using C = compute_t<T>;
    T* d = out.data<T>();
    const T* s = updates.data<T>();
    if (red == Reduction::Add)
      body([&](int64_t di, int64_t si) { d[di] = from_compute<T>(static_cast<C>(C(d[di]) + C(s[si]))); });
    else
      body([&](int64_t di, int64_t si) { d[di] = from_compute<T>(static_cast<C>(C(d[di]) * C(s[si]))); });
  });
}

// ScatterElements (and the deprecated Scatter, which has the same meaning without reduction).
void scatter_elements(KernelContext& ctx) {
  const Tensor& data = ctx.input(0);
  const Tensor& indices = ctx.input(1);
  const Tensor& updates = ctx.input(2);
  ctx.check(data.rank() >= 1, "data must have rank >= 1");
  ctx.check(updates.dtype() == data.dtype(), "updates are {}, data is {}", dtype_name(updates.dtype()), dtype_name(data.dtype()));
  ctx.check(updates.shape() == indices.shape(), "updates shape {} differs from indices shape {}",
            shape_str(updates.shape()), shape_str(indices.shape()));
  const int64_t axis = normalize_axis(ctx, ctx.node().attr_i("axis", 0), data.rank());
  const Reduction red = ctx.node().op_type == "Scatter" ? Reduction::None : read_reduction(ctx);
  Tensor& out = ctx.alloc_output(0, data.dtype(), data.shape());
  ElemCopy(data, out).run(0, 0, data.numel());
  with_updater(ctx, red, updates, out, [&](auto&& update) {
    walk_elements(ctx, data, indices, axis, [&](int64_t p, int64_t q) { update(q, p); });
  });
}

void scatter_nd(KernelContext& ctx) {
  const Tensor& data = ctx.input(0);
  const Tensor& indices = ctx.input(1);
  const Tensor& updates = ctx.input(2);
  ctx.check(indices.dtype() == DType::Int64, "indices must be int64, got {}", dtype_name(indices.dtype()));
  ctx.check(updates.dtype() == data.dtype(), "updates are {}, data is {}", dtype_name(updates.dtype()), dtype_name(data.dtype()));
  const int64_t r = data.rank(), q = indices.rank();
  ctx.check(r >= 1 && q >= 1, "data and indices must have rank >= 1");
  const int64_t m = indices.dim(q - 1);
  ctx.check(m >= 1 && m <= r, "indices' last dim {} must be in [1, rank(data) = {}]", m, r);
  // updates.shape must be indices.shape[:-1] + data.shape[m:]
  Shape us(indices.shape().begin(), indices.shape().end() - 1);
  us.insert(us.end(), data.shape().begin() + m, data.shape().end());
  ctx.check(updates.shape() == us, "updates shape {} must be {}", shape_str(updates.shape()), shape_str(us));
  const Reduction red = read_reduction(ctx);

  Tensor& out = ctx.alloc_output(0, data.dtype(), data.shape());
  ElemCopy(data, out).run(0, 0, data.numel());
  const int64_t slice = prod(data.shape(), m, r);
  const int64_t tuples = indices.numel() / m;
  const auto st = strides_of(data.shape());
  const int64_t* idx = indices.data<int64_t>();
  with_updater(ctx, red, updates, out, [&](auto&& update) {
    for (int64_t t = 0; t < tuples; ++t) {
      int64_t off = 0;
      for (int64_t j = 0; j < m; ++j)
        off += dm::checked_index(ctx, idx[t * m + j], data.dim(j), "indices", t * m + j) * st[j];
      for (int64_t k = 0; k < slice; ++k) update(off + k, t * slice + k);
    }
  });
}

// ---------------------------------------------------------------- OneHot

void one_hot(KernelContext& ctx) {
  const Tensor& indices = ctx.input(0);
  const Tensor& depth_t = ctx.input(1);
  const Tensor& values = ctx.input(2);
  ctx.check(indices.dtype() != DType::String && indices.dtype() != DType::Bool, "indices must be numeric");
  ctx.check(depth_t.numel() == 1 && depth_t.dtype() != DType::String, "depth must be a numeric scalar");
  ctx.check(values.numel() == 2 && values.rank() == 1, "values must be [off_value, on_value], got shape {}",
            shape_str(values.shape()));
  const double depth_f = depth_t.get_f64(0);
  ctx.check(std::isfinite(depth_f) && depth_f >= 1 && depth_f < 9.0e18, "depth {} is invalid", depth_f);
  const int64_t depth = static_cast<int64_t>(depth_f);  // float depths are truncated, as ONNX's reference does
  const int64_t r = indices.rank();
  int64_t axis = ctx.node().attr_i("axis", -1);
  ctx.check(axis >= -(r + 1) && axis <= r, "axis {} is out of range for an output of rank {}", axis, r + 1);
  if (axis < 0) axis += r + 1;

  Shape os = indices.shape();
  os.insert(os.begin() + axis, depth);
  checked_numel(os, ctx.node().where());
  Tensor& out = ctx.alloc_output(0, values.dtype(), os);
  ElemCopy copy(values, out);
  for (int64_t i = 0; i < out.numel(); ++i) copy.one(i, 0);  // off_value everywhere
  const int64_t inner = prod(indices.shape(), axis, indices.shape().size());
  // Opset 11 counts negative indices from the end; out-of-range ones leave an all-off row.
  const int64_t lowest = ctx.opset() >= 11 ? -depth : 0;
  for (int64_t p = 0; p < indices.numel(); ++p) {
    const double v = indices.get_f64(p);
    if (!(v >= static_cast<double>(lowest) && v < static_cast<double>(depth))) continue;
    int64_t k = static_cast<int64_t>(v);
    if (k < 0) k += depth;
    const int64_t o = p / inner, in = p % inner;
    copy.one((o * depth + k) * inner + in, 1);
  }
}

// ---------------------------------------------------------------- NonZero, Compress

// Whether element i of x is "true": non-zero for numbers (-0.0 is zero), non-empty for strings.
std::vector<bool> truth_of(const Tensor& x) {
  std::vector<bool> t(static_cast<size_t>(x.numel()));
  if (x.dtype() == DType::String) {
    for (int64_t i = 0; i < x.numel(); ++i) t[i] = !x.strings()[i].empty();
    return t;
  }
  dispatch_numeric(x.dtype(), [&](auto tag) {
    using T = typename decltype(tag)::type;
    const T* p = x.data<T>();
    for (int64_t i = 0; i < x.numel(); ++i) t[i] = static_cast<compute_t<T>>(p[i]) != compute_t<T>(0);
  });
  return t;
}

void non_zero(KernelContext& ctx) {
  const Tensor& x = ctx.input(0);
  const auto truth = truth_of(x);
  const int64_t nnz = std::count(truth.begin(), truth.end(), true);
  // A scalar is treated as a 1-element vector (as numpy and ONNX Runtime do): one coordinate row.
  const Shape shape = x.rank() == 0 ? Shape{1} : x.shape();
  const int64_t r = static_cast<int64_t>(shape.size());
  Tensor& out = ctx.alloc_output(0, DType::Int64, {r, nnz});
  int64_t* o = out.data<int64_t>();
  int64_t col = 0;
  for (int64_t i = 0; i < x.numel(); ++i) {
    if (!truth[i]) continue;
    int64_t rem = i;
    for (int64_t d = r - 1; d >= 0; --d) {
      o[d * nnz + col] = rem % shape[d];
      rem /= shape[d];
    }
    ++col;
  }
}

void compress(KernelContext& ctx) {
  const Tensor& x = ctx.input(0);
  const Tensor& cond = ctx.input(1);
  ctx.check(cond.dtype() == DType::Bool && cond.rank() == 1, "condition must be a 1-D bool tensor, got {} {}",
            dtype_name(cond.dtype()), shape_str(cond.shape()));
  // Without an axis the input is flattened first.
  const bool has_axis = ctx.node().has_attr("axis");
  const Tensor src = has_axis ? x : x.reshaped({x.numel()});
  ctx.check(src.rank() >= 1, "input must have rank >= 1 when an axis is given");
  const int64_t axis = has_axis ? normalize_axis(ctx, ctx.node().attr_i("axis", 0), src.rank()) : 0;
  const int64_t dim = src.dim(axis);
  const uint8_t* c = cond.data<uint8_t>();
  // A shorter condition leaves the remaining slices unselected; a longer one may not select beyond.
  std::vector<int64_t> keep;
  for (int64_t i = 0; i < cond.numel(); ++i) {
    if (!c[i]) continue;
    ctx.check(i < dim, "condition selects index {} beyond the axis size {}", i, dim);
    keep.push_back(i);
  }
  Shape os = src.shape();
  os[axis] = static_cast<int64_t>(keep.size());
  Tensor& out = ctx.alloc_output(0, x.dtype(), os);
  const int64_t outer = prod(os, 0, axis), inner = prod(os, axis + 1, os.size());
  const int64_t k = static_cast<int64_t>(keep.size());
  ElemCopy copy(src, out);
  for (int64_t o = 0; o < outer; ++o)
    for (int64_t j = 0; j < k; ++j) copy.run((o * k + j) * inner, (o * dim + keep[j]) * inner, inner);
}

// ---------------------------------------------------------------- Unique

// Three-way comparison of elements a and b of x: numbers by value (NaN after every number and
// equal to NaN, so sorting stays a strict weak order), strings lexicographically.
template <class T>
int cmp_values(const T* p, int64_t a, int64_t b) {
  using C = compute_t<T>;
  const C x = static_cast<C>(p[a]), y = static_cast<C>(p[b]);
  if constexpr (std::is_floating_point_v<C>) {
    const bool nx = std::isnan(x), ny = std::isnan(y);
    if (nx || ny) return static_cast<int>(nx) - static_cast<int>(ny);
  }
  return x < y ? -1 : (y < x ? 1 : 0);
}

void unique(KernelContext& ctx) {
  const Tensor& x = ctx.input(0);
  const bool sorted = ctx.node().attr_i("sorted", 1) != 0;
  const bool has_axis = ctx.node().has_attr("axis");
  // Items are elements of the flattened input, or slices along `axis` (compared lexicographically
  // in row-major order of the remaining dims, as numpy.unique(axis=...) does).
  const Tensor src = has_axis ? x : x.reshaped({x.numel()});
  ctx.check(src.rank() >= 1, "input must have rank >= 1 when an axis is given");
  const int64_t axis = has_axis ? normalize_axis(ctx, ctx.node().attr_i("axis", 0), src.rank()) : 0;
  const int64_t n = src.dim(axis);
  const int64_t outer = prod(src.shape(), 0, axis), inner = prod(src.shape(), axis + 1, src.shape().size());
  // inverse_indices has n entries: hold n to the tensor memory limit before the work vectors below
  // (n may be huge when the slices are empty).
  ctx.check(static_cast<uint64_t>(n) <= max_tensor_bytes() / sizeof(int64_t),
            "{} items exceed the memory limit of {} bytes (--max-memory)", n, max_tensor_bytes());

  std::function<int(int64_t, int64_t)> cmp_elem;
  if (x.dtype() == DType::String) {
    const auto& s = x.strings();
    cmp_elem = [&s](int64_t a, int64_t b) { return s[a].compare(s[b]) < 0 ? -1 : (s[b].compare(s[a]) < 0 ? 1 : 0); };
  } else {
    dispatch_numeric(x.dtype(), [&](auto tag) {
      using T = typename decltype(tag)::type;
      const T* p = x.data<T>();
      cmp_elem = [p](int64_t a, int64_t b) { return cmp_values<T>(p, a, b); };
    });
  }
  auto cmp_item = [&](int64_t a, int64_t b) {
    for (int64_t o = 0; o < outer; ++o)
      for (int64_t k = 0; k < inner; ++k)
        if (int c = cmp_elem((o * n + a) * inner + k, (o * n + b) * inner + k)) return c;
    return 0;
  };

  // Stable sort keeps equal items in input order, so each group starts with its first occurrence.
  std::vector<int64_t> order(n);
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(), [&](int64_t a, int64_t b) { return cmp_item(a, b) < 0; });
  std::vector<int64_t> first, counts, group_of(n);
  for (int64_t i = 0; i < n; ++i) {
    if (i == 0 || cmp_item(order[i - 1], order[i]) != 0) {
      first.push_back(order[i]);
      counts.push_back(0);
    }
    group_of[order[i]] = static_cast<int64_t>(first.size()) - 1;
    ++counts.back();
  }
  const int64_t u = static_cast<int64_t>(first.size());
  // Unsorted output lists the groups in order of first occurrence.
  std::vector<int64_t> rank_of(u);  // output position of each group
  std::iota(rank_of.begin(), rank_of.end(), 0);
  if (!sorted) {
    std::vector<int64_t> g(u);
    std::iota(g.begin(), g.end(), 0);
    std::sort(g.begin(), g.end(), [&](int64_t a, int64_t b) { return first[a] < first[b]; });
    for (int64_t k = 0; k < u; ++k) rank_of[g[k]] = k;
  }

  Shape ys = src.shape();
  ys[axis] = u;
  Tensor& y = ctx.alloc_output(0, x.dtype(), ys);
  ElemCopy copy(src, y);
  for (int64_t gi = 0; gi < u; ++gi)
    for (int64_t o = 0; o < outer; ++o) copy.run((o * u + rank_of[gi]) * inner, (o * n + first[gi]) * inner, inner);
  if (ctx.num_outputs() > 1 && ctx.output_wanted(1)) {
    Tensor& t = ctx.alloc_output(1, DType::Int64, {u});
    for (int64_t gi = 0; gi < u; ++gi) t.data<int64_t>()[rank_of[gi]] = first[gi];
  }
  if (ctx.num_outputs() > 2 && ctx.output_wanted(2)) {
    Tensor& t = ctx.alloc_output(2, DType::Int64, {n});
    for (int64_t i = 0; i < n; ++i) t.data<int64_t>()[i] = rank_of[group_of[i]];
  }
  if (ctx.num_outputs() > 3 && ctx.output_wanted(3)) {
    Tensor& t = ctx.alloc_output(3, DType::Int64, {u});
    for (int64_t gi = 0; gi < u; ++gi) t.data<int64_t>()[rank_of[gi]] = counts[gi];
  }
}

}  // namespace

void register_indexing(Registry& r) {
  const std::string all = "all (numeric, bool, string)";
  r.add({"Gather", "", 1, 17, all + "; indices int32/int64", gather});
  r.add({"GatherElements", "", 11, 17, all + "; indices int32/int64", gather_elements});
  r.add({"GatherND", "", 11, 17, all + "; indices int64", gather_nd});
  // Scatter was deprecated in opset 11 in favour of ScatterElements (same meaning).
  r.add({"Scatter", "", 9, 10, all + "; indices int32/int64", scatter_elements});
  r.add({"ScatterElements", "", 11, 17, all + " (add/mul: numeric, bool); indices int32/int64", scatter_elements});
  r.add({"ScatterND", "", 11, 17, all + " (add/mul: numeric, bool); indices int64", scatter_nd});
  r.add({"OneHot", "", 9, 17, "indices/depth numeric; values all", one_hot});
  r.add({"NonZero", "", 9, 17, all, non_zero});
  r.add({"Compress", "", 9, 17, all, compress});
  r.add({"Unique", "", 11, 17, all, unique});
}

}  // namespace opennpu::cpu
