// cpu/kernels/quant.cpp — linear quantization ops: QuantizeLinear, DequantizeLinear,
// DynamicQuantizeLinear, QLinearConv, QLinearMatMul, ConvInteger, MatMulInteger.
//
// These kernels are the oracle an NPU INT8 simulator is checked against bit for bit, so every
// step of the arithmetic is spelled out here and nowhere depends on the floating-point
// environment, the compiler's contraction choices or the thread count:
//
//   round_half_even(v)   v rounded to the nearest integer, ties to the even one, computed with
//                        floor() and an exact subtraction (not nearbyint, whose result would
//                        depend on the current rounding mode).
//   saturate(q)          q clamped to [qmin, qmax] of the output type (uint8 [0,255], int8
//                        [-128,127]); +-inf saturate to the bounds. NaN has no quantized value;
//                        we define it to map to the zero point (the code for real 0).
//   quantize(x)          saturate(round_half_even(x / scale) + zero_point), the division done in
//                        float32 (x / scale, not x * (1/scale), as ONNX writes it).
//   dequantize(q)        float32(q - zero_point) * scale, the subtraction in int32 (exact).
//   integer product sum  acc = sum (a - a_zp) * (b - b_zp) over the reduction, each product exact
//                        in int32 (|product| <= 255*256), the sum in int32 with wrap-around
//                        modulo 2^32 (as a hardware int32 accumulator does; done in uint32 since
//                        signed overflow is undefined in C++). Order of summation is irrelevant
//                        because integer addition modulo 2^32 is associative.
//   requantize(acc)      QLinearConv/QLinearMatMul: multiplier = float32(float32(s_a * s_b) / s_y)
//                        (per output channel / row / column where the scales are 1-D);
//                        y = saturate(round_half_even(float32(acc) * multiplier) + y_zp).
//                        float32(acc) is exact for |acc| <= 2^24 and rounds to nearest-even
//                        beyond. This is what ONNX Runtime (whose results are the ONNX test data)
//                        does, and it equals "dequantize, float conv/matmul, quantize" of the
//                        spec up to float rounding of the (exact) integer sum.
// Padding in QLinearConv/ConvInteger is with the input zero point, i.e. real 0: padded taps
// contribute nothing to acc.
// The scalar helpers live in core/quant.h, shared with the NPU simulator.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>

#include "core/parallel.h"
#include "core/quant.h"
#include "cpu/kernel.h"
#include "cpu/util.h"

