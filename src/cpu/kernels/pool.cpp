// Pooling reference kernels: AveragePool, MaxPool (with Indices), LpPool, their Global variants and
// MaxUnpool. Every windowed pool shares one geometry (PoolGeom: kernel, strides, dilations, pads,
// output size, from the ONNX attributes) and one window walker, so padding, ceil_mode and auto_pad
// are handled in one place. Inputs are N x C x D1 x ... x Dk; each (n, c) plane is independent and
// is computed by exactly one thread, so results never depend on the thread count.
#include <algorithm>
#include <cmath>
#include <limits>
#include <string>
#include <vector>

#include "core/parallel.h"
#include "cpu/util.h"

namespace opennpu::cpu {
namespace {

// Attribute values beyond this are rejected: it keeps every product below (kernel-1)*dilation,
// (out-1)*stride well inside int64.
constexpr int64_t kMaxAttr = std::numeric_limits<int32_t>::max();

// Spatial geometry of one windowed pool.
struct PoolGeom {
  size_t nsp = 0;  // number of spatial dims
  Shape in, out, kernel, strides, dilations, pad_begin, pad_end;
};

struct GeomRules {
  bool dilations = false;  // the op (at this opset) has a dilations attribute
  bool ceil_mode = false;  // ... a ceil_mode attribute
};

// Reads kernel_shape/strides/dilations/pads/auto_pad/ceil_mode and derives the output size, with
// ONNX's formulas (see the MaxPool schema doc). Every value that comes from the model is checked.
PoolGeom pool_geometry(const KernelContext& ctx, const Shape& x, GeomRules rules) {
  const ir::Node& n = ctx.node();
  ctx.check(x.size() >= 3, "input must be N x C x D1 x ... (rank >= 3), got shape {}", shape_str(x));
  PoolGeom g;
  g.nsp = x.size() - 2;
  g.in.assign(x.begin() + 2, x.end());
  g.kernel = n.attr_ints("kernel_shape");
  ctx.check(g.kernel.size() == g.nsp, "kernel_shape has {} values but the input has {} spatial dims",
            g.kernel.size(), g.nsp);
  g.strides = n.attr_ints("strides", Shape(g.nsp, 1));
  ctx.check(g.strides.size() == g.nsp, "strides has {} values, expected {}", g.strides.size(), g.nsp);
  if (!rules.dilations) ctx.check(!n.has_attr("dilations"), "{} has no 'dilations' attribute at opset {}", n.op_type, ctx.opset());
  g.dilations = n.attr_ints("dilations", Shape(g.nsp, 1));
  ctx.check(g.dilations.size() == g.nsp, "dilations has {} values, expected {}", g.dilations.size(), g.nsp);
  for (size_t d = 0; d < g.nsp; ++d) {
    ctx.check(g.kernel[d] > 0 && g.kernel[d] <= kMaxAttr, "kernel_shape[{}] = {} must be in [1, {}]", d, g.kernel[d], kMaxAttr);
    ctx.check(g.strides[d] > 0 && g.strides[d] <= kMaxAttr, "strides[{}] = {} must be in [1, {}]", d, g.strides[d], kMaxAttr);
    ctx.check(g.dilations[d] > 0 && g.dilations[d] <= kMaxAttr, "dilations[{}] = {} must be in [1, {}]", d, g.dilations[d], kMaxAttr);
  }
  bool ceil_mode = false;
  if (rules.ceil_mode) ceil_mode = n.attr_i("ceil_mode", 0) != 0;
  else ctx.check(!n.has_attr("ceil_mode"), "{} has no 'ceil_mode' attribute at opset {}", n.op_type, ctx.opset());

  std::string auto_pad = n.attr_s("auto_pad", "NOTSET");
  g.pad_begin.assign(g.nsp, 0);
  g.pad_end.assign(g.nsp, 0);
  g.out.assign(g.nsp, 0);
  if (auto_pad == "NOTSET") {
    Shape pads = n.attr_ints("pads", Shape(2 * g.nsp, 0));
    ctx.check(pads.size() == 2 * g.nsp, "pads has {} values, expected {} (begin and end of each spatial dim)",
              pads.size(), 2 * g.nsp);
    for (size_t d = 0; d < g.nsp; ++d) {
      g.pad_begin[d] = pads[d];
      g.pad_end[d] = pads[d + g.nsp];
      ctx.check(g.pad_begin[d] >= 0 && g.pad_end[d] >= 0 && g.pad_begin[d] <= kMaxAttr && g.pad_end[d] <= kMaxAttr,
                "pads must be in [0, {}], got {} and {} for spatial dim {}", kMaxAttr, g.pad_begin[d], g.pad_end[d], d);
    }
  } else {
    ctx.check(auto_pad == "SAME_UPPER" || auto_pad == "SAME_LOWER" || auto_pad == "VALID",
              "auto_pad '{}' is not one of NOTSET, SAME_UPPER, SAME_LOWER, VALID", auto_pad);
  }
  for (size_t d = 0; d < g.nsp; ++d) {
    const int64_t extent = (g.kernel[d] - 1) * g.dilations[d] + 1;  // span of one window in the input
    const int64_t in = g.in[d], s = g.strides[d];
    if (auto_pad == "SAME_UPPER" || auto_pad == "SAME_LOWER") {
      // Output covers ceil(in / stride) windows; the padding needed is split evenly, the odd one
      // going to the end (SAME_UPPER) or the beginning (SAME_LOWER).
      g.out[d] = (in + s - 1) / s;
      int64_t total = std::max<int64_t>(0, (g.out[d] - 1) * s + extent - in);
      g.pad_begin[d] = auto_pad == "SAME_UPPER" ? total / 2 : total - total / 2;
      g.pad_end[d] = total - g.pad_begin[d];
    } else if (auto_pad == "VALID") {
      ctx.check(in >= extent, "spatial dim {} of size {} is smaller than the window extent {} (auto_pad VALID)", d, in, extent);
      g.out[d] = (in - extent) / s + 1;
    } else {
      const int64_t span = in + g.pad_begin[d] + g.pad_end[d] - extent;
      ctx.check(span >= 0, "spatial dim {}: input {} plus pads {}+{} is smaller than the window extent {}", d, in,
                g.pad_begin[d], g.pad_end[d], extent);
      g.out[d] = (ceil_mode ? (span + s - 1) / s : span / s) + 1;
      // With ceil_mode the last window may start beyond the input and left padding, where it
      // would see only right padding; ONNX (like PyTorch and ONNX Runtime) drops such a window.
      if (ceil_mode && (g.out[d] - 1) * s >= in + g.pad_begin[d]) --g.out[d];
    }
    ctx.check(g.out[d] > 0, "output spatial dim {} would be {} (input {}, window extent {}, stride {})", d, g.out[d], in, extent, s);
  }
  return g;
}

// The taps of one output position's window, per spatial dim: the input coordinates the window
// covers that lie inside the input (padding holds no data), and how many of its taps lie inside
// the padded extent [-pad_begin, in + pad_end) (the divisor of count_include_pad).
class Window {
 public:
  explicit Window(const PoolGeom& g) : g_(g), coords_(g.nsp), idx_(g.nsp) {}

