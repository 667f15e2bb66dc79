// cpu/kernels/nn.cpp — neural-network reference kernels: Conv and ConvTranspose (1-D/2-D/3-D and
// beyond), the normalizations (BatchNormalization, InstanceNormalization, LayerNormalization, LRN,
// MeanVarianceNormalization), Softmax/LogSoftmax/Hardmax and Dropout.
//
// Conv is im2col + one GEMM per (image, group) through cpu/gemm.h (OpenBLAS); 1x1 stride-1
// unpadded convs use the input as the im2col matrix directly, and depthwise 1-D/2-D convs use a
// direct loop (a GEMM with one input channel per group would waste the im2col copy). ConvTranspose
// is one GEMM per (image, group) into a column matrix followed by col2im (scatter-add). Parallelism:
// many (image, group) tasks run one per thread with single-threaded GEMMs; otherwise the tasks run
// in order, im2col/col2im are split over rows/channels, and OpenBLAS threads each GEMM. Every
// output element is computed by one thread in a fixed order, so results do not depend on the
// thread count.
#include <algorithm>
#include <cmath>
#include <random>
#include <string>

#include "core/parallel.h"
#include "cpu/kernels/float_staging.h"
#include "cpu/util.h"

namespace opennpu::cpu {
namespace {

using DT = DType;

// ---------------------------------------------------------------------------------------------
// Convolution geometry, shared by Conv and ConvTranspose. Per spatial dim: input/kernel/output
// extents, stride, dilation and the begin/end padding actually applied.

struct ConvGeom {
  int64_t N = 0, C = 0, M = 0, G = 1, Cg = 0, Mg = 0;  // batch, in/out channels, groups, per group
  size_t nsp = 0;                                       // number of spatial dims
  std::vector<int64_t> in, k, out, s, d, pb, pe;
  int64_t in_size = 1, out_size = 1, kprod = 1;         // products of in, out, k
};

// Output positions q in [0, count) whose source q * s + off lies in [0, limit), as [lo, hi).
inline void valid_range(int64_t off, int64_t s, int64_t limit, int64_t count, int64_t& lo, int64_t& hi) {
  lo = off >= 0 ? 0 : (-off + s - 1) / s;
  hi = limit - 1 - off < 0 ? 0 : (limit - 1 - off) / s + 1;
  lo = std::min(lo, count);
  hi = std::clamp(hi, lo, count);
}

// Reads and validates the attributes both ops share; fills nsp, k, s, d and the explicit pads.
// Returns auto_pad.
std::string read_conv_attrs(const KernelContext& ctx, const Tensor& X, const Tensor& W, ConvGeom& g) {
  const ir::Node& node = ctx.node();
  ctx.check(X.rank() >= 3, "input X must be [N, C, D1, ...] (rank >= 3), got {}", shape_str(X.shape()));
  ctx.check(W.rank() == X.rank(), "weights W {} must have the same rank as X {}", shape_str(W.shape()),
            shape_str(X.shape()));
  g.nsp = static_cast<size_t>(X.rank() - 2);
  g.N = X.dim(0);
  g.C = X.dim(1);
  g.G = node.attr_i("group", 1);
  ctx.check(g.G >= 1, "attribute 'group' must be >= 1, got {}", g.G);
  g.in.assign(X.shape().begin() + 2, X.shape().end());
  g.k.assign(W.shape().begin() + 2, W.shape().end());
  for (size_t i = 0; i < g.nsp; ++i)
    ctx.check(g.k[i] >= 1, "weights W {} have an empty kernel dim", shape_str(W.shape()));
  if (node.has_attr("kernel_shape")) {
    auto ks = node.attr_ints("kernel_shape");
    ctx.check(ks == g.k, "attribute 'kernel_shape' {} does not match the weights' spatial dims {}", shape_str(ks),
              shape_str(g.k));
  }
  const size_t n = g.nsp;
  g.s = node.attr_ints("strides", std::vector<int64_t>(n, 1));
  g.d = node.attr_ints("dilations", std::vector<int64_t>(n, 1));
  auto pads = node.attr_ints("pads", std::vector<int64_t>(2 * n, 0));
  ctx.check(g.s.size() == n, "attribute 'strides' has {} values, expected {} (one per spatial dim)", g.s.size(), n);
  ctx.check(g.d.size() == n, "attribute 'dilations' has {} values, expected {} (one per spatial dim)", g.d.size(), n);
  ctx.check(pads.size() == 2 * n, "attribute 'pads' has {} values, expected {} (begin and end per spatial dim)",
            pads.size(), 2 * n);
  for (size_t i = 0; i < n; ++i) {
    ctx.check(g.s[i] >= 1, "attribute 'strides' must be > 0, got {}", shape_str(g.s));
    ctx.check(g.d[i] >= 1, "attribute 'dilations' must be > 0, got {}", shape_str(g.d));
    ctx.check(pads[i] >= 0 && pads[i + n] >= 0, "attribute 'pads' must be >= 0, got {}", shape_str(pads));
  }
  g.pb.assign(pads.begin(), pads.begin() + n);
  g.pe.assign(pads.begin() + n, pads.end());
  std::string auto_pad = node.attr_s("auto_pad", "NOTSET");
  ctx.check(auto_pad == "NOTSET" || auto_pad == "SAME_UPPER" || auto_pad == "SAME_LOWER" || auto_pad == "VALID",
            "attribute 'auto_pad' must be NOTSET, SAME_UPPER, SAME_LOWER or VALID, got '{}'", auto_pad);
  for (size_t i = 0; i < n; ++i) {
    g.in_size = checked_numel({g.in_size, g.in[i]}, "conv input");
    g.kprod = checked_numel({g.kprod, g.k[i]}, "conv kernel");
  }
  return auto_pad;
}

void finish_geometry(const KernelContext& ctx, ConvGeom& g) {
  g.out_size = 1;
  for (size_t i = 0; i < g.nsp; ++i) {
    ctx.check(g.out[i] >= 1, "output spatial dim {} would be {} (input {}, kernel {}, stride {}, dilation {}, pads {}/{})", i,
              g.out[i], g.in[i], g.k[i], g.s[i], g.d[i], g.pb[i], g.pe[i]);
    g.out_size = checked_numel({g.out_size, g.out[i]}, "conv output");
  }
}

ConvGeom conv_geometry(const KernelContext& ctx, const Tensor& X, const Tensor& W, const Tensor* B) {
  ConvGeom g;
  const std::string auto_pad = read_conv_attrs(ctx, X, W, g);
  g.M = W.dim(0);
  g.Cg = W.dim(1);
  ctx.check(g.C == g.Cg * g.G, "input has {} channels but weights W {} with group={} expect {}", g.C, shape_str(W.shape()),
            g.G, g.Cg * g.G);
  ctx.check(g.M % g.G == 0, "weights W {}: {} output channels are not divisible by group={}", shape_str(W.shape()), g.M,
            g.G);
  g.Mg = g.M / g.G;
  if (B) ctx.check(B->rank() == 1 && B->dim(0) == g.M, "bias B {} must be [{}]", shape_str(B->shape()), g.M);
  g.out.resize(g.nsp);
  for (size_t i = 0; i < g.nsp; ++i) {
    const int64_t ek = (g.k[i] - 1) * g.d[i] + 1;  // kernel extent with dilation
    if (auto_pad == "SAME_UPPER" || auto_pad == "SAME_LOWER") {
      // Output = ceil(in / stride); the padding needed for it is split evenly, the odd one at
      // the end (SAME_UPPER) or the beginning (SAME_LOWER).
      g.out[i] = (g.in[i] + g.s[i] - 1) / g.s[i];
      const int64_t total = std::max<int64_t>(0, (g.out[i] - 1) * g.s[i] + ek - g.in[i]);
      const int64_t small = total / 2, big = total - small;
      g.pb[i] = auto_pad == "SAME_UPPER" ? small : big;
      g.pe[i] = total - g.pb[i];
    } else {
      if (auto_pad == "VALID") g.pb[i] = g.pe[i] = 0;
      const int64_t padded = g.in[i] + g.pb[i] + g.pe[i];
      ctx.check(padded >= ek, "kernel extent {} (kernel {}, dilation {}) exceeds the padded input {} along spatial dim {}",
                ek, g.k[i], g.d[i], padded, i);
      g.out[i] = (padded - ek) / g.s[i] + 1;
    }
  }
  finish_geometry(ctx, g);
  return g;
}

// Writes rows [0, Cg*kprod) x output positions [p0, p0+P) of the im2col matrix of one (image,
// group): row (c, kernel offset), column p holds the input sample that kernel offset sees for
// output position p, or 0 in the padding.
template <class Tc>
void im2col(const ConvGeom& g, const Tc* x, Tc* col, int64_t p0, int64_t P) {
  const size_t nsp = g.nsp, last = nsp - 1;
  const int64_t OL = g.out[last], IL = g.in[last], sL = g.s[last];
  const std::vector<int64_t> in_st = strides_of(g.in);
  parallel_for(g.Cg * g.kprod, [&](int64_t lo, int64_t hi) {
    std::vector<int64_t> kidx(nsp);
    for (int64_t r = lo; r < hi; ++r) {
      const int64_t c = r / g.kprod;
      int64_t kr = r % g.kprod;
      for (int64_t d = static_cast<int64_t>(last); d >= 0; --d) { kidx[d] = kr % g.k[d]; kr /= g.k[d]; }
      const Tc* xc = x + c * g.in_size;
      Tc* dst = col + r * P;
      const int64_t offL = kidx[last] * g.d[last] - g.pb[last];
      int64_t vlo, vhi;  // output positions along the last dim that read inside the input
      valid_range(offL, sL, IL, OL, vlo, vhi);
      for (int64_t p = p0; p < p0 + P;) {
        // One run of output positions along the last dim: [o_begin, o_end) of output row `outer`.
        const int64_t outer = p / OL, o_begin = p % OL, o_end = std::min(OL, o_begin + (p0 + P - p));
        int64_t base = 0, rem = outer;
        bool inside = true;
        for (int64_t d = static_cast<int64_t>(last) - 1; d >= 0; --d) {
          const int64_t od = rem % g.out[d];
          rem /= g.out[d];
          const int64_t id = od * g.s[d] + kidx[d] * g.d[d] - g.pb[d];
          inside = inside && id >= 0 && id < g.in[d];
          base += id * in_st[d];
        }
        Tc* seg = dst + (p - p0);  // seg[o - o_begin] is the column of output position o
        // [o_begin, a) and [b, o_end) read the padding; [a, b) reads x[base + o * sL + offL].
        const int64_t a = inside ? std::clamp(vlo, o_begin, o_end) : o_end;
        const int64_t b = inside ? std::clamp(vhi, a, o_end) : o_end;
        std::fill(seg, seg + (a - o_begin), Tc(0));
        if (sL == 1) std::copy(xc + base + a + offL, xc + base + b + offL, seg + (a - o_begin));
        else for (int64_t o = a; o < b; ++o) seg[o - o_begin] = xc[base + o * sL + offL];
        std::fill(seg + (b - o_begin), seg + (o_end - o_begin), Tc(0));
        p += o_end - o_begin;
      }
    }
  });
}

// Depthwise (one input channel per group) 1-D/2-D conv as a direct loop, parallel over (image,
// output channel). 1-D is the 2-D loop with height 1.
template <class Tc>
void depthwise_direct(const ConvGeom& g, const Tc* x, const Tc* w, const Tc* bias, Tc* y) {
  const bool two = g.nsp == 2;
  const int64_t H = two ? g.in[0] : 1, Wd = g.in.back(), OH = two ? g.out[0] : 1, OW = g.out.back();
  const int64_t KH = two ? g.k[0] : 1, KW = g.k.back(), sh = two ? g.s[0] : 1, sw = g.s.back();
  const int64_t dh = two ? g.d[0] : 1, dw = g.d.back(), ph = two ? g.pb[0] : 0, pw = g.pb.back();
  parallel_for(g.N * g.M, [&](int64_t lo, int64_t hi) {
    for (int64_t t = lo; t < hi; ++t) {
      const int64_t n = t / g.M, m = t % g.M, c = m / g.Mg;  // group m / Mg reads input channel c
      const Tc* xc = x + (n * g.C + c) * H * Wd;
      const Tc* wm = w + m * KH * KW;
      Tc* yc = y + t * OH * OW;
      for (int64_t oh = 0; oh < OH; ++oh) {
        Tc* yrow = yc + oh * OW;
        std::fill(yrow, yrow + OW, bias ? bias[m] : Tc(0));
        for (int64_t kh = 0; kh < KH; ++kh) {
          const int64_t ih = oh * sh - ph + kh * dh;
          if (ih < 0 || ih >= H) continue;
          const Tc* xrow = xc + ih * Wd;
          for (int64_t kw = 0; kw < KW; ++kw) {
            const Tc wv = wm[kh * KW + kw];
            const int64_t off = kw * dw - pw;
            int64_t a, b;
            valid_range(off, sw, Wd, OW, a, b);
            for (int64_t ow = a; ow < b; ++ow) yrow[ow] += wv * xrow[ow * sw + off];
          }
        }
      }
    }
  }, 4);
}

// Upper bound on one im2col block (elements); bigger outputs are done in column blocks.
constexpr int64_t kMaxColElems = int64_t(1) << 23;  // 32 MiB of float

template <class Tc>
void conv_forward(const ConvGeom& g, const Tc* x, const Tc* w, const Tc* bias, Tc* y) {
  if (g.G > 1 && g.Cg == 1 && g.nsp <= 2) { depthwise_direct(g, x, w, bias, y); return; }
  const int64_t Kd = g.Cg * g.kprod;  // GEMM inner dim
  bool pointwise = g.kprod == 1;
  for (size_t i = 0; i < g.nsp; ++i) pointwise = pointwise && g.s[i] == 1 && g.pb[i] == 0 && g.out[i] == g.in[i];
  const int64_t block = pointwise ? g.out_size : std::clamp<int64_t>(kMaxColElems / std::max<int64_t>(Kd, 1), 1, g.out_size);
  const Tc beta = bias ? Tc(1) : Tc(0);
  auto run_task = [&](int64_t t, std::vector<Tc>& col) {
    const int64_t n = t / g.G, grp = t % g.G;
    const Tc* xg = x + (n * g.C + grp * g.Cg) * g.in_size;
    const Tc* wg = w + grp * g.Mg * Kd;
    Tc* yg = y + (n * g.M + grp * g.Mg) * g.out_size;
    if (bias)  // the GEMM accumulates onto the bias
      for (int64_t m = 0; m < g.Mg; ++m) std::fill(yg + m * g.out_size, yg + (m + 1) * g.out_size, bias[grp * g.Mg + m]);
    if (Kd == 0) return;
    if (pointwise) {  // the input [Cg, H*W] is its own im2col matrix
      gemm(false, false, g.Mg, g.out_size, Kd, Tc(1), wg, Kd, xg, g.in_size, beta, yg, g.out_size);
      return;
    }
    col.resize(static_cast<size_t>(Kd * block));
    for (int64_t p0 = 0; p0 < g.out_size; p0 += block) {
      const int64_t P = std::min(block, g.out_size - p0);
      im2col(g, xg, col.data(), p0, P);
      gemm(false, false, g.Mg, P, Kd, Tc(1), wg, Kd, col.data(), P, beta, yg + p0, g.out_size);
    }
  };
  const int64_t tasks = g.N * g.G;
  if (tasks > 1 && tasks >= num_threads()) {
    parallel_for(tasks, [&](int64_t lo, int64_t hi) {
      std::vector<Tc> col;
      for (int64_t t = lo; t < hi; ++t) run_task(t, col);
    });
  } else {
    std::vector<Tc> col;
    for (int64_t t = 0; t < tasks; ++t) run_task(t, col);
  }
}

void Conv(KernelContext& ctx) {
  const Tensor& X = ctx.input(0);
  const Tensor& W = ctx.input(1);
  const Tensor* B = ctx.optional_input(2);
  check_dtype_in(ctx, X, {DT::Float16, DT::Float32, DT::Float64}, "input X");
  ctx.check(W.dtype() == X.dtype() && (!B || B->dtype() == X.dtype()), "X, W and B must share one dtype");
  const ConvGeom g = conv_geometry(ctx, X, W, B);
  Shape out = {g.N, g.M};
  out.insert(out.end(), g.out.begin(), g.out.end());
  Tensor& Y = ctx.alloc_output(0, X.dtype(), out);
  dispatch_compute(X.dtype(), [&](auto tag) {
    using Tc = typename decltype(tag)::type;
    std::vector<Tc> tx, tw, tb;
    OutBuf<Tc> y(Y);
    conv_forward<Tc>(g, widen(X, tx), widen(W, tw), B ? widen(*B, tb) : nullptr, y.data());
    y.commit();
  }, "Conv");
}

// ---------------------------------------------------------------------------------------------
// ConvTranspose: the adjoint of Conv. W is [C, M/group, k...]. Per (image, group) the column
// matrix col[Mg*kprod, in_size] = W_g^T x X_g is scattered into Y: input position i with kernel
// offset kk lands on output position i * stride - pad_begin + kk * dilation.

ConvGeom convtranspose_geometry(const KernelContext& ctx, const Tensor& X, const Tensor& W, const Tensor* B) {
  ConvGeom g;
  const std::string auto_pad = read_conv_attrs(ctx, X, W, g);
  const size_t n = g.nsp;
  ctx.check(W.dim(0) == g.C, "weights W {} must have {} (input channels) as first dim", shape_str(W.shape()), g.C);
  ctx.check(g.C % g.G == 0, "input channels {} are not divisible by group={}", g.C, g.G);
  g.Cg = g.C / g.G;
  g.Mg = W.dim(1);
  g.M = g.Mg * g.G;
  if (B) ctx.check(B->rank() == 1 && B->dim(0) == g.M, "bias B {} must be [{}]", shape_str(B->shape()), g.M);
  auto op = ctx.node().attr_ints("output_padding", std::vector<int64_t>(n, 0));
  ctx.check(op.size() == n, "attribute 'output_padding' has {} values, expected {}", op.size(), n);
  for (size_t i = 0; i < n; ++i)
    ctx.check(op[i] >= 0 && (op[i] < g.s[i] || op[i] < g.d[i]),
              "attribute 'output_padding' {} must be >= 0 and smaller than the stride or the dilation", shape_str(op));
  std::vector<int64_t> os = ctx.node().attr_ints("output_shape");
  if (!os.empty()) {
    // Usually the spatial dims only; some exporters give the full [N, M, ...] shape.
    if (os.size() == n + 2) os.erase(os.begin(), os.begin() + 2);
    ctx.check(os.size() == n, "attribute 'output_shape' has {} values, expected {} (one per spatial dim)", os.size(), n);
  }
  g.out.resize(n);
  for (size_t i = 0; i < n; ++i) {
    const int64_t full = g.s[i] * (g.in[i] - 1) + op[i] + (g.k[i] - 1) * g.d[i] + 1;  // un-cropped extent
    if (!os.empty() || auto_pad == "SAME_UPPER" || auto_pad == "SAME_LOWER") {
      // Target size given (output_shape, or in * stride for SAME): crop `total` positions, the
      // odd one at the end for SAME_UPPER, at the beginning otherwise (the ONNX formula). A target
      // larger than `full` crops nothing and leaves the tail positions at the bias (as ORT does).
      g.out[i] = !os.empty() ? os[i] : g.in[i] * g.s[i];
      const int64_t total = std::max<int64_t>(0, full - g.out[i]);
      g.pb[i] = auto_pad == "SAME_UPPER" ? total / 2 : total - total / 2;
      g.pe[i] = total - g.pb[i];
    } else {
      if (auto_pad == "VALID") g.pb[i] = g.pe[i] = 0;
      g.out[i] = full - g.pb[i] - g.pe[i];
    }
  }
  finish_geometry(ctx, g);
  return g;
}

// Adds the column matrix of one (image, group) into its output channels yg. Parallel over output
// channels: each channel is written by one thread, in a fixed order.
template <class Tc>
void col2im(const ConvGeom& g, const Tc* col, Tc* yg) {
  const size_t nsp = g.nsp, last = nsp - 1;
  const int64_t OL = g.out[last], IL = g.in[last], sL = g.s[last];
  const std::vector<int64_t> out_st = strides_of(g.out);
  const int64_t outer_count = g.in_size / IL;
  parallel_for(g.Mg, [&](int64_t lo, int64_t hi) {
    std::vector<int64_t> kidx(nsp);
    for (int64_t m = lo; m < hi; ++m) {
      Tc* ym = yg + m * g.out_size;
      for (int64_t kr0 = 0; kr0 < g.kprod; ++kr0) {
        int64_t kr = kr0;
        for (int64_t d = static_cast<int64_t>(last); d >= 0; --d) { kidx[d] = kr % g.k[d]; kr /= g.k[d]; }
        const Tc* row = col + (m * g.kprod + kr0) * g.in_size;
        const int64_t offL = kidx[last] * g.d[last] - g.pb[last];
        int64_t ilo, ihi;  // input positions along the last dim that land inside the output
        valid_range(offL, sL, OL, IL, ilo, ihi);
        for (int64_t outer = 0; outer < outer_count; ++outer) {
          int64_t base = 0, rem = outer;
          bool inside = true;
          for (int64_t d = static_cast<int64_t>(last) - 1; d >= 0; --d) {
            const int64_t id = rem % g.in[d];
            rem /= g.in[d];
            const int64_t od = id * g.s[d] + kidx[d] * g.d[d] - g.pb[d];
            inside = inside && od >= 0 && od < g.out[d];
            base += od * out_st[d];
          }
          if (!inside) continue;
          const Tc* src = row + outer * IL;
          for (int64_t i = ilo; i < ihi; ++i) ym[base + i * sL + offL] += src[i];
        }
      }
    }
  });
}

template <class Tc>
void convtranspose_forward(const ConvGeom& g, const Tc* x, const Tc* w, const Tc* bias, Tc* y) {
  const int64_t R = g.Mg * g.kprod;  // rows of the column matrix
  bool direct = g.kprod == 1;        // 1x1, stride 1, no crop: the GEMM result is the output
  for (size_t i = 0; i < g.nsp; ++i) direct = direct && g.s[i] == 1 && g.pb[i] == 0 && g.out[i] == g.in[i];
  auto run_task = [&](int64_t t, std::vector<Tc>& col) {
    const int64_t n = t / g.G, grp = t % g.G;
    const Tc* xg = x + (n * g.C + grp * g.Cg) * g.in_size;
    const Tc* wg = w + grp * g.Cg * R;
    Tc* yg = y + (n * g.M + grp * g.Mg) * g.out_size;
    if (bias)
      for (int64_t m = 0; m < g.Mg; ++m) std::fill(yg + m * g.out_size, yg + (m + 1) * g.out_size, bias[grp * g.Mg + m]);
    if (g.Cg == 0) return;
    if (direct) {
      gemm(true, false, g.Mg, g.in_size, g.Cg, Tc(1), wg, R, xg, g.in_size, bias ? Tc(1) : Tc(0), yg, g.out_size);
      return;
    }
    col.resize(static_cast<size_t>(R * g.in_size));
    gemm(true, false, R, g.in_size, g.Cg, Tc(1), wg, R, xg, g.in_size, Tc(0), col.data(), g.in_size);
    col2im(g, col.data(), yg);
  };
  const int64_t tasks = g.N * g.G;
  if (tasks > 1 && tasks >= num_threads()) {
    parallel_for(tasks, [&](int64_t lo, int64_t hi) {
      std::vector<Tc> col;
      for (int64_t t = lo; t < hi; ++t) run_task(t, col);
    });
  } else {
    std::vector<Tc> col;
    for (int64_t t = 0; t < tasks; ++t) run_task(t, col);
  }
}

void ConvTranspose(KernelContext& ctx) {
  const Tensor& X = ctx.input(0);
  const Tensor& W = ctx.input(1);
  const Tensor* B = ctx.optional_input(2);
  check_dtype_in(ctx, X, {DT::Float16, DT::Float32, DT::Float64}, "input X");
  ctx.check(W.dtype() == X.dtype() && (!B || B->dtype() == X.dtype()), "X, W and B must share one dtype");
  const ConvGeom g = convtranspose_geometry(ctx, X, W, B);
  Shape out = {g.N, g.M};
  out.insert(out.end(), g.out.begin(), g.out.end());
  Tensor& Y = ctx.alloc_output(0, X.dtype(), out);
  dispatch_compute(X.dtype(), [&](auto tag) {
    using Tc = typename decltype(tag)::type;
    std::vector<Tc> tx, tw, tb;
    OutBuf<Tc> y(Y);
    convtranspose_forward<Tc>(g, widen(X, tx), widen(W, tw), B ? widen(*B, tb) : nullptr, y.data());
    y.commit();
  }, "ConvTranspose");
}

//@@NORM@@

}  // namespace

void register_nn(Registry& r) {
  const std::string f = "float16, float32, float64";
  const std::string fb = f + ", bfloat16";
  r.add({"Conv", "", 1, 17, f, Conv});
  r.add({"ConvTranspose", "", 1, 17, f, ConvTranspose});
  //@@REG@@
}

}  // namespace opennpu::cpu