namespace opennpu::cpu {
namespace {

// ---- exact scalar helpers (documented at the top of the file; shared with the NPU simulator) --

using quant::QRange;
using quant::qrange;
using quant::quantize_value;

bool is_q8(DType t) { return t == DType::UInt8 || t == DType::Int8; }

// Reads a whole 8-bit (or int32) quantized tensor as int32.
std::vector<int32_t> read_q(const Tensor& t) {
  std::vector<int32_t> v(static_cast<size_t>(t.numel()));
  switch (t.dtype()) {
    case DType::UInt8: for (int64_t i = 0; i < t.numel(); ++i) v[i] = t.data<uint8_t>()[i]; break;
    case DType::Int8: for (int64_t i = 0; i < t.numel(); ++i) v[i] = t.data<int8_t>()[i]; break;
    case DType::Int32: for (int64_t i = 0; i < t.numel(); ++i) v[i] = t.data<int32_t>()[i]; break;
    default: throw Error(fmt::format("quantized tensor of unexpected type {}", dtype_name(t.dtype())));
  }
  return v;
}

void write_q(Tensor& t, int64_t i, int32_t q) {
  if (t.dtype() == DType::UInt8) t.data<uint8_t>()[i] = static_cast<uint8_t>(q);
  else t.data<int8_t>()[i] = static_cast<int8_t>(q);
}

// A scale or zero-point input that is either per-tensor (one element) or 1-D of length `n`.
// Returns the values broadcast to length n (or length 1 when n is irrelevant).
std::vector<float> scale_param(const KernelContext& ctx, const Tensor& t, int64_t n, const char* what) {
  ctx.check(t.dtype() == DType::Float32, "{} must be float32, got {}", what, dtype_name(t.dtype()));
  ctx.check(t.numel() == 1 || (t.rank() == 1 && t.numel() == n),
            "{} must be a scalar or a 1-D tensor of {} elements, got shape {}", what, n, shape_str(t.shape()));
  std::vector<float> v(static_cast<size_t>(std::max<int64_t>(n, 1)));
  for (size_t i = 0; i < v.size(); ++i) v[i] = t.data<float>()[t.numel() == 1 ? 0 : i];
  for (float s : v) ctx.check(std::isfinite(s) && s != 0.0f, "{} must be finite and non-zero, got {}", what, s);
  return v;
}

std::vector<int32_t> zp_param(const KernelContext& ctx, const Tensor* t, DType want, int64_t n, const char* what) {
  std::vector<int32_t> v(static_cast<size_t>(std::max<int64_t>(n, 1)), 0);
  if (!t) return v;
  ctx.check(t->dtype() == want, "{} must have the type of its quantized tensor ({}), got {}", what, dtype_name(want),
            dtype_name(t->dtype()));
  ctx.check(t->numel() == 1 || (t->rank() == 1 && t->numel() == n),
            "{} must be a scalar or a 1-D tensor of {} elements, got shape {}", what, n, shape_str(t->shape()));
  auto q = read_q(*t);
  for (size_t i = 0; i < v.size(); ++i) v[i] = q[t->numel() == 1 ? 0 : i];
  return v;
}

// Per-axis layout: element i of a tensor belongs to channel (i / inner) % channels.
struct AxisLayout {
  int64_t channels = 1, inner = 1;
  int64_t channel_of(int64_t i) const { return (i / inner) % channels; }
};
// Per-tensor when the scale has one element; otherwise per-axis along `axis` (opset 13).
AxisLayout axis_layout(const KernelContext& ctx, const Tensor& x, const Tensor& scale) {
  AxisLayout l;
  if (scale.numel() == 1) return l;
  ctx.check(ctx.opset() >= 13, "per-axis scales need opset 13 (this model has opset {})", ctx.opset());
  int64_t axis = normalize_axis(ctx, ctx.node().attr_i("axis", 1), x.rank());
  ctx.check(x.rank() > 0, "per-axis quantization of a scalar");
  l.channels = x.dim(axis);
  for (int64_t d = axis + 1; d < x.rank(); ++d) l.inner *= x.dim(d);
  return l;
}

// ---- QuantizeLinear / DequantizeLinear / DynamicQuantizeLinear --------------------------------

void quantize_linear(KernelContext& ctx) {
  const Tensor& x = ctx.input(0);
  const Tensor& scale_t = ctx.input(1);
  const Tensor* zp_t = ctx.optional_input(2);
  ctx.check(x.dtype() == DType::Float32 || x.dtype() == DType::Int32, "x must be float32 or int32, got {}",
            dtype_name(x.dtype()));
  DType out_t = zp_t ? zp_t->dtype() : DType::UInt8;
  ctx.check(is_q8(out_t), "y_zero_point must be uint8 or int8, got {}", dtype_name(out_t));
  AxisLayout l = axis_layout(ctx, x, scale_t);
  auto scale = scale_param(ctx, scale_t, l.channels, "y_scale");
  auto zp = zp_param(ctx, zp_t, out_t, l.channels, "y_zero_point");
  if (zp_t) ctx.check(zp_t->numel() == scale_t.numel(), "y_zero_point and y_scale must have the same shape");
  Tensor& y = ctx.alloc_output(0, out_t, x.shape());
  QRange r = qrange(out_t);
  for (int64_t i = 0; i < x.numel(); ++i) {
    float xv = x.dtype() == DType::Float32 ? x.data<float>()[i] : static_cast<float>(x.data<int32_t>()[i]);
    int64_t c = l.channel_of(i);
    write_q(y, i, quant::quantize(xv, scale[c], zp[c], r));
  }
}

void dequantize_linear(KernelContext& ctx) {
  const Tensor& x = ctx.input(0);
  const Tensor& scale_t = ctx.input(1);
  const Tensor* zp_t = ctx.optional_input(2);
  ctx.check(is_q8(x.dtype()) || x.dtype() == DType::Int32, "x must be uint8, int8 or int32, got {}",
            dtype_name(x.dtype()));
  AxisLayout l = axis_layout(ctx, x, scale_t);
  auto scale = scale_param(ctx, scale_t, l.channels, "x_scale");
  auto zp = zp_param(ctx, zp_t, x.dtype(), l.channels, "x_zero_point");
  if (zp_t) ctx.check(zp_t->numel() == scale_t.numel(), "x_zero_point and x_scale must have the same shape");
  if (x.dtype() == DType::Int32)
    for (int32_t z : zp) ctx.check(z == 0, "x_zero_point must be 0 for int32 input (ONNX), got {}", z);
  auto q = read_q(x);
  Tensor& y = ctx.alloc_output(0, DType::Float32, x.shape());
  float* yd = y.data<float>();
  for (int64_t i = 0; i < x.numel(); ++i) {
    int64_t c = l.channel_of(i);
    // int32 subtraction: exact for 8-bit data; int32 data has zero point 0.
    yd[i] = quant::dequantize(q[i], zp[c], scale[c]);
  }
}

// ONNX: x_min = min(0, min(x)), x_max = max(0, max(x)), scale = (x_max - x_min) / 255,
// zero_point = saturate(round_half_even((0 - x_min) / scale)), y = quantize(x) with those.
// All in float32. When x is all zeros the range is empty and the formula divides 0 by 0; like
// ONNX Runtime we then use scale 1 (zero point 0, y all 0).
void dynamic_quantize_linear(KernelContext& ctx) {
  const Tensor& x = ctx.input(0);
  ctx.check(x.dtype() == DType::Float32, "x must be float32, got {}", dtype_name(x.dtype()));
  const float* xd = x.data<float>();
  float x_min = 0.0f, x_max = 0.0f;
  for (int64_t i = 0; i < x.numel(); ++i) {
    ctx.check(std::isfinite(xd[i]), "input element {} is {}: no quantization range exists", i, xd[i]);
    x_min = std::min(x_min, xd[i]);
    x_max = std::max(x_max, xd[i]);
  }
  const QRange r{0, 255};
  float scale = x_max == x_min ? 1.0f : (x_max - x_min) / 255.0f;
  int32_t zp = quantize_value((0.0f - x_min) / scale, 0, r);
  Tensor& y = ctx.alloc_output(0, DType::UInt8, x.shape());
  for (int64_t i = 0; i < x.numel(); ++i) write_q(y, i, quantize_value(xd[i] / scale, zp, r));
  ctx.alloc_output(1, DType::Float32, {}).data<float>()[0] = scale;
  ctx.alloc_output(2, DType::UInt8, {}).data<uint8_t>()[0] = static_cast<uint8_t>(zp);
}

// ---- integer convolution (ConvInteger, QLinearConv) ---------------------------------------------

struct ConvGeom {
  int64_t N = 0, C = 0, M = 0, group = 1, k = 0;  // k = number of spatial dims
  Shape in, kernel, out, stride, dil, pad_begin;
  int64_t in_size = 1, out_size = 1, kernel_size = 1;
};

ConvGeom conv_geometry(const KernelContext& ctx, const Tensor& x, const Tensor& w) {
  const ir::Node& n = ctx.node();
  ConvGeom g;
  ctx.check(x.rank() >= 3, "x must have rank >= 3 ([N, C, spatial...]), got shape {}", shape_str(x.shape()));
  ctx.check(w.rank() == x.rank(), "w rank {} must equal x rank {}", w.rank(), x.rank());
  g.k = x.rank() - 2;
  g.N = x.dim(0);
  g.C = x.dim(1);
  g.M = w.dim(0);
  g.group = n.attr_i("group", 1);
  ctx.check(g.group >= 1 && g.C % g.group == 0 && g.M % g.group == 0,
            "group {} must be >= 1 and divide input channels {} and output channels {}", g.group, g.C, g.M);
  ctx.check(w.dim(1) * g.group == g.C, "w has {} input channels per group, expected {} / group {}", w.dim(1), g.C,
            g.group);
  g.in.assign(x.shape().begin() + 2, x.shape().end());
  g.kernel.assign(w.shape().begin() + 2, w.shape().end());
  auto ks = n.attr_ints("kernel_shape", g.kernel);
  ctx.check(ks == g.kernel, "kernel_shape {} does not match the weight shape {}", shape_str(ks), shape_str(w.shape()));
  g.stride = n.attr_ints("strides", Shape(g.k, 1));
  g.dil = n.attr_ints("dilations", Shape(g.k, 1));
  auto pads = n.attr_ints("pads", Shape(2 * g.k, 0));
  ctx.check(static_cast<int64_t>(g.stride.size()) == g.k && static_cast<int64_t>(g.dil.size()) == g.k &&
                static_cast<int64_t>(pads.size()) == 2 * g.k,
            "strides/dilations need {} values and pads {}", g.k, 2 * g.k);
  std::string auto_pad = n.attr_s("auto_pad", "NOTSET");
  g.out.resize(g.k);
  g.pad_begin.resize(g.k);
  for (int64_t d = 0; d < g.k; ++d) {
    ctx.check(g.stride[d] >= 1 && g.dil[d] >= 1, "strides and dilations must be >= 1");
    ctx.check(g.kernel[d] >= 1, "kernel dims must be >= 1");
    ctx.check(pads[d] >= 0 && pads[d + g.k] >= 0, "pads must be >= 0");
    constexpr int64_t kMax = int64_t{1} << 40;  // keeps every size sum below int64 overflow
    ctx.check(pads[d] < kMax && pads[d + g.k] < kMax && g.stride[d] < kMax && g.dil[d] < kMax && g.kernel[d] < kMax,
              "pads/strides/dilations/kernel of spatial dim {} are implausibly large", d);
    int64_t eff = g.dil[d] * (g.kernel[d] - 1) + 1;  // dilated kernel extent
    int64_t pb = pads[d], pe = pads[d + g.k];
    if (auto_pad == "SAME_UPPER" || auto_pad == "SAME_LOWER") {
      int64_t o = (g.in[d] + g.stride[d] - 1) / g.stride[d];
      int64_t total = std::max<int64_t>(0, (o - 1) * g.stride[d] + eff - g.in[d]);
      pb = auto_pad == "SAME_UPPER" ? total / 2 : total - total / 2;
      pe = total - pb;
    } else if (auto_pad == "VALID") {
      pb = pe = 0;
    } else {
      ctx.check(auto_pad == "NOTSET", "unknown auto_pad '{}'", auto_pad);
    }
    int64_t span = g.in[d] + pb + pe - eff;
    ctx.check(span >= 0, "kernel extent {} is larger than the padded input {} in spatial dim {}", eff,
              g.in[d] + pb + pe, d);
    g.out[d] = span / g.stride[d] + 1;
    g.pad_begin[d] = pb;
  }
  Shape out_shape{g.N, g.M};
  out_shape.insert(out_shape.end(), g.out.begin(), g.out.end());
  checked_numel(out_shape, n.where() + " output");
  g.in_size = checked_numel(g.in, n.where() + " input");
  g.out_size = checked_numel(g.out, n.where() + " output");
  g.kernel_size = checked_numel(g.kernel, n.where() + " kernel");
  return g;
}

// acc[n, m, o] = sum over c in m's group and kernel taps of (x - x_zp) * (w - w_zp[m]),
// wrapping modulo 2^32 (see the file comment). xq/wq hold x - x_zp and w - w_zp already.
std::vector<int32_t> conv_integer_acc(const ConvGeom& g, const std::vector<int32_t>& xq, const std::vector<int32_t>& wq) {
  std::vector<int32_t> acc(static_cast<size_t>(g.N * g.M * g.out_size));
  const int64_t cpg = g.C / g.group, mpg = g.M / g.group;
  // Multi-index of every kernel tap and every output position, computed once.
  std::vector<Shape> taps(g.kernel_size, Shape(g.k)), outs(g.out_size, Shape(g.k));
  for (int64_t t = 0; t < g.kernel_size; ++t)
    for (int64_t d = g.k - 1, r = t; d >= 0; --d) { taps[t][d] = r % g.kernel[d]; r /= g.kernel[d]; }
  for (int64_t o = 0; o < g.out_size; ++o)
    for (int64_t d = g.k - 1, r = o; d >= 0; --d) { outs[o][d] = r % g.out[d]; r /= g.out[d]; }
  parallel_for(g.N * g.M, [&](int64_t b, int64_t e) {
    for (int64_t nm = b; nm < e; ++nm) {
      int64_t n = nm / g.M, m = nm % g.M, grp = m / mpg;
      for (int64_t o = 0; o < g.out_size; ++o) {
        uint32_t sum = 0;
        for (int64_t t = 0; t < g.kernel_size; ++t) {
          int64_t in_off = 0;  // spatial offset of this tap in x, or -1 when it falls in the padding
          for (int64_t d = 0; d < g.k; ++d) {
            int64_t p = outs[o][d] * g.stride[d] - g.pad_begin[d] + taps[t][d] * g.dil[d];
            if (p < 0 || p >= g.in[d]) { in_off = -1; break; }
            in_off = in_off * g.in[d] + p;
          }
          if (in_off < 0) continue;  // padding is the zero point: contributes 0
          for (int64_t c = 0; c < cpg; ++c) {
            int32_t xv = xq[static_cast<size_t>((n * g.C + grp * cpg + c) * g.in_size + in_off)];
            int32_t wv = wq[static_cast<size_t>((m * cpg + c) * g.kernel_size + t)];
            sum += static_cast<uint32_t>(xv * wv);
          }
        }
        acc[static_cast<size_t>(nm * g.out_size + o)] = static_cast<int32_t>(sum);
      }
    }
  });
  return acc;
}

// x - x_zp (x_zp per tensor) and w - w_zp[m] (w_zp per tensor or per output channel).
void subtract_conv_zero_points(const KernelContext& ctx, const ConvGeom& g, const Tensor& x, const Tensor* x_zp,
                               const Tensor& w, const Tensor* w_zp, std::vector<int32_t>& xq,
                               std::vector<int32_t>& wq) {
  xq = read_q(x);
  wq = read_q(w);
  auto xz = zp_param(ctx, x_zp, x.dtype(), 1, "x_zero_point");
  ctx.check(!x_zp || x_zp->numel() == 1, "x_zero_point must be a scalar (per-tensor)");
  auto wz = zp_param(ctx, w_zp, w.dtype(), g.M, "w_zero_point");
  for (auto& v : xq) v -= xz[0];
  int64_t per_m = w.numel() / std::max<int64_t>(g.M, 1);
  for (int64_t i = 0; i < w.numel(); ++i) wq[i] -= wz[static_cast<size_t>(i / per_m)];
}

Shape conv_out_shape(const ConvGeom& g) {
  Shape s{g.N, g.M};
  s.insert(s.end(), g.out.begin(), g.out.end());
  return s;
}

void conv_integer(KernelContext& ctx) {
  const Tensor& x = ctx.input(0);
  const Tensor& w = ctx.input(1);
  ctx.check(is_q8(x.dtype()) && is_q8(w.dtype()), "x and w must be uint8 or int8, got {} and {}",
            dtype_name(x.dtype()), dtype_name(w.dtype()));
  ConvGeom g = conv_geometry(ctx, x, w);
  std::vector<int32_t> xq, wq;
  Tensor& y = ctx.alloc_output(0, DType::Int32, conv_out_shape(g));  // first: checks the memory limit
  subtract_conv_zero_points(ctx, g, x, ctx.optional_input(2), w, ctx.optional_input(3), xq, wq);
  auto acc = conv_integer_acc(g, xq, wq);
  std::memcpy(y.raw(), acc.data(), acc.size() * sizeof(int32_t));
}

// y = saturate(round_half_even(float32(acc + bias[m]) * float32(float32(x_s * w_s[m]) / y_s)) + y_zp)
void qlinear_conv(KernelContext& ctx) {
  const Tensor& x = ctx.input(0);
  const Tensor& w = ctx.input(3);
  const Tensor& y_zp_t = ctx.input(7);
  ctx.check(is_q8(x.dtype()) && is_q8(w.dtype()), "x and w must be uint8 or int8, got {} and {}",
            dtype_name(x.dtype()), dtype_name(w.dtype()));
  ctx.check(is_q8(y_zp_t.dtype()), "y_zero_point must be uint8 or int8, got {}", dtype_name(y_zp_t.dtype()));
  ConvGeom g = conv_geometry(ctx, x, w);
  auto x_s = scale_param(ctx, ctx.input(1), 1, "x_scale");
  ctx.check(ctx.input(1).numel() == 1, "x_scale must be a scalar (per-tensor)");
  auto w_s = scale_param(ctx, ctx.input(4), g.M, "w_scale");
  auto y_s = scale_param(ctx, ctx.input(6), 1, "y_scale");
  ctx.check(ctx.input(6).numel() == 1, "y_scale must be a scalar (per-tensor)");
  auto y_zp = zp_param(ctx, &y_zp_t, y_zp_t.dtype(), 1, "y_zero_point");
  ctx.check(y_zp_t.numel() == 1, "y_zero_point must be a scalar (per-tensor)");
  std::vector<int32_t> bias(static_cast<size_t>(g.M), 0);
  if (const Tensor* b = ctx.optional_input(8)) {
    ctx.check(b->dtype() == DType::Int32 && b->rank() == 1 && b->numel() == g.M,
              "B must be a 1-D int32 tensor of {} elements, got {} {}", g.M, dtype_name(b->dtype()),
              shape_str(b->shape()));
    std::memcpy(bias.data(), b->raw(), bias.size() * sizeof(int32_t));
  }
  std::vector<int32_t> xq, wq;
  Tensor& y = ctx.alloc_output(0, y_zp_t.dtype(), conv_out_shape(g));  // first: checks the memory limit
  subtract_conv_zero_points(ctx, g, x, &ctx.input(2), w, &ctx.input(5), xq, wq);
  auto acc = conv_integer_acc(g, xq, wq);
  QRange r = qrange(y.dtype());
  for (int64_t i = 0; i < static_cast<int64_t>(acc.size()); ++i) {
    int64_t m = (i / g.out_size) % g.M;
    write_q(y, i, quant::requantize(acc[i], bias[m], quant::requant_multiplier(x_s[0], w_s[m], y_s[0]), y_zp[0], r));
  }
}

// ---- integer matmul (MatMulInteger, QLinearMatMul) ----------------------------------------------

// numpy matmul shapes: A [..., M, K] (1-D: [K]), B [..., K, N] (1-D: [K]); batch dims broadcast.
struct MatMulGeom {
  int64_t M = 1, K = 1, N = 1, batch = 1;
  Shape out;
  std::vector<int64_t> a_off, b_off;  // element offset of each batch's matrix in A and B
};

MatMulGeom matmul_geometry(const KernelContext& ctx, const Tensor& a, const Tensor& b) {
  ctx.check(a.rank() >= 1 && b.rank() >= 1, "matmul inputs must have rank >= 1");
  MatMulGeom g;
  Shape as = a.shape(), bs = b.shape();
  bool a1 = as.size() == 1, b1 = bs.size() == 1;
  if (a1) as.insert(as.begin(), 1);
  if (b1) bs.push_back(1);
  g.M = as[as.size() - 2];
  g.K = as.back();
  g.N = bs.back();
  ctx.check(bs[bs.size() - 2] == g.K, "inner dimensions differ: A {} and B {}", shape_str(a.shape()),
            shape_str(b.shape()));
  Shape ab(as.begin(), as.end() - 2), bb(bs.begin(), bs.end() - 2);
  Shape batch = broadcast_shapes({ab, bb}, ctx.node().where());
  int64_t nb = checked_numel(batch, "matmul batch");
  auto sa = broadcast_strides(ab, batch), sb = broadcast_strides(bb, batch);
  g.batch = nb;
  g.a_off.resize(nb);
  g.b_off.resize(nb);
  for (int64_t i = 0; i < nb; ++i) {
    int64_t ra = 0, rb = 0;
    for (int64_t d = static_cast<int64_t>(batch.size()) - 1, r = i; d >= 0; --d) {
      int64_t idx = r % batch[d];
      r /= batch[d];
      ra += idx * sa[d];
      rb += idx * sb[d];
    }
    g.a_off[i] = ra * g.M * g.K;
    g.b_off[i] = rb * g.K * g.N;
  }
  g.out = batch;
  if (!a1) g.out.push_back(g.M);
  if (!b1) g.out.push_back(g.N);
  return g;
}

// acc[batch, i, j] = sum_k (a[i,k] - a_zp[i]) * (b[k,j] - b_zp[j]), wrapping modulo 2^32.
std::vector<int32_t> matmul_integer_acc(const MatMulGeom& g, const std::vector<int32_t>& aq,
                                        const std::vector<int32_t>& bq, const std::vector<int32_t>& a_zp,
                                        const std::vector<int32_t>& b_zp) {
  std::vector<int32_t> acc(static_cast<size_t>(g.batch * g.M * g.N));
  parallel_for(g.batch * g.M, [&](int64_t beg, int64_t end) {
    for (int64_t bi = beg; bi < end; ++bi) {
      int64_t b = bi / g.M, i = bi % g.M;
      const int32_t* ar = aq.data() + g.a_off[b] + i * g.K;
      const int32_t* bm = bq.data() + g.b_off[b];
      int32_t az = a_zp[a_zp.size() == 1 ? 0 : i];
      for (int64_t j = 0; j < g.N; ++j) {
        int32_t bz = b_zp[b_zp.size() == 1 ? 0 : j];
        uint32_t sum = 0;
        for (int64_t k = 0; k < g.K; ++k) sum += static_cast<uint32_t>((ar[k] - az) * (bm[k * g.N + j] - bz));
        acc[static_cast<size_t>(bi * g.N + j)] = static_cast<int32_t>(sum);
      }
    }
  });
  return acc;
}

// Zero points / scales of A are per tensor or per row (M values); of B per tensor or per column (N).
std::vector<int32_t> row_zp(const KernelContext& ctx, const Tensor* t, DType want, int64_t n, const char* what) {
  auto v = zp_param(ctx, t, want, n, what);
  if (!t || t->numel() == 1) v.resize(1);
  return v;
}

void matmul_integer(KernelContext& ctx) {
  const Tensor& a = ctx.input(0);
  const Tensor& b = ctx.input(1);
  ctx.check(is_q8(a.dtype()) && is_q8(b.dtype()), "A and B must be uint8 or int8, got {} and {}",
            dtype_name(a.dtype()), dtype_name(b.dtype()));
  MatMulGeom g = matmul_geometry(ctx, a, b);
  auto a_zp = row_zp(ctx, ctx.optional_input(2), a.dtype(), g.M, "a_zero_point (per row)");
  auto b_zp = row_zp(ctx, ctx.optional_input(3), b.dtype(), g.N, "b_zero_point (per column)");
  Tensor& y = ctx.alloc_output(0, DType::Int32, g.out);  // first: checks the memory limit
  auto acc = matmul_integer_acc(g, read_q(a), read_q(b), a_zp, b_zp);
  std::memcpy(y.raw(), acc.data(), acc.size() * sizeof(int32_t));
}

// y[i,j] = saturate(round_half_even(float32(acc[i,j]) * float32(float32(a_s[i] * b_s[j]) / y_s[i])) + y_zp[i])
void qlinear_matmul(KernelContext& ctx) {
  const Tensor& a = ctx.input(0);
  const Tensor& b = ctx.input(3);
  const Tensor& y_zp_t = ctx.input(7);
  ctx.check(is_q8(a.dtype()) && is_q8(b.dtype()), "a and b must be uint8 or int8, got {} and {}",
            dtype_name(a.dtype()), dtype_name(b.dtype()));
  ctx.check(is_q8(y_zp_t.dtype()), "y_zero_point must be uint8 or int8, got {}", dtype_name(y_zp_t.dtype()));
  MatMulGeom g = matmul_geometry(ctx, a, b);
  auto a_s = scale_param(ctx, ctx.input(1), g.M, "a_scale (per row)");
  auto a_zp = row_zp(ctx, &ctx.input(2), a.dtype(), g.M, "a_zero_point (per row)");
  auto b_s = scale_param(ctx, ctx.input(4), g.N, "b_scale (per column)");
  auto b_zp = row_zp(ctx, &ctx.input(5), b.dtype(), g.N, "b_zero_point (per column)");
  auto y_s = scale_param(ctx, ctx.input(6), g.M, "y_scale (per row)");
  auto y_zp = row_zp(ctx, &y_zp_t, y_zp_t.dtype(), g.M, "y_zero_point (per row)");
  Tensor& y = ctx.alloc_output(0, y_zp_t.dtype(), g.out);  // first: checks the memory limit
  auto acc = matmul_integer_acc(g, read_q(a), read_q(b), a_zp, b_zp);
  QRange r = qrange(y.dtype());
  for (int64_t idx = 0; idx < static_cast<int64_t>(acc.size()); ++idx) {
    int64_t i = (idx / g.N) % g.M, j = idx % g.N;
    const float mult = quant::requant_multiplier(a_s[i], b_s[j], y_s[i]);
    write_q(y, idx, quant::requantize(acc[idx], 0, mult, y_zp[y_zp.size() == 1 ? 0 : i], r));
  }
}

}  // namespace

void register_quant(Registry& r) {
  r.add({"QuantizeLinear", "", 10, 17, "x: float32, int32; y: uint8, int8 (per-axis from opset 13)", quantize_linear});
  r.add({"DequantizeLinear", "", 10, 17, "x: uint8, int8, int32; y: float32 (per-axis from opset 13)",
         dequantize_linear});
  r.add({"DynamicQuantizeLinear", "", 11, 17, "x: float32; y: uint8", dynamic_quantize_linear});
  r.add({"ConvInteger", "", 10, 17, "uint8, int8 -> int32", conv_integer});
  r.add({"QLinearConv", "", 10, 17, "uint8, int8 (per-channel w)", qlinear_conv});
  r.add({"MatMulInteger", "", 10, 17, "uint8, int8 -> int32", matmul_integer});
  r.add({"QLinearMatMul", "", 10, 17, "uint8, int8 (per-row/column scales)", qlinear_matmul});
}

}  // namespace opennpu::cpu
