// cpu/kernels/resize.cpp — spatial resampling ops: Resize (opsets 10, 11, 13), Upsample (7, 9),
// GridSample (16) and RoiAlign (10, 16). Registered from register_misc() (misc.cpp).
//
// Resize follows the ONNX reference implementation the test data was generated with
// (onnx/backend/test/case/node/resize.py): it is separable, interpolating the last axis first and
// then each outer axis over the already-interpolated values, in double precision. Per axis, an
// output coordinate x maps to x_original (coordinate_transformation_mode), and the value is a
// weighted sum of the n nearest input samples (n = 2 for nearest/linear, 4 for cubic) with
// indices clamped to the edge ("edge" padding), exactly as the reference builds it.
#include <algorithm>
#include <cmath>
#include <limits>

#include "core/parallel.h"
#include "cpu/kernel.h"
#include "cpu/util.h"

namespace opennpu::cpu {
namespace {

// ---- Resize / Upsample ---------------------------------------------------------------------------

struct Tap {
  int64_t idx;
  double w;
};

// How each output index of one axis is computed: its taps, or the extrapolation value.
struct AxisPlan {
  std::vector<std::vector<Tap>> taps;
  std::vector<char> extrapolate;
  bool identity = false;  // output == input along this axis: skip it
};

struct ResizeAttrs {
  std::string mode = "nearest";
  std::string coord = "half_pixel";
  std::string nearest_mode = "round_prefer_floor";
  double cubic_a = -0.75;
  bool exclude_outside = false;
  double extrapolation = 0.0;
};

// Cubic convolution coefficients (Keys) for the 4 taps at base-1 .. base+2, ratio in (0, 1].
std::vector<double> cubic_coeffs(double r, double A) {
  auto far = [A](double t) { return ((A * t - 5 * A) * t + 8 * A) * t - 4 * A; };  // 1 < t < 2
  auto near = [A](double t) { return ((A + 2) * t - (A + 3)) * t * t + 1; };        // t <= 1
  return {far(r + 1), near(r), near(1 - r), far(2 - r)};
}

AxisPlan plan_axis(const KernelContext& ctx, const ResizeAttrs& a, int64_t in, int64_t out, double scale,
                   double roi_start, double roi_end) {
  AxisPlan p;
  p.taps.resize(out);
  p.extrapolate.assign(out, 0);
  // The reference's notion of the resized length: scale * in (not necessarily an integer).
  const double out_len = scale * static_cast<double>(in);
  for (int64_t x = 0; x < out; ++x) {
    const double xr = static_cast<double>(x);
    double xo = 0;
    const std::string& m = a.coord;
    if (m == "half_pixel") xo = (xr + 0.5) / scale - 0.5;
    else if (m == "pytorch_half_pixel") xo = out_len == 1 ? -0.5 : (xr + 0.5) / scale - 0.5;
    else if (m == "align_corners") xo = out_len == 1 ? 0.0 : xr * static_cast<double>(in - 1) / (out_len - 1);
    else if (m == "asymmetric") xo = xr / scale;
    else if (m == "tf_half_pixel_for_nn") xo = (xr + 0.5) / scale;
    else if (m == "tf_crop_and_resize") {
      xo = out_len == 1 ? (roi_end - roi_start) * static_cast<double>(in - 1) / 2
                        : xr * (roi_end - roi_start) * static_cast<double>(in - 1) / (out_len - 1);
      xo += roi_start * static_cast<double>(in - 1);
      if (xo < 0 || xo > static_cast<double>(in - 1)) { p.extrapolate[x] = 1; continue; }
    } else {
      ctx.fail("unknown coordinate_transformation_mode '{}'", m);
    }
    ctx.check(std::isfinite(xo) && std::fabs(xo) < 1e15, "output index {} maps to input coordinate {}", x, xo);
    // The reference's neighbourhood: ratio in (0, 1] measured from `base`, the sample just left of
    // xo (xo itself counts as "right" when it is an integer).
    double fl = std::floor(xo);
    bool integral = fl == xo;
    int64_t base = static_cast<int64_t>(fl) - (integral ? 1 : 0);
    double ratio = integral ? 1.0 : xo - fl;
    auto clamp_idx = [in](int64_t i) { return std::clamp<int64_t>(i, 0, in - 1); };
    auto& taps = p.taps[x];
    if (a.mode == "nearest") {
      bool right;  // take base+1 rather than base
      if (integral) right = true;
      else if (a.nearest_mode == "round_prefer_floor") right = ratio > 0.5;
      else if (a.nearest_mode == "round_prefer_ceil") right = ratio >= 0.5;
      else if (a.nearest_mode == "floor") right = false;
      else if (a.nearest_mode == "ceil") right = true;
      else if (a.nearest_mode == "simple") right = scale < 1 ? true : false;  // opset < 11: see upsample()
      else ctx.fail("unknown nearest_mode '{}'", a.nearest_mode);
      taps.push_back({clamp_idx(base + (right ? 1 : 0)), 1.0});
    } else {
      std::vector<double> c;
      int64_t first;
      if (a.mode == "linear") { c = {1 - ratio, ratio}; first = base; }
      else if (a.mode == "cubic") { c = cubic_coeffs(ratio, a.cubic_a); first = base - 1; }
      else ctx.fail("unknown mode '{}' (expected nearest, linear or cubic)", a.mode);
      if (a.exclude_outside) {
        double sum = 0;
        for (size_t k = 0; k < c.size(); ++k) {
          int64_t i = first + static_cast<int64_t>(k);
          if (i < 0 || i >= in) c[k] = 0;
          sum += c[k];
        }
        ctx.check(sum != 0, "exclude_outside leaves no input sample for output index {}", x);
        for (double& v : c) v /= sum;
      }
      for (size_t k = 0; k < c.size(); ++k) taps.push_back({clamp_idx(first + static_cast<int64_t>(k)), c[k]});
    }
  }
  // An axis is the identity when every output takes exactly its own input sample.
  p.identity = in == out;
  for (int64_t x = 0; x < out && p.identity; ++x) {
    if (p.extrapolate[x]) { p.identity = false; break; }
    for (const Tap& t : p.taps[x])
      if (t.w != (t.idx == x ? 1.0 : 0.0)) { p.identity = false; break; }
    double sum = 0;
    for (const Tap& t : p.taps[x]) if (t.idx == x) sum += t.w;
    if (sum != 1.0) p.identity = false;
  }
  return p;
}

template <class T>
T to_output(double v) {
  if constexpr (std::is_integral_v<T> && !std::is_same_v<T, bool>) {
    // Integer tensors under linear/cubic: round half to even and saturate to the type's range.
    if (std::isnan(v)) return T(0);
    double r = std::nearbyint(v);
    r = std::clamp(r, static_cast<double>(std::numeric_limits<T>::lowest()),
                   static_cast<double>(std::numeric_limits<T>::max()));
    return static_cast<T>(r);
  } else if constexpr (std::is_same_v<T, bool>) {
    return v != 0;
  } else {
    return T(static_cast<compute_t<T>>(v));
  }
}

// Resamples x to out_shape, given one plan per axis (see the file comment for the order).
void resample(KernelContext& ctx, const Tensor& x, const Shape& out_shape, const std::vector<AxisPlan>& plans,
              double extrapolation) {
  Tensor& y = ctx.alloc_output(0, x.dtype(), out_shape);
  if (y.numel() == 0) return;
  dispatch_numeric(x.dtype(), [&](auto tag) {
    using T = typename decltype(tag)::type;
    Shape cur = x.shape();
    std::vector<double> buf(static_cast<size_t>(x.numel()));
    for (int64_t i = 0; i < x.numel(); ++i) buf[i] = static_cast<double>(static_cast<compute_t<T>>(x.data<T>()[i]));
    for (int64_t d = x.rank() - 1; d >= 0; --d) {
      const AxisPlan& p = plans[d];
      if (p.identity) continue;
      int64_t outer = 1, inner = 1, in = cur[d], out = out_shape[d];
      for (int64_t k = 0; k < d; ++k) outer *= cur[k];
      for (int64_t k = d + 1; k < x.rank(); ++k) inner *= cur[k];
      std::vector<double> next(static_cast<size_t>(outer * out * inner));
      parallel_for(outer, [&](int64_t b, int64_t e) {
        for (int64_t o = b; o < e; ++o)
          for (int64_t xo = 0; xo < out; ++xo) {
            double* dst = next.data() + (o * out + xo) * inner;
            if (p.extrapolate[xo]) { std::fill(dst, dst + inner, extrapolation); continue; }
            for (int64_t i = 0; i < inner; ++i) dst[i] = 0;
            for (const Tap& t : p.taps[xo]) {
              const double* src = buf.data() + (o * in + t.idx) * inner;
              for (int64_t i = 0; i < inner; ++i) dst[i] += t.w * src[i];
            }
          }
      });
      buf.swap(next);
      cur[d] = out;
    }
    T* yd = y.data<T>();
    for (int64_t i = 0; i < y.numel(); ++i) yd[i] = to_output<T>(buf[i]);
  }, "Resize");
}

// Output size from a scale: floor(scale * in), as the reference computes it (in double).
int64_t scaled_size(const KernelContext& ctx, double scale, int64_t in) {
  double v = std::floor(scale * static_cast<double>(in));
  ctx.check(v >= 0 && v < 9.0e15, "scale {} gives an invalid output size for input size {}", scale, in);
  return static_cast<int64_t>(v);
}

void resize_impl(KernelContext& ctx, const Tensor& x, const ResizeAttrs& a, const std::vector<double>& scales_in,
                 const Shape* sizes, const std::vector<double>& roi) {
  const int64_t r = x.rank();
  Shape out(r);
  std::vector<double> scales(r);
  for (int64_t d = 0; d < r; ++d) {
    if (sizes) {
      out[d] = (*sizes)[d];
      ctx.check(out[d] >= 0, "sizes[{}] = {} is negative", d, out[d]);
      ctx.check(x.dim(d) > 0 || out[d] == 0, "cannot resize an empty axis {} to size {}", d, out[d]);
      scales[d] = x.dim(d) > 0 ? static_cast<double>(out[d]) / static_cast<double>(x.dim(d)) : 1.0;
    } else {
      scales[d] = scales_in[d];
      ctx.check(std::isfinite(scales[d]) && scales[d] > 0, "scales[{}] = {} must be positive", d, scales[d]);
      out[d] = scaled_size(ctx, scales[d], x.dim(d));
    }
  }
  checked_numel(out, ctx.node().where() + ": output");
  std::vector<AxisPlan> plans(r);
  for (int64_t d = 0; d < r; ++d) {
    if (out[d] == 0 || x.dim(d) == 0) continue;
    double rs = roi.empty() ? 0.0 : roi[d], re = roi.empty() ? 1.0 : roi[r + d];
    plans[d] = plan_axis(ctx, a, x.dim(d), out[d], scales[d], rs, re);
  }
  resample(ctx, x, out, plans, a.extrapolation);
}

std::vector<double> float_vector(const Tensor& t) {
  std::vector<double> v(static_cast<size_t>(t.numel()));
  for (int64_t i = 0; i < t.numel(); ++i) v[i] = t.get_f64(i);
  return v;
}

void resize(KernelContext& ctx) {
  const ir::Node& n = ctx.node();
  const Tensor& x = ctx.input(0);
  ctx.check(x.dtype() != DType::String, "string tensors cannot be resized");
  ResizeAttrs a;
  a.mode = n.attr_s("mode", "nearest");
  ctx.check(a.mode == "nearest" || a.mode == "linear" || (a.mode == "cubic" && ctx.opset() >= 11),
            "mode '{}' is not valid at opset {}", a.mode, ctx.opset());
  ctx.check(a.mode == "nearest" || x.dtype() != DType::Bool, "mode '{}' cannot interpolate bool values", a.mode);
  std::vector<double> scales, roi;
  const Tensor* sizes_t = nullptr;
  if (ctx.opset() < 11) {
    // Resize-10: inputs (X, scales); asymmetric coordinates; nearest picks like Upsample.
    a.coord = "asymmetric";
    a.nearest_mode = "simple";
    scales = float_vector(ctx.input(1));
  } else {
    a.coord = n.attr_s("coordinate_transformation_mode", "half_pixel");
    a.nearest_mode = n.attr_s("nearest_mode", "round_prefer_floor");
    a.cubic_a = n.attr_f("cubic_coeff_a", -0.75f);
    a.exclude_outside = n.attr_i("exclude_outside", 0) != 0;
    a.extrapolation = n.attr_f("extrapolation_value", 0.0f);
    if (const Tensor* s = ctx.optional_input(2); s && s->numel() > 0) {
      ctx.check(dtype_is_float(s->dtype()), "scales must be a float tensor");
      scales = float_vector(*s);
    }
    if (const Tensor* s = ctx.optional_input(3); s && s->numel() > 0) {
      ctx.check(s->dtype() == DType::Int64, "sizes must be int64, got {}", dtype_name(s->dtype()));
      sizes_t = s;
    }
    ctx.check(scales.empty() != (sizes_t == nullptr), "exactly one of scales and sizes must be given (non-empty)");
    if (a.coord == "tf_crop_and_resize") {
      const Tensor* roi_t = ctx.optional_input(1);
      ctx.check(roi_t && roi_t->numel() == 2 * x.rank(),
                "tf_crop_and_resize needs roi with 2 * rank = {} values, got {}", 2 * x.rank(),
                roi_t ? roi_t->numel() : 0);
      ctx.check(dtype_is_float(roi_t->dtype()), "roi must be a float tensor");
      roi = float_vector(*roi_t);
      for (double v : roi) ctx.check(std::isfinite(v), "roi values must be finite");
    }
  }
  Shape sizes;
  if (sizes_t) {
    sizes = sizes_t->to_i64_vector();
    ctx.check(static_cast<int64_t>(sizes.size()) == x.rank(), "sizes has {} values for an input of rank {}",
              sizes.size(), x.rank());
  } else {
    ctx.check(static_cast<int64_t>(scales.size()) == x.rank(), "scales has {} values for an input of rank {}",
              scales.size(), x.rank());
  }
  resize_impl(ctx, x, a, scales, sizes_t ? &sizes : nullptr, roi);
}

// Upsample-7 (scales attribute) and -9 (scales input): asymmetric coordinates; nearest takes
// floor(x / scale) (ONNX Runtime's "simple" rule: floor when upsampling; scales are >= 1 here);
// linear interpolates between the two neighbours (any rank, separable).
void upsample(KernelContext& ctx) {
  const ir::Node& n = ctx.node();
  const Tensor& x = ctx.input(0);
  ResizeAttrs a;
  a.mode = n.attr_s("mode", "nearest");
  if (a.mode == "bilinear") a.mode = "linear";
  ctx.check(a.mode == "nearest" || a.mode == "linear", "mode '{}' is not valid (nearest or linear)", a.mode);
  ctx.check(a.mode == "nearest" || x.dtype() != DType::Bool, "linear mode cannot interpolate bool values");
  a.coord = "asymmetric";
  a.nearest_mode = "simple";
  std::vector<double> scales;
  if (ctx.opset() < 9) {
    auto f = n.attr_floats("scales");
    scales.assign(f.begin(), f.end());
  } else {
    ctx.check(dtype_is_float(ctx.input(1).dtype()), "scales must be a float tensor");
    scales = float_vector(ctx.input(1));
  }
  ctx.check(static_cast<int64_t>(scales.size()) == x.rank(), "scales has {} values for an input of rank {}",
            scales.size(), x.rank());
  for (double s : scales) ctx.check(s >= 1, "Upsample scales must be >= 1, got {}", s);
  resize_impl(ctx, x, a, scales, nullptr, {});
}

// ---- GridSample (opset 16; PyTorch grid_sample semantics, which produced the test data) ----------

struct GridSampler {
  int64_t H, W;
  bool align;
  std::string padding;  // zeros | border | reflection

