// CPU reference kernels for data movement and shapes: Identity, Constant, ConstantOfShape, Shape,
// Size, Reshape, Flatten, Squeeze, Unsqueeze, Transpose, Concat, Split, Slice, Pad, Expand, Tile,
// Range, EyeLike, DepthToSpace, SpaceToDepth, Trilu, ReverseSequence.
// All but Range and EyeLike only move elements, so they take every dtype (bytes copied by
// dtype_size, strings by value). Every shape, axis or size read from an input or attribute is
// validated before it is used to index anything.
#include <cmath>
#include <numeric>

#include "cpu/kernels/data_movement.h"

namespace opennpu::cpu {
namespace {

using dm::ElemCopy;
using dm::kPad;

// a * b, or a clear error when it does not fit in int64 (sizes computed from user data).
int64_t mul_checked(const KernelContext& ctx, int64_t a, int64_t b, const char* what) {
  int64_t r = 0;
  if (__builtin_mul_overflow(a, b, &r)) ctx.fail("{} overflows int64 ({} * {})", what, a, b);
  return r;
}

int64_t prod(const Shape& s, size_t from, size_t to) {
  int64_t p = 1;
  for (size_t i = from; i < to; ++i) p *= s[i];  // dims of an existing tensor: cannot overflow
  return p;
}

// Copies x (any dtype) into a new tensor whose dim d is x's dim perm[d].
Tensor transpose_copy(const Tensor& x, const std::vector<int64_t>& perm) {
  Shape os(perm.size());
  for (size_t d = 0; d < perm.size(); ++d) os[d] = x.dim(perm[d]);
  Tensor out(x.dtype(), os);
  // An empty tensor may still have one huge dim: build no offset tables for it.
  if (out.numel() == 0) return out;
  const auto st = strides_of(x.shape());
  std::vector<std::vector<int64_t>> offs(perm.size());
  for (size_t d = 0; d < perm.size(); ++d) {
    offs[d].resize(static_cast<size_t>(os[d]));
    for (int64_t i = 0; i < os[d]; ++i) offs[d][i] = i * st[perm[d]];
  }
  dm::gather_separable(x, out, offs);
  return out;
}

// ---------------------------------------------------------------- Identity, Constant, Shape, Size

// Tensors, sequences and optionals alike pass through; the buffer is shared (values are immutable).
void identity(KernelContext& ctx) { ctx.set_output(0, ctx.input(0)); }

void constant(KernelContext& ctx) {
  const ir::Node& n = ctx.node();
  if (n.has_attr("sparse_value")) ctx.fail("attribute sparse_value is not supported (opennpu has no sparse tensors)");
  static const char* kKinds[] = {"value", "value_float", "value_floats", "value_int", "value_ints", "value_string",
                                 "value_strings"};
  int given = 0;
  for (const char* k : kKinds) given += n.has_attr(k) ? 1 : 0;
  ctx.check(given == 1, "needs exactly one of value, value_float(s), value_int(s), value_string(s); got {}", given);

  if (const Tensor* t = n.attr_t("value")) {
    ctx.set_output(0, *t);
  } else if (n.has_attr("value_float")) {
    ctx.set_output(0, Tensor::scalar_f32(n.attr_f("value_float", 0)));
  } else if (n.has_attr("value_floats")) {
    auto v = n.attr_floats("value_floats");
    Tensor& t = ctx.alloc_output(0, DType::Float32, {static_cast<int64_t>(v.size())});
    std::copy(v.begin(), v.end(), t.data<float>());
  } else if (n.has_attr("value_int")) {
    ctx.set_output(0, Tensor::scalar_i64(n.attr_i("value_int", 0)));
  } else if (n.has_attr("value_ints")) {
    auto v = n.attr_ints("value_ints");
    Tensor& t = ctx.alloc_output(0, DType::Int64, {static_cast<int64_t>(v.size())});
    std::copy(v.begin(), v.end(), t.data<int64_t>());
  } else if (n.has_attr("value_string")) {
    Tensor& t = ctx.alloc_output(0, DType::String, {});
    t.strings()[0] = n.attr_s("value_string", "");
  } else {
    auto v = n.attr_strings("value_strings");
    Tensor& t = ctx.alloc_output(0, DType::String, {static_cast<int64_t>(v.size())});
    t.strings() = v;
  }
}

void constant_of_shape(KernelContext& ctx) {
  Shape shape = dm::read_shape_input(ctx, ctx.input(0), "input");
  for (int64_t d : shape) ctx.check(d >= 0, "shape {} has a negative dimension", shape_str(shape));
  Tensor value = dm::scalar_of(DType::Float32, 0.0);  // ONNX default: float32 zero
  if (const Tensor* v = ctx.node().attr_t("value")) {
    ctx.check(v->numel() == 1, "attribute 'value' must hold exactly one element, got shape {}", shape_str(v->shape()));
    value = *v;
  }
  checked_numel(shape, ctx.node().where());
  Tensor& out = ctx.alloc_output(0, value.dtype(), shape);
  ElemCopy copy(value, out);
  for (int64_t i = 0; i < out.numel(); ++i) copy.one(i, 0);
}

void shape_op(KernelContext& ctx) {
  const Tensor& x = ctx.input(0);
  const int64_t r = x.rank();
  int64_t start = 0, end = r;
  if (ctx.opset() >= 15) {  // start/end select a slice of the shape, clamped like Slice
    auto clamp = [r](int64_t v) { return std::clamp<int64_t>(v < 0 ? v + r : v, 0, r); };
    start = clamp(ctx.node().attr_i("start", 0));
    if (ctx.node().has_attr("end")) end = clamp(ctx.node().attr_i("end", r));
  }
  const int64_t n = std::max<int64_t>(end - start, 0);
  Tensor& out = ctx.alloc_output(0, DType::Int64, {n});
  for (int64_t i = 0; i < n; ++i) out.data<int64_t>()[i] = x.dim(start + i);
}

void size_op(KernelContext& ctx) { ctx.set_output(0, Tensor::scalar_i64(ctx.input(0).numel())); }

// ---------------------------------------------------------------- Reshape, Flatten, Squeeze, Unsqueeze

void reshape(KernelContext& ctx) {
  const Tensor& x = ctx.input(0);
  Shape req;
  if (ctx.opset() < 5) {
    ctx.check(ctx.node().has_attr("shape"), "attribute 'shape' is required before opset 5");
    req = ctx.node().attr_ints("shape");
  } else {
    req = dm::read_shape_input(ctx, ctx.input(1), "shape");
  }
  // allowzero (opset 14): a 0 is a real zero-size dim instead of "copy the input's dim".
  const bool allowzero = ctx.opset() >= 14 && ctx.node().attr_i("allowzero", 0) != 0;
  int64_t infer = -1, known = 1;
  bool has_zero = false;
  for (size_t i = 0; i < req.size(); ++i) {
    int64_t& d = req[i];
    if (d == -1) {
      ctx.check(infer < 0, "shape {} has more than one -1", shape_str(req));
      infer = static_cast<int64_t>(i);
      continue;
    }
    if (d == 0 && !allowzero) {
      ctx.check(static_cast<int64_t>(i) < x.rank(), "shape {}: 0 at position {} copies an input dim, but the input has rank {}",
                shape_str(req), i, x.rank());
      d = x.dim(static_cast<int64_t>(i));
    }
    ctx.check(d >= 0, "shape {} has an invalid dimension {}", shape_str(req), d);
    has_zero |= d == 0;
    known = mul_checked(ctx, known, d, "reshape target size");
  }
  if (infer >= 0) {
    ctx.check(!(allowzero && has_zero), "shape {} has both 0 and -1 with allowzero=1", shape_str(req));
    ctx.check(known != 0 && x.numel() % known == 0, "cannot infer the -1 in shape {} for an input of shape {}",
              shape_str(req), shape_str(x.shape()));
    req[infer] = x.numel() / known;
  } else {
    ctx.check(known == x.numel(), "cannot reshape {} ({} elements) to {}", shape_str(x.shape()), x.numel(), shape_str(req));
  }
  ctx.set_output(0, x.reshaped(req));
}

void flatten(KernelContext& ctx) {
  const Tensor& x = ctx.input(0);
  const int64_t r = x.rank();
  int64_t axis = ctx.node().attr_i("axis", 1);
  ctx.check(axis >= -r && axis <= r, "axis {} is out of range [-{}, {}]", axis, r, r);
  if (axis < 0) axis += r;
  const auto& s = x.shape();
  ctx.set_output(0, x.reshaped({prod(s, 0, axis), prod(s, axis, s.size())}));
}

void squeeze(KernelContext& ctx) {
  const Tensor& x = ctx.input(0);
  std::vector<int64_t> axes;
  bool given = false;
  if (ctx.opset() >= 13) {
    if (const Tensor* a = ctx.optional_input(1)) {
      axes = dm::read_ints(ctx, *a, "axes");
      given = true;
    }
  } else if (ctx.node().has_attr("axes")) {
    axes = ctx.node().attr_ints("axes");
    given = true;
  }
  std::vector<bool> drop(x.rank(), false);
  if (given) {
    for (int64_t a : dm::normalize_axes(ctx, axes, x.rank())) {
      ctx.check(x.dim(a) == 1, "cannot squeeze axis {} of shape {}: its size is not 1", a, shape_str(x.shape()));
      drop[a] = true;
    }
  } else {
    for (int64_t d = 0; d < x.rank(); ++d) drop[d] = x.dim(d) == 1;
  }
  Shape out;
  for (int64_t d = 0; d < x.rank(); ++d)
    if (!drop[d]) out.push_back(x.dim(d));
  ctx.set_output(0, x.reshaped(out));
}

void unsqueeze(KernelContext& ctx) {
  const Tensor& x = ctx.input(0);
  std::vector<int64_t> axes;
  if (ctx.opset() >= 13) {
    axes = dm::read_ints(ctx, ctx.input(1), "axes");
  } else {
    ctx.check(ctx.node().has_attr("axes"), "attribute 'axes' is required before opset 13");
    axes = ctx.node().attr_ints("axes");
  }
  // Axes refer to the output, whose rank is rank(x) + len(axes).
  const int64_t out_rank = x.rank() + static_cast<int64_t>(axes.size());
  std::vector<bool> inserted(out_rank, false);
  for (int64_t a : dm::normalize_axes(ctx, axes, out_rank)) inserted[a] = true;
  Shape out;
  int64_t next = 0;
  for (int64_t d = 0; d < out_rank; ++d) out.push_back(inserted[d] ? 1 : x.dim(next++));
  ctx.set_output(0, x.reshaped(out));
}

// ---------------------------------------------------------------- Transpose, Concat, Split

void transpose(KernelContext& ctx) {
  const Tensor& x = ctx.input(0);
  const int64_t r = x.rank();
  std::vector<int64_t> perm(r);
  for (int64_t d = 0; d < r; ++d) perm[d] = r - 1 - d;  // default: reverse the dims
  if (ctx.node().has_attr("perm")) perm = ctx.node().attr_ints("perm");
  ctx.check(static_cast<int64_t>(perm.size()) == r, "perm has {} entries for an input of rank {}", perm.size(), r);
  std::vector<bool> seen(r, false);
  for (int64_t p : perm) {
    ctx.check(p >= 0 && p < r && !seen[p], "perm is not a permutation of 0..{}", r - 1);
    seen[p] = true;
  }
  ctx.set_output(0, transpose_copy(x, perm));
}

void concat(KernelContext& ctx) {
  ctx.check(ctx.num_inputs() >= 1, "needs at least one input");
  const Tensor& first = ctx.input(0);
  // Opset 1 made axis optional (default 1); from opset 4 it is required.
  ctx.check(ctx.opset() < 4 || ctx.node().has_attr("axis"), "attribute 'axis' is required");
  ctx.check(first.rank() >= 1, "inputs must have rank >= 1");
  const int64_t axis = normalize_axis(ctx, ctx.node().attr_i("axis", 1), first.rank());
  Shape out_shape = first.shape();
  out_shape[axis] = 0;
  for (size_t k = 0; k < ctx.num_inputs(); ++k) {
    const Tensor& t = ctx.input(k);
    ctx.check(t.dtype() == first.dtype(), "input {} is {}, input 0 is {}", k, dtype_name(t.dtype()), dtype_name(first.dtype()));
    ctx.check(t.rank() == first.rank(), "input {} has rank {}, input 0 has rank {}", k, t.rank(), first.rank());
    for (int64_t d = 0; d < t.rank(); ++d)
      ctx.check(d == axis || t.dim(d) == first.dim(d), "input {} has shape {}, incompatible with {} on axis {}", k,
                shape_str(t.shape()), shape_str(first.shape()), axis);
    out_shape[axis] += t.dim(axis);  // sum of real dims of allocated tensors: no overflow in practice
  }
  Tensor& out = ctx.alloc_output(0, first.dtype(), out_shape);
  const int64_t outer = prod(out_shape, 0, axis), inner = prod(out_shape, axis + 1, out_shape.size());
  const int64_t out_row = out_shape[axis] * inner;
  int64_t col = 0;  // where input k's block starts within each output row
  for (size_t k = 0; k < ctx.num_inputs(); ++k) {
    const Tensor& t = ctx.input(k);
    const int64_t block = t.dim(axis) * inner;
    ElemCopy copy(t, out);
    parallel_for(outer, [&](int64_t o0, int64_t o1) {
      for (int64_t o = o0; o < o1; ++o) copy.run(o * out_row + col, o * block, block);
    });
    col += block;
  }
}

void split(KernelContext& ctx) {
  const Tensor& x = ctx.input(0);
  ctx.check(x.rank() >= 1, "input must have rank >= 1");
  const int64_t axis = normalize_axis(ctx, ctx.node().attr_i("axis", 0), x.rank());
  const int64_t n_out = static_cast<int64_t>(ctx.num_outputs());
  const int64_t dim = x.dim(axis);
  // Split sizes: an attribute before opset 13 (opset 1 also took an input), an input from 13.
  std::vector<int64_t> sizes;
  bool given = false;
  if ((ctx.opset() >= 13 || ctx.opset() == 1) && ctx.has_input(1)) {
    sizes = dm::read_ints(ctx, ctx.input(1), "split");
    given = true;
  } else if (ctx.opset() < 13 && ctx.node().has_attr("split")) {
    sizes = ctx.node().attr_ints("split");
    given = true;
  }
  if (!given) {
    ctx.check(n_out > 0 && dim % n_out == 0, "cannot split a dimension of {} into {} equal parts", dim, n_out);
    sizes.assign(n_out, dim / n_out);
  }
  ctx.check(static_cast<int64_t>(sizes.size()) == n_out, "split has {} entries for {} outputs", sizes.size(), n_out);
  int64_t total = 0;
  for (int64_t s : sizes) {
    ctx.check(s >= 0 && s <= dim, "split size {} is invalid for a dimension of {}", s, dim);
    total += s;  // each <= dim, so no overflow
  }
  ctx.check(total == dim, "split sizes sum to {} but the dimension on axis {} is {}", total, axis, dim);
  const int64_t outer = prod(x.shape(), 0, axis), inner = prod(x.shape(), axis + 1, x.shape().size());
  int64_t col = 0;
  for (int64_t k = 0; k < n_out; ++k) {
    Shape s = x.shape();
    s[axis] = sizes[k];
    Tensor& out = ctx.alloc_output(k, x.dtype(), s);
    const int64_t block = sizes[k] * inner;
    ElemCopy copy(x, out);
    for (int64_t o = 0; o < outer; ++o) copy.run(o * block, o * dim * inner + col, block);
    col += block;
  }
}

// ---------------------------------------------------------------- Slice

void slice(KernelContext& ctx) {
  const Tensor& x = ctx.input(0);
  const int64_t r = x.rank();
  std::vector<int64_t> starts, ends, axes, steps;
  if (ctx.opset() < 10) {
    const ir::Node& n = ctx.node();
    ctx.check(n.has_attr("starts") && n.has_attr("ends"), "attributes 'starts' and 'ends' are required before opset 10");
    starts = n.attr_ints("starts");
    ends = n.attr_ints("ends");
    axes = n.attr_ints("axes");
  } else {
    starts = dm::read_ints(ctx, ctx.input(1), "starts");
    ends = dm::read_ints(ctx, ctx.input(2), "ends");
    if (const Tensor* a = ctx.optional_input(3)) axes = dm::read_ints(ctx, *a, "axes");
    if (const Tensor* s = ctx.optional_input(4)) steps = dm::read_ints(ctx, *s, "steps");
  }
  ctx.check(starts.size() == ends.size(), "starts has {} entries, ends {}", starts.size(), ends.size());
  if (axes.empty() && !(ctx.opset() >= 10 && ctx.has_input(3))) {
    axes.resize(starts.size());
    std::iota(axes.begin(), axes.end(), 0);
  }
  if (steps.empty() && !(ctx.opset() >= 10 && ctx.has_input(4))) steps.assign(starts.size(), 1);
  ctx.check(axes.size() == starts.size() && steps.size() == starts.size(),
            "starts, ends, axes and steps must have the same length ({}, {}, {}, {})", starts.size(), ends.size(),
            axes.size(), steps.size());
  axes = dm::normalize_axes(ctx, axes, r);

  // Per dim: first source index, step and count; dims not sliced are taken whole.
  std::vector<int64_t> first(r, 0), step(r, 1);
  Shape out_shape = x.shape();
  for (size_t i = 0; i < axes.size(); ++i) {
    const int64_t a = axes[i], dim = x.dim(a), st = steps[i];
    ctx.check(st != 0, "step on axis {} is 0", a);
    // Negative start/end count from the end; then clamp exactly as ONNX specifies.
    int64_t s = starts[i] < 0 ? starts[i] + dim : starts[i];
    int64_t e = ends[i] < 0 ? ends[i] + dim : ends[i];
    int64_t count;
    if (st > 0) {
      s = std::clamp<int64_t>(s, 0, dim);
      e = std::clamp<int64_t>(e, 0, dim);
      count = e > s ? (e - s - 1) / st + 1 : 0;
    } else {
      s = std::clamp<int64_t>(s, 0, dim - 1);
      e = std::clamp<int64_t>(e, -1, dim - 1);
      const uint64_t mag = static_cast<uint64_t>(-(st + 1)) + 1;  // |st| without overflowing on INT64_MIN
      count = s > e ? static_cast<int64_t>(static_cast<uint64_t>(s - e - 1) / mag) + 1 : 0;
    }
    first[a] = s;
    step[a] = st;
    out_shape[a] = count;
  }
  Tensor& out = ctx.alloc_output(0, x.dtype(), out_shape);
  if (out.numel() == 0) return;  // (an empty tensor may still have one huge dim: no tables for it)
  const auto in_st = strides_of(x.shape());
  std::vector<std::vector<int64_t>> offs(r);
  for (int64_t d = 0; d < r; ++d) {
    offs[d].resize(static_cast<size_t>(out_shape[d]));
    for (int64_t i = 0; i < out_shape[d]; ++i) offs[d][i] = (first[d] + i * step[d]) * in_st[d];
  }
  dm::gather_separable(x, out, offs);
}

// ---------------------------------------------------------------- Pad

void pad(KernelContext& ctx) {
  const Tensor& x = ctx.input(0);
  const int64_t r = x.rank();
  const ir::Node& n = ctx.node();
  const std::string mode = n.attr_s("mode", "constant");
  ctx.check(mode == "constant" || mode == "reflect" || mode == "edge", "unknown mode '{}' (constant, reflect, edge)", mode);
  std::vector<int64_t> pads;
  Tensor fill = dm::scalar_of(x.dtype(), 0.0);
  if (ctx.opset() < 11) {
    // Opset 1 called the attribute 'paddings'; opset 2-10 'pads'. The fill is a float attribute.
    const char* name = ctx.opset() < 2 ? "paddings" : "pads";
    ctx.check(n.has_attr(name), "attribute '{}' is required", name);
    pads = n.attr_ints(name);
    if (x.dtype() != DType::String) fill = dm::scalar_of(x.dtype(), n.attr_f("value", 0.0f));
  } else {
    pads = dm::read_shape_input(ctx, ctx.input(1), "pads");
    if (const Tensor* v = ctx.optional_input(2); v && v->numel() > 0) {
      ctx.check(v->dtype() == x.dtype(), "constant_value is {} but data is {}", dtype_name(v->dtype()), dtype_name(x.dtype()));
      ctx.check(v->numel() == 1, "constant_value must be a scalar, got shape {}", shape_str(v->shape()));
      fill = v->reshaped({});
    }
  }
  ctx.check(static_cast<int64_t>(pads.size()) == 2 * r, "pads has {} entries, expected 2 * rank = {}", pads.size(), 2 * r);

  Shape out_shape(r);
  for (int64_t d = 0; d < r; ++d) {
    const int64_t dim = x.dim(d), b = pads[d], e = pads[d + r];
    int64_t od = 0;
    if (__builtin_add_overflow(dim, b, &od) || __builtin_add_overflow(od, e, &od) || od < 0)
      ctx.fail("pads ({}, {}) on axis {} give an invalid output size for a dimension of {}", b, e, d, dim);
    out_shape[d] = od;
  }
  Tensor& out = ctx.alloc_output(0, x.dtype(), out_shape);  // enforces the memory limit first
  if (out.numel() == 0) return;
  const auto in_st = strides_of(x.shape());
  std::vector<std::vector<int64_t>> offs(r);
  for (int64_t d = 0; d < r; ++d) {
    const int64_t dim = x.dim(d), b = pads[d], e = pads[d + r], od = out_shape[d];
    // Negative pads crop: the kept source range is [lo, hi). Output o reads source o - b.
    const int64_t lo = std::max<int64_t>(0, -b), hi = dim - std::max<int64_t>(0, -e);
    if (mode != "constant" && od > 0)
      ctx.check(hi > lo, "mode '{}' cannot pad axis {}: no source elements remain", mode, d);
    offs[d].resize(static_cast<size_t>(od));
    for (int64_t o = 0; o < od; ++o) {
      int64_t i = o - b;
      if (i < lo || i >= hi) {
        if (mode == "constant") {
          offs[d][o] = kPad;
          continue;
        }
        if (mode == "edge") {
          i = std::clamp(i, lo, hi - 1);
        } else {  // reflect (numpy 'reflect': mirror without repeating the edge, periodically)
          const int64_t len = hi - lo;
          if (len == 1) {
            i = lo;
          } else {
            const int64_t period = 2 * (len - 1);
            int64_t k = (i - lo) % period;
            if (k < 0) k += period;
            i = lo + (k < len ? k : period - k);
          }
        }
      }
      offs[d][o] = i * in_st[d];
    }
  }
  dm::gather_separable(x, out, offs, &fill);
}

// ---------------------------------------------------------------- Expand, Tile

void expand(KernelContext& ctx) {
  const Tensor& x = ctx.input(0);
  Shape shape = dm::read_shape_input(ctx, ctx.input(1), "shape");
  for (int64_t d : shape) ctx.check(d >= 0, "shape {} has a negative dimension", shape_str(shape));
  const Shape out_shape = broadcast_shapes({x.shape(), shape}, ctx.node().where());
  // Allocate first: it enforces the memory limit, after which every dim is bounded by numel and
  // the per-dim offset tables below are small. An empty output needs no tables at all.
  Tensor& out = ctx.alloc_output(0, x.dtype(), out_shape);
  if (out.numel() == 0) return;
  const auto st = broadcast_strides(x.shape(), out_shape);
  std::vector<std::vector<int64_t>> offs(out_shape.size());
  for (size_t d = 0; d < out_shape.size(); ++d) {
    offs[d].resize(static_cast<size_t>(out_shape[d]));
    for (int64_t i = 0; i < out_shape[d]; ++i) offs[d][i] = i * st[d];
  }
  dm::gather_separable(x, out, offs);
}

void tile(KernelContext& ctx) {
  const Tensor& x = ctx.input(0);
  const int64_t r = x.rank();
  std::vector<int64_t> reps(r, 1);
  if (ctx.opset() < 6) {  // opset 1: scalar 'tiles' repeats along the scalar 'axis'
    const int64_t tiles = dm::read_scalar_i64(ctx, ctx.input(1), "tiles");
    const int64_t axis = normalize_axis(ctx, dm::read_scalar_i64(ctx, ctx.input(2), "axis"), r);
    reps[axis] = tiles;
  } else {
    reps = dm::read_shape_input(ctx, ctx.input(1), "repeats");
    ctx.check(static_cast<int64_t>(reps.size()) == r, "repeats has {} entries for an input of rank {}", reps.size(), r);
  }
  // Tiling is a broadcast of x viewed as [1,d0,1,d1,...] to [r0,d0,r1,d1,...]: the repeat dims
  // have source stride 0. The output [r0*d0, r1*d1, ...] is that view's buffer.
  Shape out_shape(r);
  for (int64_t d = 0; d < r; ++d) {
    ctx.check(reps[d] >= 0, "repeat {} on axis {} is negative", reps[d], d);
    out_shape[d] = mul_checked(ctx, x.dim(d), reps[d], "tiled dimension");
  }
  Tensor& out = ctx.alloc_output(0, x.dtype(), out_shape);  // enforces the memory limit first
  if (out.numel() == 0) return;
  const auto st = strides_of(x.shape());
  Shape view_shape;
  std::vector<std::vector<int64_t>> offs;
  for (int64_t d = 0; d < r; ++d) {
    view_shape.push_back(reps[d]);
    view_shape.push_back(x.dim(d));
    offs.emplace_back(static_cast<size_t>(reps[d]), 0);
    offs.emplace_back(static_cast<size_t>(x.dim(d)));
    for (int64_t i = 0; i < x.dim(d); ++i) offs.back()[i] = i * st[d];
  }
  Tensor view = out.reshaped(view_shape);  // shares out's buffer
  dm::gather_separable(x, view, offs);
}

// ---------------------------------------------------------------- Range, EyeLike

template <class T>
void range_typed(KernelContext& ctx, const Tensor& a, const Tensor& b, const Tensor& c) {
  const T start = a.data<T>()[0], limit = b.data<T>()[0], delta = c.data<T>()[0];
  ctx.check(delta != T(0), "delta is 0");
  if constexpr (std::is_integral_v<T>) {
    // Exact integer count ceil((limit - start) / delta) in 128 bits: no overflow for any int64.
    const __int128 diff = static_cast<__int128>(limit) - start, dl = delta;
    const __int128 n = (diff > 0) == (dl > 0) && diff != 0 ? (diff + dl + (dl > 0 ? -1 : 1)) / dl : 0;
    ctx.check(n <= std::numeric_limits<int64_t>::max(), "start {}, limit {}, delta {} give more elements than int64 can count",
              start, limit, delta);
    Tensor& out = ctx.alloc_output(0, a.dtype(), {static_cast<int64_t>(n)});
    for (int64_t i = 0; i < out.numel(); ++i) out.data<T>()[i] = static_cast<T>(start + static_cast<__int128>(i) * dl);
  } else {
    const double len = std::ceil((static_cast<double>(limit) - start) / delta);
    ctx.check(std::isfinite(len), "start {}, limit {}, delta {} give no finite length", start, limit, delta);
    ctx.check(len < 9.0e18, "start {}, limit {}, delta {} give a length too large to count", start, limit, delta);
    const int64_t n = std::max<int64_t>(0, static_cast<int64_t>(len));
    Tensor& out = ctx.alloc_output(0, a.dtype(), {n});
    for (int64_t i = 0; i < n; ++i) out.data<T>()[i] = static_cast<T>(start + static_cast<double>(i) * delta);
  }
}

void range_op(KernelContext& ctx) {
  const Tensor &a = ctx.input(0), &b = ctx.input(1), &c = ctx.input(2);
  const char* names[] = {"start", "limit", "delta"};
  const Tensor* ins[] = {&a, &b, &c};
  for (int k = 0; k < 3; ++k) {
    ctx.check(ins[k]->numel() == 1 && ins[k]->rank() <= 1, "input '{}' must be a scalar, got shape {}", names[k],
              shape_str(ins[k]->shape()));
    ctx.check(ins[k]->dtype() == a.dtype(), "inputs must share one dtype ({} vs {})", dtype_name(ins[k]->dtype()),
              dtype_name(a.dtype()));
  }
  switch (a.dtype()) {
    case DType::Float32: range_typed<float>(ctx, a, b, c); break;
    case DType::Float64: range_typed<double>(ctx, a, b, c); break;
    case DType::Int16: range_typed<int16_t>(ctx, a, b, c); break;
    case DType::Int32: range_typed<int32_t>(ctx, a, b, c); break;
    case DType::Int64: range_typed<int64_t>(ctx, a, b, c); break;
    default: ctx.fail("unsupported dtype {} (float, double, int16, int32, int64)", dtype_name(a.dtype()));
  }
}

void eye_like(KernelContext& ctx) {
  const Tensor& x = ctx.input(0);
  ctx.check(x.rank() == 2, "input must be 2-D, got shape {}", shape_str(x.shape()));
  DType dt = x.dtype();
  if (ctx.node().has_attr("dtype")) {
    const int64_t onnx_type = ctx.node().attr_i("dtype", 0);
    try {
      dt = dtype_from_onnx(static_cast<int>(onnx_type));
    } catch (const Error& e) {
      ctx.fail("attribute dtype: {}", e.what());
    }
  }
  ctx.check(dt != DType::String && dt != DType::BFloat16, "output dtype {} is not allowed", dtype_name(dt));
  const int64_t k = ctx.node().attr_i("k", 0);
  Tensor& out = ctx.alloc_output(0, dt, x.shape());
  const Tensor one = dm::scalar_of(dt, 1.0);
  ElemCopy copy(one, out);
  const int64_t rows = x.dim(0), cols = x.dim(1);
  if (k >= cols || k <= -rows) return;  // the diagonal misses the matrix (and i + k cannot overflow below)
  for (int64_t i = 0; i < rows; ++i) {
    const int64_t j = i + k;
    if (j >= 0 && j < cols) copy.one(i * cols + j, 0);
  }
}

// ---------------------------------------------------------------- DepthToSpace, SpaceToDepth

int64_t blocksize_of(KernelContext& ctx) {
  ctx.check(ctx.node().has_attr("blocksize"), "attribute 'blocksize' is required");
  const int64_t b = ctx.node().attr_i("blocksize", 0);
  ctx.check(b > 0 && b < (int64_t{1} << 31), "blocksize {} is invalid", b);
  return b;
}

void depth_to_space(KernelContext& ctx) {
  const Tensor& x = ctx.input(0);
  ctx.check(x.rank() == 4, "input must be 4-D (N,C,H,W), got shape {}", shape_str(x.shape()));
  const int64_t b = blocksize_of(ctx);
  const int64_t N = x.dim(0), C = x.dim(1), H = x.dim(2), W = x.dim(3);
  ctx.check(C % (b * b) == 0, "channels {} are not divisible by blocksize^2 = {}", C, b * b);
  const std::string mode = ctx.opset() >= 11 ? ctx.node().attr_s("mode", "DCR") : "DCR";
  ctx.check(mode == "DCR" || mode == "CRD", "unknown mode '{}' (DCR, CRD)", mode);
  const int64_t c = C / (b * b);
  // DCR: channels are (b, b, c); CRD: (c, b, b). Move the block dims next to H and W.
  Tensor view = mode == "DCR" ? x.reshaped({N, b, b, c, H, W}) : x.reshaped({N, c, b, b, H, W});
  const std::vector<int64_t> perm = mode == "DCR" ? std::vector<int64_t>{0, 3, 4, 1, 5, 2}
                                                  : std::vector<int64_t>{0, 1, 4, 2, 5, 3};
  Shape out_shape{N, c, mul_checked(ctx, H, b, "output height"), mul_checked(ctx, W, b, "output width")};
  ctx.set_output(0, transpose_copy(view, perm).reshaped(out_shape));
}

void space_to_depth(KernelContext& ctx) {
  const Tensor& x = ctx.input(0);
  ctx.check(x.rank() == 4, "input must be 4-D (N,C,H,W), got shape {}", shape_str(x.shape()));
  const int64_t b = blocksize_of(ctx);
  const int64_t N = x.dim(0), C = x.dim(1), H = x.dim(2), W = x.dim(3);
  ctx.check(H % b == 0 && W % b == 0, "spatial dims {}x{} are not divisible by blocksize {}", H, W, b);
  const int64_t oc = mul_checked(ctx, C, b * b, "output channels");
  Tensor view = x.reshaped({N, C, H / b, b, W / b, b});
  ctx.set_output(0, transpose_copy(view, {0, 3, 5, 1, 2, 4}).reshaped({N, oc, H / b, W / b}));
}

// ---------------------------------------------------------------- Trilu, ReverseSequence

void trilu(KernelContext& ctx) {
  const Tensor& x = ctx.input(0);
  ctx.check(x.rank() >= 2, "input must have rank >= 2, got shape {}", shape_str(x.shape()));
  const int64_t k = ctx.has_input(1) ? dm::read_scalar_i64(ctx, ctx.input(1), "k") : 0;
  const bool upper = ctx.node().attr_i("upper", 1) != 0;
  const int64_t rows = x.dim(x.rank() - 2), cols = x.dim(x.rank() - 1);
  Tensor& out = ctx.alloc_output(0, x.dtype(), x.shape());  // zero (or "") everywhere else
  if (out.numel() == 0) return;
  ElemCopy copy(x, out);
  const int64_t mats = x.numel() / (rows * cols);
  for (int64_t m = 0; m < mats; ++m)
    for (int64_t i = 0; i < rows; ++i)
      for (int64_t j = 0; j < cols; ++j) {
        // j - i is the diagonal index; both sides are small, k may be anything.
        const bool keep = upper ? (j - i >= k) : (j - i <= k);
        if (keep) copy.one((m * rows + i) * cols + j, (m * rows + i) * cols + j);
      }
}

void reverse_sequence(KernelContext& ctx) {
  const Tensor& x = ctx.input(0);
  ctx.check(x.rank() >= 2, "input must have rank >= 2, got shape {}", shape_str(x.shape()));
  const int64_t time_axis = ctx.node().attr_i("time_axis", 0), batch_axis = ctx.node().attr_i("batch_axis", 1);
  ctx.check((time_axis == 0 && batch_axis == 1) || (time_axis == 1 && batch_axis == 0),
            "time_axis and batch_axis must be 0 and 1 in some order, got {} and {}", time_axis, batch_axis);
  const Tensor& lens_t = ctx.input(1);
  ctx.check(lens_t.dtype() == DType::Int64 && lens_t.rank() == 1, "sequence_lens must be a 1-D int64 tensor");
  const int64_t T = x.dim(time_axis), B = x.dim(batch_axis);
  ctx.check(lens_t.numel() == B, "sequence_lens has {} entries for a batch of {}", lens_t.numel(), B);
  const auto lens = lens_t.to_i64_vector();
  for (int64_t l : lens) ctx.check(l >= 0 && l <= T, "sequence length {} is out of range [0, {}]", l, T);
  const auto st = strides_of(x.shape());
  const int64_t st_t = st[time_axis], st_b = st[batch_axis];
  Tensor& out = ctx.alloc_output(0, x.dtype(), x.shape());
  ElemCopy copy(x, out);
  for (int64_t i = 0; i < x.numel(); ++i) {
    const int64_t t = (i / st_t) % T, b = (i / st_b) % B;
    const int64_t src_t = t < lens[b] ? lens[b] - 1 - t : t;  // reverse the first lens[b] steps only
    copy.one(i, i + (src_t - t) * st_t);
  }
}

}  // namespace

void register_tensor_ops(Registry& r) {
  const std::string all = "all (numeric, bool, string)";
  r.add({"Identity", "", 1, 17, all + ", sequences, optionals", identity});
  r.add({"Constant", "", 1, 17, all, constant});
  r.add({"ConstantOfShape", "", 9, 17, "numeric, bool", constant_of_shape});
  r.add({"Shape", "", 1, 17, all, shape_op});
  r.add({"Size", "", 1, 17, all, size_op});
  r.add({"Reshape", "", 1, 17, all, reshape});
  r.add({"Flatten", "", 1, 17, all, flatten});
  r.add({"Squeeze", "", 1, 17, all, squeeze});
  r.add({"Unsqueeze", "", 1, 17, all, unsqueeze});
  r.add({"Transpose", "", 1, 17, all, transpose});
  r.add({"Concat", "", 1, 17, all, concat});
  r.add({"Split", "", 1, 17, all, split});
  r.add({"Slice", "", 1, 17, all, slice});
  r.add({"Pad", "", 1, 17, all, pad});
  r.add({"Expand", "", 8, 17, all, expand});
  r.add({"Tile", "", 1, 17, all, tile});
  r.add({"Range", "", 11, 17, "float, double, int16, int32, int64", range_op});
  r.add({"EyeLike", "", 9, 17, "numeric, bool", eye_like});
  r.add({"DepthToSpace", "", 1, 17, all, depth_to_space});
  r.add({"SpaceToDepth", "", 1, 17, all, space_to_depth});
  r.add({"Trilu", "", 14, 17, all, trilu});
  r.add({"ReverseSequence", "", 10, 17, all, reverse_sequence});
}

}  // namespace opennpu::cpu