  // Positions the window on output spatial position `out_linear` (row-major over g.out).
  void place(int64_t out_linear) {
    valid_ = 1;
    padded_ = 1;
    for (size_t d = g_.nsp; d-- > 0;) {
      const int64_t o = out_linear % g_.out[d];
      out_linear /= g_.out[d];
      const int64_t start = o * g_.strides[d] - g_.pad_begin[d];
      coords_[d].clear();
      int64_t in_padded = 0;
      for (int64_t k = 0; k < g_.kernel[d]; ++k) {
        const int64_t i = start + k * g_.dilations[d];
        if (i >= 0 && i < g_.in[d]) coords_[d].push_back(i);
        if (i >= -g_.pad_begin[d] && i < g_.in[d] + g_.pad_end[d]) ++in_padded;
      }
      valid_ *= static_cast<int64_t>(coords_[d].size());
      padded_ *= in_padded;
    }
  }
  int64_t valid_count() const { return valid_; }
  int64_t padded_count() const { return padded_; }

  // Calls fn(offset) for every in-input tap in row-major order, offset = row-major index in the plane.
  template <class F>
  void for_each_tap(F&& fn) {
    if (valid_ == 0) return;
    std::fill(idx_.begin(), idx_.end(), 0);
    for (;;) {
      int64_t off = 0;
      for (size_t d = 0; d < g_.nsp; ++d) off = off * g_.in[d] + coords_[d][idx_[d]];
      fn(off);
      size_t d = g_.nsp;
      while (d > 0) {
        --d;
        if (++idx_[d] < coords_[d].size()) break;
        idx_[d] = 0;
        if (d == 0) return;
      }
    }
  }