  // Grid value in [-1, 1] -> pixel coordinate.
  double unnormalize(double c, int64_t size) const {
    return align ? (c + 1) / 2 * static_cast<double>(size - 1) : ((c + 1) * static_cast<double>(size) - 1) / 2;
  }
  // Reflects c into [lo2/2, hi2/2] (bounds given doubled, as PyTorch does).
  static double reflect(double c, double lo2, double hi2) {
    if (lo2 == hi2) return 0;
    double mn = lo2 / 2, span = (hi2 - lo2) / 2;
    c = std::fabs(c - mn);
    double extra = std::fmod(c, span);
    int64_t flips = static_cast<int64_t>(std::floor(c / span));
    return flips % 2 == 0 ? extra + mn : span - extra + mn;
  }
  // Applies the padding mode to a coordinate (border/reflection keep it inside the image).
  double pad(double c, int64_t size) const {
    if (padding == "border") return std::clamp(c, 0.0, static_cast<double>(size - 1));
    if (padding == "reflection") {
      c = align ? reflect(c, 0, 2.0 * static_cast<double>(size - 1)) : reflect(c, -1, 2.0 * static_cast<double>(size) - 1);
      return std::clamp(c, 0.0, static_cast<double>(size - 1));
    }
    return c;
  }
  // Pixel value, 0 outside the image (after padding, only "zeros" can land outside).
  static double at(const double* img, int64_t H, int64_t W, int64_t y, int64_t x) {
    return (y < 0 || y >= H || x < 0 || x >= W) ? 0.0 : img[y * W + x];
  }
  // A coordinate as an integer index; anything far outside (or not finite) becomes -8, which is
  // outside the image as it should be, instead of an out-of-range (undefined) conversion.
  static int64_t index(double c, int64_t size) {
    if (!(c > -8.0 && c < static_cast<double>(size) + 8.0)) return -8;
    return static_cast<int64_t>(c);
  }
};

void grid_sample(KernelContext& ctx) {
  const ir::Node& n = ctx.node();
  const Tensor& x = ctx.input(0);
  const Tensor& grid = ctx.input(1);
  ctx.check(dtype_is_float(x.dtype()) && dtype_is_float(grid.dtype()), "X and grid must be float tensors");
  ctx.check(x.rank() == 4, "X must be 4-D [N, C, H, W] at opset 16, got {}", shape_str(x.shape()));
  ctx.check(grid.rank() == 4 && grid.dim(0) == x.dim(0) && grid.dim(3) == 2,
            "grid must be [N, H_out, W_out, 2] with N = {}, got {}", x.dim(0), shape_str(grid.shape()));
  std::string mode = n.attr_s("mode", "bilinear");
  ctx.check(mode == "bilinear" || mode == "nearest" || mode == "bicubic", "unknown mode '{}'", mode);
  GridSampler s{x.dim(2), x.dim(3), n.attr_i("align_corners", 0) != 0, n.attr_s("padding_mode", "zeros")};
  ctx.check(s.padding == "zeros" || s.padding == "border" || s.padding == "reflection", "unknown padding_mode '{}'",
            s.padding);
  const int64_t N = x.dim(0), C = x.dim(1), Ho = grid.dim(1), Wo = grid.dim(2);
  ctx.check((s.H > 0 && s.W > 0) || Ho * Wo == 0, "input spatial size must be non-empty");
  std::vector<double> xin(static_cast<size_t>(x.numel())), g(static_cast<size_t>(grid.numel()));
  for (int64_t i = 0; i < x.numel(); ++i) xin[i] = x.get_f64(i);
  for (int64_t i = 0; i < grid.numel(); ++i) g[i] = grid.get_f64(i);
  Tensor& y = ctx.alloc_output(0, x.dtype(), {N, C, Ho, Wo});  // first: checks the size against the memory limit
  std::vector<double> out(static_cast<size_t>(y.numel()));
  const double A = -0.75;  // PyTorch's bicubic coefficient
  auto cubic = [A](double t) {
    t = std::fabs(t);
    if (t <= 1) return ((A + 2) * t - (A + 3)) * t * t + 1;
    if (t < 2) return ((A * t - 5 * A) * t + 8 * A) * t - 4 * A;
    return 0.0;
  };
  parallel_for(N * C, [&](int64_t b, int64_t e) {
    for (int64_t nc = b; nc < e; ++nc) {
      int64_t bn = nc / C;
      const double* img = xin.data() + nc * s.H * s.W;
      for (int64_t p = 0; p < Ho * Wo; ++p) {
        double gx = g[static_cast<size_t>((bn * Ho * Wo + p) * 2)], gy = g[static_cast<size_t>((bn * Ho * Wo + p) * 2 + 1)];
        double ix = s.unnormalize(gx, s.W), iy = s.unnormalize(gy, s.H);
        double v = 0;
        if (mode == "bicubic") {
          // Taps are padded one by one (the unpadded coordinate picks the 4x4 neighbourhood).
          double fx = std::floor(ix), fy = std::floor(iy), tx = ix - fx, ty = iy - fy;
          for (int j = 0; j < 4; ++j) {
            double row = 0;
            for (int i = 0; i < 4; ++i) {
              double cx = s.pad(fx - 1 + i, s.W), cy = s.pad(fy - 1 + j, s.H);
              double val = GridSampler::at(img, s.H, s.W, GridSampler::index(cy, s.H), GridSampler::index(cx, s.W));
              row += val * cubic(tx - (i - 1));
            }
            v += row * cubic(ty - (j - 1));
          }
        } else {
          ix = s.pad(ix, s.W);
          iy = s.pad(iy, s.H);
          if (!std::isfinite(ix) || !std::isfinite(iy)) { v = 0; }
          else if (mode == "nearest") {
            v = GridSampler::at(img, s.H, s.W, GridSampler::index(std::nearbyint(iy), s.H),
                                GridSampler::index(std::nearbyint(ix), s.W));  // ties to even, as PyTorch
          } else {
            double x0 = std::floor(ix), y0 = std::floor(iy), lx = ix - x0, ly = iy - y0;
            int64_t xi = GridSampler::index(x0, s.W), yi = GridSampler::index(y0, s.H);
            v = GridSampler::at(img, s.H, s.W, yi, xi) * (1 - lx) * (1 - ly) +
                GridSampler::at(img, s.H, s.W, yi, xi + 1) * lx * (1 - ly) +
                GridSampler::at(img, s.H, s.W, yi + 1, xi) * (1 - lx) * ly +
                GridSampler::at(img, s.H, s.W, yi + 1, xi + 1) * lx * ly;
          }
        }
        out[static_cast<size_t>(nc * Ho * Wo + p)] = v;
      }
    }
  });
  dispatch_float(x.dtype(), [&](auto tag) {
    using T = typename decltype(tag)::type;
    for (size_t i = 0; i < out.size(); ++i) y.data<T>()[i] = T(static_cast<compute_t<T>>(out[i]));
  });
}

// ---- RoiAlign (opsets 10, 16; ONNX Runtime's algorithm, which produced the test data) ------------

void roi_align(KernelContext& ctx) {
  const ir::Node& n = ctx.node();
  const Tensor& x = ctx.input(0);
  const Tensor& rois = ctx.input(1);
  const Tensor& bidx = ctx.input(2);
  ctx.check(dtype_is_float(x.dtype()) && rois.dtype() == x.dtype(), "X and rois must be float tensors of one type");
  ctx.check(x.rank() == 4, "X must be 4-D [N, C, H, W], got {}", shape_str(x.shape()));
  ctx.check(rois.rank() == 2 && rois.dim(1) == 4, "rois must be [num_rois, 4], got {}", shape_str(rois.shape()));
  ctx.check(bidx.dtype() == DType::Int64 && bidx.rank() == 1 && bidx.dim(0) == rois.dim(0),
            "batch_indices must be int64 [num_rois = {}], got {} {}", rois.dim(0), dtype_name(bidx.dtype()),
            shape_str(bidx.shape()));
  std::string mode = n.attr_s("mode", "avg");
  ctx.check(mode == "avg" || mode == "max", "unknown mode '{}'", mode);
  const int64_t oh = n.attr_i("output_height", 1), ow = n.attr_i("output_width", 1);
  const int64_t sampling = n.attr_i("sampling_ratio", 0);
  const double spatial_scale = n.attr_f("spatial_scale", 1.0f);
  ctx.check(oh >= 1 && ow >= 1, "output_height/width must be >= 1");
  ctx.check(sampling >= 0, "sampling_ratio must be >= 0");
  std::string ctm = ctx.opset() >= 16 ? n.attr_s("coordinate_transformation_mode", "half_pixel") : "output_half_pixel";
  ctx.check(ctm == "half_pixel" || ctm == "output_half_pixel", "unknown coordinate_transformation_mode '{}'", ctm);
  const bool half_pixel = ctm == "half_pixel";
  const int64_t N = x.dim(0), C = x.dim(1), H = x.dim(2), W = x.dim(3), R = rois.dim(0);
  ctx.check(H > 0 && W > 0, "X must have a non-empty spatial size, got {}", shape_str(x.shape()));
  for (int64_t r = 0; r < R; ++r)
    ctx.check(bidx.data<int64_t>()[r] >= 0 && bidx.data<int64_t>()[r] < N, "batch_indices[{}] = {} is out of [0, {})",
              r, bidx.data<int64_t>()[r], N);
  Tensor& y = ctx.alloc_output(0, x.dtype(), {R, C, oh, ow});  // first: checks the size against the memory limit
  std::vector<double> xin(static_cast<size_t>(x.numel())), out(static_cast<size_t>(y.numel()));
  for (int64_t i = 0; i < x.numel(); ++i) xin[i] = x.get_f64(i);
  for (int64_t i = 0; i < rois.numel(); ++i)
    ctx.check(std::isfinite(rois.get_f64(i)), "rois element {} is not finite", i);

  // The adaptive grid (sampling_ratio 0) grows with the box: bound the total number of samples so
  // a huge box is an error, not an endless loop.
  if (sampling == 0) {
    double samples = 0;
    for (int64_t r = 0; r < R; ++r) {
      double rw = std::fabs(rois.get_f64(r * 4 + 2) - rois.get_f64(r * 4)) * spatial_scale + 1;
      double rh = std::fabs(rois.get_f64(r * 4 + 3) - rois.get_f64(r * 4 + 1)) * spatial_scale + 1;
      samples += std::ceil(rh / static_cast<double>(oh)) * std::ceil(rw / static_cast<double>(ow)) *
                 static_cast<double>(oh * ow * C);
    }
    ctx.check(samples <= 4.0e9, "the adaptive sampling grid needs {:.3g} samples (rois far larger than the image?)",
              samples);
  }
  parallel_for(R, [&](int64_t b, int64_t e) {
    for (int64_t r = b; r < e; ++r) {
      const double off = half_pixel ? 0.5 : 0.0;
      double x1 = rois.get_f64(r * 4) * spatial_scale - off, y1 = rois.get_f64(r * 4 + 1) * spatial_scale - off;
      double x2 = rois.get_f64(r * 4 + 2) * spatial_scale - off, y2 = rois.get_f64(r * 4 + 3) * spatial_scale - off;
      double rw = x2 - x1, rh = y2 - y1;
      if (!half_pixel) { rw = std::max(rw, 1.0); rh = std::max(rh, 1.0); }  // legacy: at least one pixel
      double bin_h = rh / static_cast<double>(oh), bin_w = rw / static_cast<double>(ow);
      int64_t gh = sampling > 0 ? sampling : static_cast<int64_t>(std::ceil(rh / static_cast<double>(oh)));
      int64_t gw = sampling > 0 ? sampling : static_cast<int64_t>(std::ceil(rw / static_cast<double>(ow)));
      gh = std::max<int64_t>(gh, 0);
      gw = std::max<int64_t>(gw, 0);
      double count = static_cast<double>(std::max<int64_t>(gh * gw, 1));
      const int64_t batch = bidx.data<int64_t>()[r];
      for (int64_t c = 0; c < C; ++c) {
        const double* img = xin.data() + (batch * C + c) * H * W;
        for (int64_t ph = 0; ph < oh; ++ph)
          for (int64_t pw = 0; pw < ow; ++pw) {
            double acc = 0;
            bool have_max = false;
            for (int64_t iy = 0; iy < gh; ++iy) {
              double y = y1 + ph * bin_h + (iy + 0.5) * bin_h / static_cast<double>(gh);
              for (int64_t ix = 0; ix < gw; ++ix) {
                double xx = x1 + pw * bin_w + (ix + 0.5) * bin_w / static_cast<double>(gw);
                // Bilinear sample; a point more than one pixel outside contributes 0.
                double w1 = 0, w2 = 0, w3 = 0, w4 = 0;
                int64_t yl = 0, yh = 0, xl = 0, xh = 0;
                if (!(y < -1.0 || y > static_cast<double>(H) || xx < -1.0 || xx > static_cast<double>(W))) {
                  double yy = std::max(y, 0.0), xv = std::max(xx, 0.0);
                  yl = static_cast<int64_t>(yy);
                  xl = static_cast<int64_t>(xv);
                  if (yl >= H - 1) { yl = yh = H - 1; yy = static_cast<double>(yl); } else yh = yl + 1;
                  if (xl >= W - 1) { xl = xh = W - 1; xv = static_cast<double>(xl); } else xh = xl + 1;
                  double ly = yy - yl, lx = xv - xl, hy = 1 - ly, hx = 1 - lx;
                  w1 = hy * hx; w2 = hy * lx; w3 = ly * hx; w4 = ly * lx;
                }
                double v1 = w1 * img[yl * W + xl], v2 = w2 * img[yl * W + xh], v3 = w3 * img[yh * W + xl],
                       v4 = w4 * img[yh * W + xh];
                if (mode == "avg") {
                  acc += v1 + v2 + v3 + v4;
                } else {
                  // ONNX Runtime's max mode: the largest weighted corner, maximised over samples.
                  double m = std::max(std::max(std::max(v1, v2), v3), v4);
                  acc = have_max ? std::max(acc, m) : m;
                  have_max = true;
                }
              }
            }
            out[static_cast<size_t>(((r * C + c) * oh + ph) * ow + pw)] = mode == "avg" ? acc / count : acc;
          }
      }
    }
  });
  dispatch_float(x.dtype(), [&](auto tag) {
    using T = typename decltype(tag)::type;
    for (size_t i = 0; i < out.size(); ++i) y.data<T>()[i] = T(static_cast<compute_t<T>>(out[i]));
  });
}

}  // namespace

void register_resize(Registry& r) {
  r.add({"Resize", "", 10, 17, "all numeric (linear/cubic: non-bool)", resize});
  r.add({"Upsample", "", 7, 9, "all numeric (linear: non-bool)", upsample});
  r.add({"GridSample", "", 16, 17, "float16, float, double", grid_sample});
  r.add({"RoiAlign", "", 10, 17, "float16, float, double", roi_align});
}

}  // namespace opennpu::cpu
