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
    g.in_size = checked_numel({g.in_size, g.in[i]}, node.where() + ": input");
    g.kprod = checked_numel({g.kprod, g.k[i]}, node.where() + ": kernel");
  }
  return auto_pad;
}

void finish_geometry(const KernelContext& ctx, ConvGeom& g) {
  g.out_size = 1;
  for (size_t i = 0; i < g.nsp; ++i) {
    ctx.check(g.out[i] >= 1, "output spatial dim {} would be {} (input {}, kernel {}, stride {}, dilation {}, pads {}/{})", i,
              g.out[i], g.in[i], g.k[i], g.s[i], g.d[i], g.pb[i], g.pe[i]);
    g.out_size = checked_numel({g.out_size, g.out[i]}, ctx.node().where() + ": output");
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

// Runs run_task(t, scratch) for every (image, group) pair t = n * G + group: one per thread when
// there are enough of them (OpenBLAS then runs single-threaded inside), else serially so each
// GEMM can use every thread. Each thread keeps its own scratch (column) buffer.
template <class Tc, class Task>
void for_each_image_group(const ConvGeom& g, Task&& run_task) {
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
  for_each_image_group<Tc>(g, run_task);
}

// Conv and ConvTranspose share their kernel shell: dtype checks, geometry, output allocation and
// widening to the compute type; `forward` is conv_forward or convtranspose_forward.
template <class Geometry, class Forward>
void conv_kernel(KernelContext& ctx, Geometry geometry, Forward forward, const char* name) {
  const Tensor& X = ctx.input(0);
  const Tensor& W = ctx.input(1);
  const Tensor* B = ctx.optional_input(2);
  check_dtype_in(ctx, X, {DT::Float16, DT::Float32, DT::Float64}, "input X");
  ctx.check(W.dtype() == X.dtype() && (!B || B->dtype() == X.dtype()), "X, W and B must share one dtype");
  const ConvGeom g = geometry(ctx, X, W, B);
  Shape out = {g.N, g.M};
  out.insert(out.end(), g.out.begin(), g.out.end());
  Tensor& Y = ctx.alloc_output(0, X.dtype(), out);
  dispatch_compute(X.dtype(), [&](auto tag) {
    using Tc = typename decltype(tag)::type;
    std::vector<Tc> tx, tw, tb;
    OutBuf<Tc> y(Y);
    const Tc* bias = B ? widen(*B, tb) : nullptr;
    forward(g, widen(X, tx), widen(W, tw), bias, y.data());
    y.commit();
  }, name);
}

void Conv(KernelContext& ctx) {
  conv_kernel(ctx, conv_geometry, [](const ConvGeom& g, const auto* x, const auto* w, const auto* b, auto* y) {
    conv_forward(g, x, w, b, y);
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
  for_each_image_group<Tc>(g, run_task);
}

void ConvTranspose(KernelContext& ctx) {
  conv_kernel(ctx, convtranspose_geometry, [](const ConvGeom& g, const auto* x, const auto* w, const auto* b, auto* y) {
    convtranspose_forward(g, x, w, b, y);
  }, "ConvTranspose");
}

// ---------------------------------------------------------------------------------------------
// Normalizations. Statistics (mean, variance, sums of squares) are accumulated in double; the
// per-element transform runs in the compute type (float for float16/bfloat16/float32).

// Reads a small parameter tensor (scale, bias, mean, var) of any float dtype as doubles.
std::vector<double> read_param(const Tensor& t) {
  std::vector<double> v(static_cast<size_t>(t.numel()));
  for (int64_t i = 0; i < t.numel(); ++i) v[i] = t.get_f64(i);
  return v;
}

// BatchNormalization. Inference: y = scale * (x - mean) / sqrt(var + epsilon) + B per channel
// (per channel and position when spatial=0, opsets < 9). Training (opset 14+, training_mode=1):
// the batch's own mean and (population) variance normalize, and outputs 1/2 are the updated
// running statistics input * momentum + batch * (1 - momentum).
void BatchNormalization(KernelContext& ctx) {
  const Tensor& X = ctx.input(0);
  const int64_t opset = ctx.opset();
  if (opset < 14) check_dtype_in(ctx, X, {DT::Float16, DT::Float32, DT::Float64}, "input X");
  else check_dtype_in(ctx, X, {DT::Float16, DT::Float32, DT::Float64, DT::BFloat16}, "input X");
  const char* names[] = {"X", "scale", "B", "input_mean", "input_var"};
  for (size_t i = 1; i < 5; ++i) {
    ctx.check(dtype_is_float(ctx.input(i).dtype()), "input '{}' must be a float tensor", names[i]);
    if (opset < 15)  // opset 15 lets scale/B and mean/var have their own float types
      ctx.check(ctx.input(i).dtype() == X.dtype(), "input '{}' has dtype {}, expected {} like X", names[i],
                dtype_name(ctx.input(i).dtype()), dtype_name(X.dtype()));
  }
  ctx.check(X.rank() >= 2, "input X must be [N, C, ...] (rank >= 2), got {}", shape_str(X.shape()));
  const ir::Node& node = ctx.node();
  const double eps = node.attr_f("epsilon", 1e-5f), momentum = node.attr_f("momentum", 0.9f);
  const bool spatial = opset >= 9 || node.attr_i("spatial", 1) != 0;
  bool training = false;
  if (opset >= 14) {
    training = node.attr_i("training_mode", 0) != 0;
  } else {
    const bool wants_stats = ctx.output_wanted(1) || ctx.output_wanted(2) || ctx.output_wanted(3) || ctx.output_wanted(4);
    const bool test_mode = opset >= 7 || node.attr_i("is_test", 0) != 0;
    ctx.check(test_mode && !wants_stats,
              "training-mode BatchNormalization (is_test=0 or the mean/var/saved outputs) is only supported from "
              "opset 14 (training_mode); this model uses opset {}", opset);
  }
  if (!training)
    ctx.check(!ctx.output_wanted(1) && !ctx.output_wanted(2), "outputs running_mean/running_var need training_mode=1");
  const int64_t N = X.dim(0), C = X.dim(1), S = X.numel() / std::max<int64_t>(N * C, 1);
  const int64_t nparam = spatial ? C : C * S;
  for (size_t i = 1; i < 5; ++i)
    ctx.check(ctx.input(i).numel() == nparam && (!spatial || ctx.input(i).rank() == 1),
              "input '{}' {} must have {} values ({})", names[i], shape_str(ctx.input(i).shape()), nparam,
              spatial ? "one per channel" : "one per channel and position, spatial=0");
  std::vector<double> scale = read_param(ctx.input(1)), bias = read_param(ctx.input(2));
  std::vector<double> mean = read_param(ctx.input(3)), var = read_param(ctx.input(4));
  if (training) {
    // Batch statistics per channel over N and the spatial dims.
    std::vector<double> bmean(C, 0.0), bvar(C, 0.0);
    const double count = static_cast<double>(N * S);
    parallel_for(C, [&](int64_t lo, int64_t hi) {
      for (int64_t c = lo; c < hi; ++c) {
        double sum = 0, sq = 0;
        for (int64_t n = 0; n < N; ++n)
          for (int64_t s = 0; s < S; ++s) sum += X.get_f64((n * C + c) * S + s);
        const double m = count > 0 ? sum / count : 0.0;
        for (int64_t n = 0; n < N; ++n)
          for (int64_t s = 0; s < S; ++s) {
            const double dlt = X.get_f64((n * C + c) * S + s) - m;
            sq += dlt * dlt;
          }
        bmean[c] = m;
        bvar[c] = count > 0 ? sq / count : 0.0;
      }
    });
    const Tensor& im = ctx.input(3);
    const Tensor& iv = ctx.input(4);
    if (ctx.output_wanted(1)) {
      Tensor& rm = ctx.alloc_output(1, im.dtype(), im.shape());
      dispatch_float(rm.dtype(), [&](auto tag) {
        using T = typename decltype(tag)::type;
        for (int64_t c = 0; c < C; ++c) rm.data<T>()[c] = T(static_cast<compute_t<T>>(mean[c] * momentum + bmean[c] * (1 - momentum)));
      });
    }
    if (ctx.output_wanted(2)) {
      Tensor& rv = ctx.alloc_output(2, iv.dtype(), iv.shape());
      dispatch_float(rv.dtype(), [&](auto tag) {
        using T = typename decltype(tag)::type;
        for (int64_t c = 0; c < C; ++c) rv.data<T>()[c] = T(static_cast<compute_t<T>>(var[c] * momentum + bvar[c] * (1 - momentum)));
      });
    }
    mean = bmean;
    var = bvar;
  }
  // y = x * a + b with a = scale / sqrt(var + eps), b = B - mean * a.
  std::vector<double> a(nparam), b(nparam);
  for (int64_t i = 0; i < nparam; ++i) {
    a[i] = scale[i] / std::sqrt(var[i] + eps);
    b[i] = bias[i] - mean[i] * a[i];
  }
  Tensor& Y = ctx.alloc_output(0, X.dtype(), X.shape());
  dispatch_float(X.dtype(), [&](auto tag) {
    using T = typename decltype(tag)::type;
    using Tc = compute_t<T>;
    const T* x = X.data<T>();
    T* y = Y.data<T>();
    parallel_for(N * C, [&](int64_t lo, int64_t hi) {
      for (int64_t nc = lo; nc < hi; ++nc) {
        const int64_t c = nc % C;
        for (int64_t s = 0; s < S; ++s) {
          const int64_t p = spatial ? c : c * S + s;
          y[nc * S + s] = T(static_cast<Tc>(static_cast<Tc>(x[nc * S + s]) * static_cast<Tc>(a[p]) + static_cast<Tc>(b[p])));
        }
      }
    });
  }, "BatchNormalization");
}

// Mean and population variance of n values (double accumulation, two passes).
template <class T>
void mean_var(const T* x, int64_t n, int64_t stride, double& mean, double& var) {
  double sum = 0;
  for (int64_t i = 0; i < n; ++i) sum += static_cast<double>(static_cast<compute_t<T>>(x[i * stride]));
  mean = n > 0 ? sum / static_cast<double>(n) : 0.0;
  double sq = 0;
  for (int64_t i = 0; i < n; ++i) {
    const double d = static_cast<double>(static_cast<compute_t<T>>(x[i * stride])) - mean;
    sq += d * d;
  }
  var = n > 0 ? sq / static_cast<double>(n) : 0.0;
}

// InstanceNormalization: per (image, channel), normalize over the spatial dims, then scale/B per
// channel.
void InstanceNormalization(KernelContext& ctx) {
  const Tensor& X = ctx.input(0);
  const Tensor& scale = ctx.input(1);
  const Tensor& bias = ctx.input(2);
  check_dtype_in(ctx, X, {DT::Float16, DT::Float32, DT::Float64}, "input X");
  ctx.check(scale.dtype() == X.dtype() && bias.dtype() == X.dtype(), "X, scale and B must share one dtype");
  ctx.check(X.rank() >= 3, "input X must be [N, C, D1, ...] (rank >= 3), got {}", shape_str(X.shape()));
  const int64_t N = X.dim(0), C = X.dim(1), S = X.numel() / std::max<int64_t>(N * C, 1);
  ctx.check(scale.rank() == 1 && scale.dim(0) == C, "scale {} must be [{}]", shape_str(scale.shape()), C);
  ctx.check(bias.rank() == 1 && bias.dim(0) == C, "B {} must be [{}]", shape_str(bias.shape()), C);
  const double eps = ctx.node().attr_f("epsilon", 1e-5f);
  std::vector<double> sc = read_param(scale), bs = read_param(bias);
  Tensor& Y = ctx.alloc_output(0, X.dtype(), X.shape());
  dispatch_float(X.dtype(), [&](auto tag) {
    using T = typename decltype(tag)::type;
    using Tc = compute_t<T>;
    const T* x = X.data<T>();
    T* y = Y.data<T>();
    parallel_for(N * C, [&](int64_t lo, int64_t hi) {
      for (int64_t nc = lo; nc < hi; ++nc) {
        double mean, var;
        mean_var(x + nc * S, S, 1, mean, var);
        const double a = sc[nc % C] / std::sqrt(var + eps), b = bs[nc % C] - mean * a;
        for (int64_t s = 0; s < S; ++s)
          y[nc * S + s] = T(static_cast<Tc>(static_cast<Tc>(x[nc * S + s]) * static_cast<Tc>(a) + static_cast<Tc>(b)));
      }
    });
  }, "InstanceNormalization");
}

// LayerNormalization (opset 17): normalize over dims [axis, rank) of X, then * Scale + B
// (both unidirectionally broadcast to X.shape[axis:]). Mean and InvStdDev have X's shape with
// dims >= axis set to 1, in the stash_type dtype (float32 or bfloat16).
void LayerNormalization(KernelContext& ctx) {
  const Tensor& X = ctx.input(0);
  const Tensor& scale = ctx.input(1);
  const Tensor* bias = ctx.optional_input(2);
  check_dtype_in(ctx, X, {DT::Float16, DT::Float32, DT::Float64, DT::BFloat16}, "input X");
  ctx.check(scale.dtype() == X.dtype() && (!bias || bias->dtype() == X.dtype()), "X, Scale and B must share one dtype");
  ctx.check(X.rank() >= 1, "input X must have rank >= 1");
  const int64_t axis = normalize_axis(ctx, ctx.node().attr_i("axis", -1), X.rank());
  const double eps = ctx.node().attr_f("epsilon", 1e-5f);
  const int64_t stash = ctx.node().attr_i("stash_type", 1);
  ctx.check(stash == 1 || stash == 16, "attribute 'stash_type' must be 1 (float) or 16 (bfloat16), got {}", stash);
  const DType stash_dt = stash == 1 ? DT::Float32 : DT::BFloat16;
  const Shape norm_shape(X.shape().begin() + axis, X.shape().end());
  auto check_bcast = [&](const Tensor& t, const char* what) {
    bool ok = t.rank() <= static_cast<int64_t>(norm_shape.size());
    for (int64_t i = 0; ok && i < t.rank(); ++i) {
      const int64_t d = t.dim(t.rank() - 1 - i);
      ok = d == 1 || d == norm_shape[norm_shape.size() - 1 - i];
    }
    ctx.check(ok, "{} {} cannot be broadcast to the normalized shape {}", what, shape_str(t.shape()), shape_str(norm_shape));
  };
  check_bcast(scale, "Scale");
  if (bias) check_bcast(*bias, "B");
  const int64_t rows = checked_numel(Shape(X.shape().begin(), X.shape().begin() + axis));
  const int64_t cols = checked_numel(norm_shape);
  Shape stat_shape = X.shape();
  for (int64_t i = axis; i < X.rank(); ++i) stat_shape[i] = 1;
  // Scale and bias expanded to `cols` values once (they repeat for every row).
  auto expand = [&](const Tensor& t) {
    std::vector<double> v(static_cast<size_t>(cols));
    BroadcastIter it(norm_shape, {broadcast_strides(t.shape(), norm_shape)});
    for (int64_t j = 0; j < cols; ++j, it.next()) v[j] = t.get_f64(it.offset(0));
    return v;
  };
  const std::vector<double> sc = expand(scale);
  const std::vector<double> bs = bias ? expand(*bias) : std::vector<double>(static_cast<size_t>(cols), 0.0);
  std::vector<double> means(rows), inv_stds(rows);
  Tensor& Y = ctx.alloc_output(0, X.dtype(), X.shape());
  dispatch_float(X.dtype(), [&](auto tag) {
    using T = typename decltype(tag)::type;
    using Tc = compute_t<T>;
    const T* x = X.data<T>();
    T* y = Y.data<T>();
    parallel_for(rows, [&](int64_t lo, int64_t hi) {
      for (int64_t r = lo; r < hi; ++r) {
        double mean, var;
        mean_var(x + r * cols, cols, 1, mean, var);
        // Stage one (statistics) is held in the stash type, as the spec's function body does.
        const double m = stash_dt == DT::Float32 ? double(float(mean)) : double(float(BFloat16(float(mean))));
        const double inv = 1.0 / std::sqrt(var + eps);
        const double is = stash_dt == DT::Float32 ? double(float(inv)) : double(float(BFloat16(float(inv))));
        means[r] = m;
        inv_stds[r] = is;
        for (int64_t j = 0; j < cols; ++j) {
          const double v = (static_cast<double>(static_cast<Tc>(x[r * cols + j])) - m) * is;
          y[r * cols + j] = T(static_cast<Tc>(v * sc[j] + bs[j]));
        }
      }
    });
  }, "LayerNormalization");
  for (size_t o = 1; o <= 2; ++o) {
    if (!ctx.output_wanted(o)) continue;
    Tensor& t = ctx.alloc_output(o, stash_dt, stat_shape);
    const std::vector<double>& src = o == 1 ? means : inv_stds;
    for (int64_t r = 0; r < rows; ++r) {
      if (stash_dt == DT::Float32) t.data<float>()[r] = static_cast<float>(src[r]);
      else t.data<BFloat16>()[r] = BFloat16(static_cast<float>(src[r]));
    }
  }
}

// LRN: y = x / (bias + alpha / size * sum of x^2 over the channel window)^beta, the window
// [c - floor((size-1)/2), c + ceil((size-1)/2)] clipped to the channels.
void LRN(KernelContext& ctx) {
  const Tensor& X = ctx.input(0);
  if (ctx.opset() < 13) check_dtype_in(ctx, X, {DT::Float16, DT::Float32, DT::Float64}, "input X");
  else check_dtype_in(ctx, X, {DT::Float16, DT::Float32, DT::Float64, DT::BFloat16}, "input X");
  ctx.check(X.rank() >= 3, "input X must be [N, C, D1, ...] (rank >= 3), got {}", shape_str(X.shape()));
  const ir::Node& node = ctx.node();
  ctx.check(node.has_attr("size"), "attribute 'size' is required");
  const int64_t size = node.attr_i("size", 1);
  ctx.check(size >= 1, "attribute 'size' must be >= 1, got {}", size);
  const double alpha = node.attr_f("alpha", 1e-4f), beta = node.attr_f("beta", 0.75f), bias = node.attr_f("bias", 1.0f);
  const int64_t N = X.dim(0), C = X.dim(1), S = X.numel() / std::max<int64_t>(N * C, 1);
  const int64_t before = (size - 1) / 2, after = size - 1 - before;
  Tensor& Y = ctx.alloc_output(0, X.dtype(), X.shape());
  dispatch_float(X.dtype(), [&](auto tag) {
    using T = typename decltype(tag)::type;
    using Tc = compute_t<T>;
    const T* x = X.data<T>();
    T* y = Y.data<T>();
    parallel_for(N * C, [&](int64_t lo, int64_t hi) {
      for (int64_t nc = lo; nc < hi; ++nc) {
        const int64_t n = nc / C, c = nc % C;
        const int64_t c0 = std::max<int64_t>(0, c - before), c1 = std::min<int64_t>(C - 1, c + after);
        for (int64_t s = 0; s < S; ++s) {
          double sq = 0;
          for (int64_t j = c0; j <= c1; ++j) {
            const double v = static_cast<Tc>(x[(n * C + j) * S + s]);
            sq += v * v;
          }
          const double v = static_cast<Tc>(x[nc * S + s]);
          y[nc * S + s] = T(static_cast<Tc>(v / std::pow(bias + alpha / static_cast<double>(size) * sq, beta)));
        }
      }
    });
  }, "LRN");
}

// MeanVarianceNormalization (opset 9/13): y = (x - mean) / (sqrt(variance) + 1e-9) over `axes`
// (default [0, 2, 3]), the definition of the op's function body. The variance is computed as the
// mean squared deviation (same value as E[x^2] - E[x]^2, without its cancellation).
void MeanVarianceNormalization(KernelContext& ctx) {
  const Tensor& X = ctx.input(0);
  if (ctx.opset() < 13) check_dtype_in(ctx, X, {DT::Float16, DT::Float32, DT::Float64}, "input X");
  else check_dtype_in(ctx, X, {DT::Float16, DT::Float32, DT::Float64, DT::BFloat16}, "input X");
  std::vector<int64_t> axes = ctx.node().attr_ints("axes", {0, 2, 3});
  Shape kept = X.shape();  // X's shape with the reduced dims set to 1
  for (int64_t& a : axes) {
    ctx.check(a >= -X.rank() && a < X.rank(), "attribute 'axes': axis {} is out of range for rank {}", a, X.rank());
    if (a < 0) a += X.rank();
    kept[a] = 1;
  }
  std::sort(axes.begin(), axes.end());
  ctx.check(std::adjacent_find(axes.begin(), axes.end()) == axes.end(), "attribute 'axes' repeats an axis");
  const int64_t groups = checked_numel(kept);
  const int64_t count = groups > 0 ? X.numel() / groups : 0;
  const std::vector<int64_t> kst = broadcast_strides(kept, X.shape());
  Tensor& Y = ctx.alloc_output(0, X.dtype(), X.shape());
  dispatch_float(X.dtype(), [&](auto tag) {
    using T = typename decltype(tag)::type;
    using Tc = compute_t<T>;
    const T* x = X.data<T>();
    T* y = Y.data<T>();
    std::vector<double> mean(groups, 0.0), sq(groups, 0.0);
    {
      BroadcastIter it(X.shape(), {kst});
      for (int64_t i = 0; i < X.numel(); ++i, it.next()) mean[it.offset(0)] += static_cast<Tc>(x[i]);
    }
    for (double& m : mean) m /= static_cast<double>(std::max<int64_t>(count, 1));
    {
      BroadcastIter it(X.shape(), {kst});
      for (int64_t i = 0; i < X.numel(); ++i, it.next()) {
        const double d = static_cast<Tc>(x[i]) - mean[it.offset(0)];
        sq[it.offset(0)] += d * d;
      }
    }
    std::vector<double> denom(groups);
    for (int64_t gi = 0; gi < groups; ++gi) denom[gi] = std::sqrt(sq[gi] / static_cast<double>(std::max<int64_t>(count, 1))) + 1e-9;
    BroadcastIter it(X.shape(), {kst});
    for (int64_t i = 0; i < X.numel(); ++i, it.next()) {
      const int64_t gi = it.offset(0);
      y[i] = T(static_cast<Tc>((static_cast<Tc>(x[i]) - mean[gi]) / denom[gi]));
    }
  }, "MeanVarianceNormalization");
}

// ---------------------------------------------------------------------------------------------
// Softmax, LogSoftmax, Hardmax. Opset >= 13: along the single dim `axis` (default -1). Before
// opset 13: X is coerced to 2-D [prod(dims before axis), prod(dims from axis)] (default axis 1) and
// the op runs along each row of that matrix.

enum class SoftKind { Softmax, LogSoftmax, Hardmax };

template <SoftKind kind>
void softmax_family(KernelContext& ctx) {
  const Tensor& X = ctx.input(0);
  const int64_t opset = ctx.opset();
  if (opset < 13) check_dtype_in(ctx, X, {DT::Float16, DT::Float32, DT::Float64}, "input X");
  else check_dtype_in(ctx, X, {DT::Float16, DT::Float32, DT::Float64, DT::BFloat16}, "input X");
  const int64_t axis = normalize_axis(ctx, ctx.node().attr_i("axis", opset < 13 ? 1 : -1), X.rank());
  int64_t outer = 1, n = 1, inner = 1;
  for (int64_t i = 0; i < X.rank(); ++i) {
    if (i < axis) outer *= X.dim(i);
    else if (i == axis || opset < 13) n *= X.dim(i);
    else inner *= X.dim(i);
  }
  Tensor& Y = ctx.alloc_output(0, X.dtype(), X.shape());
  if (X.numel() == 0) return;
  dispatch_float(X.dtype(), [&](auto tag) {
    using T = typename decltype(tag)::type;
    using Tc = compute_t<T>;
    const T* x = X.data<T>();
    T* y = Y.data<T>();
    parallel_for(outer * inner, [&](int64_t lo, int64_t hi) {
      std::vector<Tc> v(static_cast<size_t>(n));
      for (int64_t r = lo; r < hi; ++r) {
        const int64_t base = (r / inner) * n * inner + r % inner;
        for (int64_t j = 0; j < n; ++j) v[j] = static_cast<Tc>(x[base + j * inner]);
        if constexpr (kind == SoftKind::Hardmax) {
          int64_t best = 0;  // first maximum (a NaN counts as the maximum, like numpy.argmax)
          for (int64_t j = 1; j < n; ++j)
            if (!std::isnan(v[best]) && (v[j] > v[best] || std::isnan(v[j]))) best = j;
          for (int64_t j = 0; j < n; ++j) y[base + j * inner] = T(static_cast<Tc>(j == best ? 1 : 0));
        } else {
          const Tc mx = *std::max_element(v.begin(), v.end());
          double sum = 0;
          for (int64_t j = 0; j < n; ++j) sum += std::exp(static_cast<double>(v[j] - mx));
          if constexpr (kind == SoftKind::Softmax) {
            for (int64_t j = 0; j < n; ++j) y[base + j * inner] = T(static_cast<Tc>(std::exp(static_cast<double>(v[j] - mx)) / sum));
          } else {
            const double ls = std::log(sum);
            for (int64_t j = 0; j < n; ++j) y[base + j * inner] = T(static_cast<Tc>(static_cast<double>(v[j] - mx) - ls));
          }
        }
      }
    });
  }, "softmax");
}

// ---------------------------------------------------------------------------------------------
// Dropout. Inference (the default) is the identity with a mask of ones. Training mode (opset 12+:
// input training_mode = true; opsets < 7: is_test = 0) keeps each element with probability
// 1 - ratio and scales kept ones by 1 / (1 - ratio). The uniform draws come from MT19937 seeded
// with the 'seed' attribute (0 when absent) and turned into doubles the way numpy's legacy
// RandomState does (53-bit random_sample), so a given seed reproduces numpy.random.seed(seed);
// np.random.uniform(size=X.shape) — the ONNX reference — element for element, and a run is
// reproducible. Opsets 7-11 have no training switch: a runtime runs them in test mode.
void Dropout(KernelContext& ctx) {
  const Tensor& X = ctx.input(0);
  const int64_t opset = ctx.opset();
  if (opset < 13) check_dtype_in(ctx, X, {DT::Float16, DT::Float32, DT::Float64}, "input X");
  else check_dtype_in(ctx, X, {DT::Float16, DT::Float32, DT::Float64, DT::BFloat16}, "input X");
  const ir::Node& node = ctx.node();
  double ratio = 0.5;
  bool training = false;
  if (opset >= 12) {
    if (const Tensor* r = ctx.optional_input(1)) {
      ctx.check(r->numel() == 1 && dtype_is_float(r->dtype()), "input 'ratio' must be a float scalar");
      ratio = r->get_f64(0);
    }
    if (const Tensor* t = ctx.optional_input(2)) {
      ctx.check(t->numel() == 1 && t->dtype() == DT::Bool, "input 'training_mode' must be a bool scalar");
      training = t->data<bool>()[0];
    }
  } else {
    ratio = node.attr_f("ratio", 0.5f);
    training = opset < 7 && node.attr_i("is_test", 0) == 0;
  }
  ctx.check(ratio >= 0 && ratio <= 1, "ratio must be in [0, 1], got {}", ratio);
  if (training && ratio > 0) ctx.check(ratio < 1, "ratio must be < 1 in training mode, got {}", ratio);
  // The mask is bool from opset 10, X's type before.
  const DType mask_dt = opset >= 10 ? DT::Bool : X.dtype();
  if (!training || ratio == 0) {
    ctx.set_output(0, X);
    if (ctx.output_wanted(1)) {
      Tensor& mask = ctx.alloc_output(1, mask_dt, X.shape());
      dispatch_numeric(mask_dt, [&](auto tag) {
        using T = typename decltype(tag)::type;
        std::fill(mask.data<T>(), mask.data<T>() + mask.numel(), T(1.0f));
      });
    }
    return;
  }
  std::mt19937 gen(static_cast<uint32_t>(opset >= 12 ? node.attr_i("seed", 0) : 0));
  auto uniform = [&] {  // numpy's random_sample: 27 + 26 random bits -> [0, 1)
    const uint32_t a = gen() >> 5, b = gen() >> 6;
    return (a * 67108864.0 + b) / 9007199254740992.0;
  };
  std::vector<uint8_t> keep(static_cast<size_t>(X.numel()));
  for (auto& k : keep) k = uniform() >= ratio;
  const double scale = 1.0 / (1.0 - ratio);
  Tensor& Y = ctx.alloc_output(0, X.dtype(), X.shape());
  dispatch_float(X.dtype(), [&](auto tag) {
    using T = typename decltype(tag)::type;
    using Tc = compute_t<T>;
    const T* x = X.data<T>();
    T* y = Y.data<T>();
    for (int64_t i = 0; i < X.numel(); ++i) y[i] = T(keep[i] ? static_cast<Tc>(static_cast<Tc>(x[i]) * static_cast<Tc>(scale)) : Tc(0));
  }, "Dropout");
  if (ctx.output_wanted(1)) {
    Tensor& mask = ctx.alloc_output(1, mask_dt, X.shape());
    dispatch_numeric(mask_dt, [&](auto tag) {
      using T = typename decltype(tag)::type;
      for (int64_t i = 0; i < X.numel(); ++i) mask.data<T>()[i] = T(keep[i] ? 1.0f : 0.0f);
    });
  }
}

}  // namespace

void register_nn(Registry& r) {
  const std::string f = "float16, float32, float64";
  const std::string fb = f + ", bfloat16";
  r.add({"Conv", "", 1, 17, f, Conv});
  r.add({"ConvTranspose", "", 1, 17, f, ConvTranspose});
  r.add({"BatchNormalization", "", 1, 6, f + " (inference: is_test=1; spatial)", BatchNormalization});
  r.add({"BatchNormalization", "", 7, 8, f + " (inference; spatial)", BatchNormalization});
  r.add({"BatchNormalization", "", 9, 13, f + " (inference)", BatchNormalization});
  r.add({"BatchNormalization", "", 14, 14, fb + " (inference and training_mode)", BatchNormalization});
  r.add({"BatchNormalization", "", 15, 17, fb + " (inference and training_mode; scale/mean dtypes may differ)", BatchNormalization});
  r.add({"InstanceNormalization", "", 1, 17, f, InstanceNormalization});
  r.add({"LayerNormalization", "", 17, 17, fb + " (stash_type float/bfloat16)", LayerNormalization});
  r.add({"LRN", "", 1, 12, f, LRN});
  r.add({"LRN", "", 13, 17, fb, LRN});
  r.add({"MeanVarianceNormalization", "", 9, 12, f, MeanVarianceNormalization});
  r.add({"MeanVarianceNormalization", "", 13, 17, fb, MeanVarianceNormalization});
  for (int lo : {1, 11, 13}) {
    const int hi = lo == 1 ? 10 : lo == 11 ? 12 : 17;
    const std::string dt = lo == 13 ? fb + " (single axis)" : f + " (coerced to 2-D at axis)";
    r.add({"Softmax", "", lo, hi, dt, softmax_family<SoftKind::Softmax>});
    r.add({"LogSoftmax", "", lo, hi, dt, softmax_family<SoftKind::LogSoftmax>});
    r.add({"Hardmax", "", lo, hi, dt, softmax_family<SoftKind::Hardmax>});
  }
  r.add({"Dropout", "", 1, 6, f + " (is_test; training with a seeded numpy-compatible RNG)", Dropout});
  r.add({"Dropout", "", 7, 9, f + " (inference; mask of X's type)", Dropout});
  r.add({"Dropout", "", 10, 11, f + " (inference; bool mask)", Dropout});
  r.add({"Dropout", "", 12, 12, f + " (ratio/training_mode inputs; seeded numpy-compatible RNG)", Dropout});
  r.add({"Dropout", "", 13, 17, fb + " (ratio/training_mode inputs; seeded numpy-compatible RNG)", Dropout});
}

}  // namespace opennpu::cpu