 private:
  const PoolGeom& g_;
  std::vector<std::vector<int64_t>> coords_;
  std::vector<size_t> idx_;
  int64_t valid_ = 0, padded_ = 0;
};

// An attribute the op only has from opset `since` on must not appear in older models.
void reject_before(const KernelContext& ctx, const char* attr, int64_t since) {
  ctx.check(ctx.opset() >= since || !ctx.node().has_attr(attr), "{} has no '{}' attribute before opset {}",
            ctx.node().op_type, attr, since);
}

int64_t prod(const Shape& s) {
  int64_t p = 1;
  for (int64_t v : s) p *= v;
  return p;
}

// Runs plane_fn(plane_index, Window&, out_spatial_size) over all N*C planes in parallel.
template <class F>
void for_each_plane(const PoolGeom& g, int64_t planes, F&& plane_fn) {
  const int64_t out_sp = prod(g.out);
  parallel_for(planes, [&](int64_t b, int64_t e) {
    Window w(g);
    for (int64_t p = b; p < e; ++p) plane_fn(p, w, out_sp);
  });
}

Shape pooled_shape(const KernelContext& ctx, const Shape& x, const PoolGeom& g) {
  Shape y = {x[0], x[1]};
  y.insert(y.end(), g.out.begin(), g.out.end());
  checked_numel(y, ctx.node().where() + ": output");
  return y;
}

// ---- AveragePool -------------------------------------------------------------------------------

void average_pool(KernelContext& ctx) {
  const Tensor& x = ctx.input(0);
  PoolGeom g = pool_geometry(ctx, x.shape(), {.dilations = ctx.opset() >= 19, .ceil_mode = ctx.opset() >= 10});
  // count_include_pad appeared in opset 7; before that padding was never counted.
  reject_before(ctx, "count_include_pad", 7);
  const bool include_pad = ctx.node().attr_i("count_include_pad", 0) != 0;
  Tensor& y = ctx.alloc_output(0, x.dtype(), pooled_shape(ctx, x.shape(), g));
  const int64_t in_sp = prod(g.in);
  dispatch_float(x.dtype(), [&](auto tag) {
    using T = typename decltype(tag)::type;
    const T* xp = x.data<T>();
    T* yp = y.data<T>();
    for_each_plane(g, x.dim(0) * x.dim(1), [&](int64_t p, Window& w, int64_t out_sp) {
      const T* plane = xp + p * in_sp;
      for (int64_t o = 0; o < out_sp; ++o) {
        w.place(o);
        double sum = 0;
        w.for_each_tap([&](int64_t off) { sum += static_cast<double>(static_cast<compute_t<T>>(plane[off])); });
        // A window lying wholly in padding (pads >= window) has no data: 0/0 is NaN, honestly.
        const int64_t count = include_pad ? w.padded_count() : w.valid_count();
        const double avg = count > 0 ? sum / static_cast<double>(count) : std::numeric_limits<double>::quiet_NaN();
        yp[p * out_sp + o] = T(static_cast<compute_t<T>>(avg));
      }
    });
  }, "AveragePool");
}

// ---- MaxPool -----------------------------------------------------------------------------------

// Converts a row-major offset within a plane to the column-major offset of the same element.
int64_t to_column_major(int64_t off, const Shape& dims) {
  int64_t col = 0, scale = 1;
  std::vector<int64_t> idx(dims.size());
  for (size_t d = dims.size(); d-- > 0;) {
    idx[d] = off % dims[d];
    off /= dims[d];
  }
  for (size_t d = 0; d < dims.size(); ++d) {
    col += idx[d] * scale;
    scale *= dims[d];
  }
  return col;
}

void max_pool(KernelContext& ctx) {
  const Tensor& x = ctx.input(0);
  const DType dt = x.dtype();
  ctx.check(dtype_is_float(dt) || ((dt == DType::Int8 || dt == DType::UInt8) && ctx.opset() >= 12),
            "MaxPool at opset {} does not take {} input", ctx.opset(), dtype_name(dt));
  ctx.check(dt != DType::BFloat16, "MaxPool does not take bfloat16 input before opset 22");
  PoolGeom g = pool_geometry(ctx, x.shape(), {.dilations = ctx.opset() >= 10, .ceil_mode = ctx.opset() >= 10});
  reject_before(ctx, "storage_order", 8);
  const int64_t storage_order = ctx.node().attr_i("storage_order", 0);
  ctx.check(storage_order == 0 || storage_order == 1, "storage_order must be 0 (row major) or 1 (column major), got {}", storage_order);
  const Shape yshape = pooled_shape(ctx, x.shape(), g);
  Tensor& y = ctx.alloc_output(0, dt, yshape);
  const bool want_idx = ctx.num_outputs() > 1 && ctx.output_wanted(1);
  ctx.check(!want_idx || ctx.opset() >= 8, "the Indices output exists from opset 8");
  int64_t* ip = want_idx ? ctx.alloc_output(1, DType::Int64, yshape).data<int64_t>() : nullptr;
  const int64_t in_sp = prod(g.in);

  dispatch_numeric(dt, [&](auto tag) {
    using T = typename decltype(tag)::type;
    if constexpr (std::is_same_v<T, bool>) {
      ctx.fail("MaxPool does not take bool input");
    } else {
      using C = compute_t<T>;
      const T* xp = x.data<T>();
      T* yp = y.data<T>();
      for_each_plane(g, x.dim(0) * x.dim(1), [&](int64_t p, Window& w, int64_t out_sp) {
        const T* plane = xp + p * in_sp;
        for (int64_t o = 0; o < out_sp; ++o) {
          w.place(o);
          // The first maximum in row-major window order wins ties (as ONNX Runtime does). A NaN
          // is never greater, so it is ignored unless the whole window is NaN.
          C best = std::numeric_limits<C>::lowest();
          int64_t best_off = -1;
          w.for_each_tap([&](int64_t off) {
            C v = static_cast<C>(plane[off]);
            if (best_off < 0 || v > best || (std::isnan(static_cast<double>(best)) && !std::isnan(static_cast<double>(v)))) {
              best = v;
              best_off = off;
            }
          });
          // A window wholly in padding has no element; it yields the lowest value (index -1).
          yp[p * out_sp + o] = T(best);
          if (ip) {
            // Indices address the flattened input tensor: plane offset + spatial offset in the
            // requested storage order.
            int64_t sp_off = best_off < 0 ? -1 : (storage_order == 0 ? best_off : to_column_major(best_off, g.in));
            ip[p * out_sp + o] = sp_off < 0 ? -1 : p * in_sp + sp_off;
          }
        }
      });
    }
  }, "MaxPool");
}

// ---- LpPool ------------------------------------------------------------------------------------

// p is a float attribute in LpPool-1/GlobalLpPool-1 and an int one from version 2.
double lp_order(const KernelContext& ctx) {
  const ir::Attribute* a = ctx.node().attr("p");
  double p = 2.0;
  if (a) p = a->kind == ir::Attribute::Kind::Float ? static_cast<double>(a->f) : static_cast<double>(ctx.node().attr_i("p", 2));
  ctx.check(std::isfinite(p) && p > 0, "p must be a positive number, got {}", p);
  return p;
}

// (sum |x|^p)^(1/p); padding contributes zeros, so only in-input taps are summed.
void lp_pool(KernelContext& ctx) {
  const Tensor& x = ctx.input(0);
  const double p = lp_order(ctx);
  PoolGeom g = pool_geometry(ctx, x.shape(), {.dilations = ctx.opset() >= 18, .ceil_mode = ctx.opset() >= 18});
  Tensor& y = ctx.alloc_output(0, x.dtype(), pooled_shape(ctx, x.shape(), g));
  const int64_t in_sp = prod(g.in);
  dispatch_float(x.dtype(), [&](auto tag) {
    using T = typename decltype(tag)::type;
    const T* xp = x.data<T>();
    T* yp = y.data<T>();
    for_each_plane(g, x.dim(0) * x.dim(1), [&](int64_t pl, Window& w, int64_t out_sp) {
      const T* plane = xp + pl * in_sp;
      for (int64_t o = 0; o < out_sp; ++o) {
        w.place(o);
        double sum = 0;
        w.for_each_tap([&](int64_t off) { sum += std::pow(std::fabs(static_cast<double>(static_cast<compute_t<T>>(plane[off]))), p); });
        yp[pl * out_sp + o] = T(static_cast<compute_t<T>>(std::pow(sum, 1.0 / p)));
      }
    });
  }, "LpPool");
}

// ---- Global pools ------------------------------------------------------------------------------

// Reduces each (n, c) plane of an N x C x ... input to one value; the output keeps the spatial
// dims as 1. reduce(plane, count) returns the value in double.
template <class Reduce>
void global_pool(KernelContext& ctx, const char* who, Reduce reduce) {
  const Tensor& x = ctx.input(0);
  ctx.check(x.rank() >= 2, "input must be N x C x D1 x ... (rank >= 2), got shape {}", shape_str(x.shape()));
  Shape yshape = x.shape();
  for (size_t d = 2; d < yshape.size(); ++d) yshape[d] = 1;
  const int64_t planes = x.dim(0) * x.dim(1);
  const int64_t sp = planes == 0 ? 0 : x.numel() / planes;
  Tensor& y = ctx.alloc_output(0, x.dtype(), yshape);
  dispatch_float(x.dtype(), [&](auto tag) {
    using T = typename decltype(tag)::type;
    const T* xp = x.data<T>();
    T* yp = y.data<T>();
    parallel_for(planes, [&](int64_t b, int64_t e) {
      for (int64_t p = b; p < e; ++p) {
        const T* plane = xp + p * sp;
        auto at = [&](int64_t i) { return static_cast<double>(static_cast<compute_t<T>>(plane[i])); };
        yp[p] = T(static_cast<compute_t<T>>(reduce(at, sp)));
      }
    });
  }, who);
}

void global_average_pool(KernelContext& ctx) {
  // An empty plane averages to 0/0 = NaN.
  global_pool(ctx, "GlobalAveragePool", [](auto at, int64_t n) {
    double s = 0;
    for (int64_t i = 0; i < n; ++i) s += at(i);
    return s / static_cast<double>(n);
  });
}

void global_max_pool(KernelContext& ctx) {
  // NaNs are skipped unless the plane is all NaN; an empty plane gives -inf (the max of nothing).
  global_pool(ctx, "GlobalMaxPool", [](auto at, int64_t n) {
    double m = -std::numeric_limits<double>::infinity();
    bool any = false;
    for (int64_t i = 0; i < n; ++i) {
      double v = at(i);
      if (std::isnan(v)) { if (!any) m = v; continue; }
      if (!any || v > m || std::isnan(m)) m = v;
      any = true;
    }
    return m;
  });
}

void global_lp_pool(KernelContext& ctx) {
  const double p = lp_order(ctx);
  global_pool(ctx, "GlobalLpPool", [p](auto at, int64_t n) {
    double s = 0;
    for (int64_t i = 0; i < n; ++i) s += std::pow(std::fabs(at(i)), p);
    return std::pow(s, 1.0 / p);
  });
}

// ---- MaxUnpool ---------------------------------------------------------------------------------

// Scatters X into zeros at the positions I holds. The indices address the flattened tensor of the
// *inferred* output shape, (in - 1) * stride - pads + kernel per spatial dim (the shape MaxPool's
// input had). An explicit output_shape only enlarges that result with zeros at the end of each
// spatial dim ("pads are auto generated"), as ONNX's own test data expects.
void max_unpool(KernelContext& ctx) {
  const Tensor& x = ctx.input(0);
  const Tensor& ind = ctx.input(1);
  const ir::Node& n = ctx.node();
  ctx.check(x.rank() >= 3, "X must be N x C x D1 x ... (rank >= 3), got shape {}", shape_str(x.shape()));
  ctx.check(ind.dtype() == DType::Int64, "I must be int64, got {}", dtype_name(ind.dtype()));
  ctx.check(ind.shape() == x.shape(), "I has shape {} but X has shape {}", shape_str(ind.shape()), shape_str(x.shape()));
  const size_t nsp = static_cast<size_t>(x.rank()) - 2;
  Shape kernel = n.attr_ints("kernel_shape");
  Shape strides = n.attr_ints("strides", Shape(nsp, 1));
  Shape pads = n.attr_ints("pads", Shape(2 * nsp, 0));
  ctx.check(kernel.size() == nsp, "kernel_shape has {} values but X has {} spatial dims", kernel.size(), nsp);
  ctx.check(strides.size() == nsp, "strides has {} values, expected {}", strides.size(), nsp);
  ctx.check(pads.size() == 2 * nsp, "pads has {} values, expected {}", pads.size(), 2 * nsp);
  Shape inferred = {x.dim(0), x.dim(1)};
  for (size_t d = 0; d < nsp; ++d) {
    ctx.check(kernel[d] > 0 && kernel[d] <= kMaxAttr, "kernel_shape[{}] = {} must be in [1, {}]", d, kernel[d], kMaxAttr);
    ctx.check(strides[d] > 0 && strides[d] <= kMaxAttr, "strides[{}] = {} must be in [1, {}]", d, strides[d], kMaxAttr);
    ctx.check(pads[d] >= 0 && pads[d + nsp] >= 0 && pads[d] <= kMaxAttr && pads[d + nsp] <= kMaxAttr,
              "pads must be in [0, {}]", kMaxAttr);
    int64_t in = x.dim(static_cast<int64_t>(d) + 2);
    ctx.check(in <= kMaxAttr, "spatial dim {} of X is too large ({})", d, in);
    int64_t out = (in - 1) * strides[d] - pads[d] - pads[d + nsp] + kernel[d];
    ctx.check(out >= 0, "inferred output dim {} is negative ({})", d, out);
    inferred.push_back(out);
  }
  const int64_t inferred_numel = checked_numel(inferred, ctx.node().where() + ": output");

  Shape yshape = inferred;
  if (const Tensor* os = ctx.optional_input(2)) {
    ctx.check(os->dtype() == DType::Int64 && os->rank() == 1, "output_shape must be a 1-D int64 tensor");
    yshape = os->to_i64_vector();
    ctx.check(yshape.size() == inferred.size(), "output_shape has {} dims, X has {}", yshape.size(), inferred.size());
    ctx.check(yshape[0] == inferred[0] && yshape[1] == inferred[1], "output_shape {} must keep N and C of X {}",
              shape_str(yshape), shape_str(x.shape()));
    for (size_t d = 2; d < yshape.size(); ++d)
      ctx.check(yshape[d] >= inferred[d], "output_shape {} is smaller than the unpooled shape {}", shape_str(yshape), shape_str(inferred));
  }
  Tensor& y = ctx.alloc_output(0, x.dtype(), yshape);

  dispatch_float(x.dtype(), [&](auto tag) {
    using T = typename decltype(tag)::type;
    std::vector<T> frame(static_cast<size_t>(inferred_numel), T(0.0f));
    const T* xp = x.data<T>();
    const int64_t* ip = ind.data<int64_t>();
    // Serial: indices may collide, and the last write must win regardless of threads.
    for (int64_t i = 0; i < x.numel(); ++i) {
      ctx.check(ip[i] >= 0 && ip[i] < inferred_numel, "index {} at position {} is outside the unpooled tensor of {} elements",
                ip[i], i, inferred_numel);
      frame[static_cast<size_t>(ip[i])] = xp[i];
    }
    // Copy the inferred frame into the (possibly larger) output, aligned at the origin.
    T* yp = y.data<T>();
    const auto fst = strides_of(inferred), yst = strides_of(yshape);
    for (int64_t i = 0; i < inferred_numel; ++i) {
      int64_t rem = i, off = 0;
      for (size_t d = 0; d < inferred.size(); ++d) {
        off += (rem / fst[d]) * yst[d];
        rem %= fst[d];
      }
      yp[off] = frame[static_cast<size_t>(i)];
    }
  }, "MaxUnpool");
}

// ---- MaxRoiPool --------------------------------------------------------------------------------

// Caffe-style RoI max pooling (Fast R-CNN; what Caffe2, ONNX Runtime and torchvision's roi_pool
// compute): each RoI [batch, x1, y1, x2, y2] is scaled and rounded to whole input cells (corners
// inclusive), split into pooled_h x pooled_w bins of floor/ceil boundaries, and each bin takes the
// max of its cells; an empty bin gives 0. Bin boundaries are computed in the element's compute type
// (float for float16/float) so the floor/ceil edges match those implementations.
void max_roi_pool(KernelContext& ctx) {
  const Tensor& x = ctx.input(0);
  const Tensor& rois = ctx.input(1);
  ctx.check(x.rank() == 4, "X must be N x C x H x W, got shape {}", shape_str(x.shape()));
  ctx.check(rois.dtype() == x.dtype(), "rois has dtype {} but X has {}", dtype_name(rois.dtype()), dtype_name(x.dtype()));
  ctx.check(rois.rank() == 2 && rois.dim(1) == 5, "rois must be num_rois x 5 (batch, x1, y1, x2, y2), got shape {}",
            shape_str(rois.shape()));
  ctx.check(ctx.node().has_attr("pooled_shape"), "attribute pooled_shape is required");
  const Shape pooled = ctx.node().attr_ints("pooled_shape");
  ctx.check(pooled.size() == 2 && pooled[0] > 0 && pooled[1] > 0 && pooled[0] <= kMaxAttr && pooled[1] <= kMaxAttr,
            "pooled_shape must be two positive values, got {}", shape_str(pooled));
  const double scale = ctx.node().attr_f("spatial_scale", 1.0f);
  ctx.check(std::isfinite(scale), "spatial_scale must be finite");
  const int64_t N = x.dim(0), C = x.dim(1), H = x.dim(2), W = x.dim(3), R = rois.dim(0);
  const int64_t PH = pooled[0], PW = pooled[1];
  // Rounded RoI corners per RoI, validated up front so the parallel loop cannot fail.
  struct Roi { int64_t batch, x1, y1, x2, y2; };
  std::vector<Roi> boxes(static_cast<size_t>(R));
  constexpr double kMaxCoord = 1e15;  // keeps llround and the arithmetic below in int64 range
  for (int64_t r = 0; r < R; ++r) {
    double b = rois.get_f64(r * 5);
    ctx.check(std::isfinite(b) && b >= 0 && b < static_cast<double>(N), "rois[{}] batch index {} is outside [0, {})", r, b, N);
    int64_t c[4];
    for (int k = 0; k < 4; ++k) {
      double v = rois.get_f64(r * 5 + 1 + k) * scale;
      ctx.check(std::isfinite(v) && std::fabs(v) < kMaxCoord, "rois[{}] coordinate {} is not a usable number", r, v);
      c[k] = std::llround(v);  // round half away from zero, as std::round in the reference implementations
    }
    boxes[static_cast<size_t>(r)] = {static_cast<int64_t>(b), c[0], c[1], c[2], c[3]};
  }
  Tensor& y = ctx.alloc_output(0, x.dtype(), {R, C, PH, PW});
  dispatch_float(x.dtype(), [&](auto tag) {
    using T = typename decltype(tag)::type;
    using Cp = compute_t<T>;
    const T* xp = x.data<T>();
    T* yp = y.data<T>();
    parallel_for(R * C, [&](int64_t b, int64_t e) {
      for (int64_t rc = b; rc < e; ++rc) {
        const Roi& roi = boxes[static_cast<size_t>(rc / C)];
        const T* plane = xp + (roi.batch * C + rc % C) * H * W;
        const int64_t rh = std::max<int64_t>(roi.y2 - roi.y1 + 1, 1), rw = std::max<int64_t>(roi.x2 - roi.x1 + 1, 1);
        const Cp bin_h = static_cast<Cp>(rh) / static_cast<Cp>(PH), bin_w = static_cast<Cp>(rw) / static_cast<Cp>(PW);
        auto clampi = [](int64_t v, int64_t hi) { return std::min(std::max<int64_t>(v, 0), hi); };
        for (int64_t ph = 0; ph < PH; ++ph) {
          const int64_t hs = clampi(static_cast<int64_t>(std::floor(static_cast<Cp>(ph) * bin_h)) + roi.y1, H);
          const int64_t he = clampi(static_cast<int64_t>(std::ceil(static_cast<Cp>(ph + 1) * bin_h)) + roi.y1, H);
          for (int64_t pw = 0; pw < PW; ++pw) {
            const int64_t ws = clampi(static_cast<int64_t>(std::floor(static_cast<Cp>(pw) * bin_w)) + roi.x1, W);
            const int64_t we = clampi(static_cast<int64_t>(std::ceil(static_cast<Cp>(pw + 1) * bin_w)) + roi.x1, W);
            Cp m = 0;
            if (he > hs && we > ws) {
              m = std::numeric_limits<Cp>::lowest();
              for (int64_t h = hs; h < he; ++h)
                for (int64_t w = ws; w < we; ++w) m = std::max(m, static_cast<Cp>(plane[h * W + w]));
            }
            yp[((rc * PH) + ph) * PW + pw] = T(m);
          }
        }
      }
    });
  }, "MaxRoiPool");
}

}  // namespace

void register_pool(Registry& r) {
  r.add({"AveragePool", "", 1, 18, "float16, float, double", average_pool});
  r.add({"MaxPool", "", 1, 18, "float16, float, double; int8, uint8 from opset 12", max_pool});
  r.add({"LpPool", "", 1, 18, "float16, float, double", lp_pool});
  r.add({"GlobalAveragePool", "", 1, 18, "float16, float, double", global_average_pool});
  r.add({"GlobalMaxPool", "", 1, 18, "float16, float, double", global_max_pool});
  r.add({"GlobalLpPool", "", 1, 18, "float16, float, double", global_lp_pool});
  r.add({"MaxUnpool", "", 9, 18, "float16, float, double", max_unpool});
  r.add({"MaxRoiPool", "", 1, 18, "float16, float, double", max_roi_pool});
}

}  // namespace opennpu::cpu
