// cpu/fast/quant.cpp — fast int8 kernels, bit-identical to the reference kernels
// (cpu/kernels/quant.cpp, quant_gemm.cpp) for every input they accept:
//
//   QLinearConv (2-D, any group incl. depthwise)  onednn_qconv
//   QLinearMatMul (B a constant 2-D int8 matrix)    onednn_qmatmul
//   com.microsoft QGemm (B constant int8)           onednn_qgemm
//   QuantizeLinear / DequantizeLinear (per tensor)  fast_quantize / fast_dequantize
//   MaxPool on uint8/int8, or float32 after a DQ    onednn_qmaxpool
//
// How the integer ops stay exact. oneDNN computes the int32 accumulators acc = Σ (x − x_zp)·w
// (u8/s8 source, s8 weights reordered once at prepare, source zero point as a oneDNN runtime
// zero point; padding taps count as the zero point, i.e. real 0, like the reference — tested),
// and we requantize them ourselves with exactly core/quant.h's float32 operations:
// float32(wrap_add(acc, bias)) · mult, round half to even (vroundps with an explicit
// round-to-nearest-even mode), + y_zp, clamp — vectorised with AVX-512, each step one IEEE
// operation like the scalar code (this file is compiled with -ffp-contract=off; there is no
// multiply-add pair anyway).
//
// Two oneDNN facts this relies on, both checked by tests/cpu/test_fast_quant.cpp:
//  1. oneDNN's int8 kernels accumulate in int32 with wrap-around (VNNI vpdpbusd) and add their
//     zero-point / signed-source compensations in int32, but then pass the s32 result through
//     float32 before storing it (its post-processing is in float). So a stored value v equals
//     acc exactly when |acc| < 2^24 and is float32(acc) otherwise. Since rounding to float32 is
//     monotonic and 2^24 is a float32, |v| < 2^24 ⇔ |acc| < 2^24 ⇔ v == acc. The requantization
//     loop flags every |v| >= 2^24 and those outputs (rare: it needs huge dot products; the
//     saturation tests make many) are recomputed exactly in scalar int32 from the plain inputs.
//  2. Without VNNI, oneDNN's int8 kernels multiply with vpmaddubsw, which saturates pairs of
//     products to int16 (and it halves s8-source weights): not exact. The oneDNN kernels here
//     therefore require AVX-512 VNNI and decline otherwise (the reference kernel runs).
// Weight zero points other than 0 are declined (the quantizer writes symmetric weights).
//
// Layout: the graph keeps ONNX NCHW tensors. A conv reorders x to NHWC (oneDNN reorder), runs a
// NHWC int8 convolution per chunk of output rows (one chunk per opennpu thread, as the float conv
// does: cpu/fast/conv.cpp), requantizes its rows into an NHWC uint8/int8 buffer and reorders them
// into the NCHW output. Threads: parallel_for over the chunks, oneDNN/OpenMP at 1 thread each.
#include <dnnl.hpp>
// GCC 12's AVX-512 conversion intrinsics read an undefined placeholder vector (harmless).
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif
#include <immintrin.h>
#include <omp.h>

#include <cmath>
#include <cstring>
#include <map>
#include <mutex>
#include <unordered_set>

#include "core/parallel.h"
#include "core/quant.h"
#include "cpu/fast/conv.h"
#include "cpu/fast/fast.h"
#include "cpu/fast/fuse.h"
#include "cpu/fast/onednn_util.h"
#include "cpu/fast/quant.h"
#include "cpu/util.h"

namespace opennpu::cpu {

// ---------------------------------------------------------------------------------------------
// Requantization and (de)quantization loops (declared in quant.h for the tests).

namespace {

constexpr int32_t kExact = 1 << 24;  // |v| below this: the oneDNN s32 value is the exact acc

__attribute__((target("avx512f,avx512bw,avx512vl"))) bool requant_avx512(const int32_t* acc, const int32_t* bias,
                                                                        const float* mult, int64_t n, int32_t zp,
                                                                        quant::QRange r, bool is_u8, void* out) {
  const __m512 vzp = _mm512_set1_ps(static_cast<float>(zp)), vlo = _mm512_set1_ps(static_cast<float>(r.lo)),
               vhi = _mm512_set1_ps(static_cast<float>(r.hi));
  const __m512i lim = _mm512_set1_epi32(kExact);
  __mmask16 big = 0;
  for (int64_t i = 0; i < n; i += 16) {
    const __mmask16 m = n - i >= 16 ? __mmask16(0xFFFF) : __mmask16((1u << (n - i)) - 1);
    const __m512i a = _mm512_maskz_loadu_epi32(m, acc + i);
    big |= _mm512_mask_cmpge_epu32_mask(m, _mm512_abs_epi32(a), lim);  // abs(INT_MIN) = 2^31 unsigned
    const __m512i s = _mm512_add_epi32(a, _mm512_maskz_loadu_epi32(m, bias + i));  // wraps mod 2^32
    __m512 v = _mm512_mul_ps(_mm512_cvtepi32_ps(s), _mm512_maskz_loadu_ps(m, mult + i));
    v = _mm512_roundscale_ps(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    v = _mm512_min_ps(_mm512_max_ps(_mm512_add_ps(v, vzp), vlo), vhi);
    const __m512i q = _mm512_cvtps_epi32(v);
    if (is_u8) _mm_mask_storeu_epi8(static_cast<uint8_t*>(out) + i, m, _mm512_cvtusepi32_epi8(q));
    else _mm_mask_storeu_epi8(static_cast<int8_t*>(out) + i, m, _mm512_cvtsepi32_epi8(q));
  }
  return big != 0;
}

bool requant_scalar(const int32_t* acc, const int32_t* bias, const float* mult, int64_t n, int32_t zp,
                    quant::QRange r, bool is_u8, void* out) {
  bool big = false;
  for (int64_t i = 0; i < n; ++i) {
    big |= acc[i] >= kExact || acc[i] <= -kExact;
    const int32_t q = quant::requantize(acc[i], bias[i], mult[i], zp, r);
    if (is_u8) static_cast<uint8_t*>(out)[i] = static_cast<uint8_t>(q);
    else static_cast<int8_t*>(out)[i] = static_cast<int8_t>(q);
  }
  return big;
}

__attribute__((target("avx512f,avx512bw,avx512vl"))) void quantize_avx512(const float* x, int64_t n, float scale,
                                                                         int32_t zp, quant::QRange r, bool is_u8,
                                                                         void* out) {
  const __m512 vs = _mm512_set1_ps(scale), vzp = _mm512_set1_ps(static_cast<float>(zp)),
               vlo = _mm512_set1_ps(static_cast<float>(r.lo)), vhi = _mm512_set1_ps(static_cast<float>(r.hi));
  const __m512i izp = _mm512_set1_epi32(zp);
  for (int64_t i = 0; i < n; i += 16) {
    const __mmask16 m = n - i >= 16 ? __mmask16(0xFFFF) : __mmask16((1u << (n - i)) - 1);
    __m512 v = _mm512_div_ps(_mm512_maskz_loadu_ps(m, x + i), vs);
    const __mmask16 nan = _mm512_cmp_ps_mask(v, v, _CMP_UNORD_Q);
    v = _mm512_roundscale_ps(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    v = _mm512_min_ps(_mm512_max_ps(_mm512_add_ps(v, vzp), vlo), vhi);
    const __m512i q = _mm512_mask_blend_epi32(nan, _mm512_cvtps_epi32(v), izp);  // NaN -> zp
    if (is_u8) _mm_mask_storeu_epi8(static_cast<uint8_t*>(out) + i, m, _mm512_cvtusepi32_epi8(q));
    else _mm_mask_storeu_epi8(static_cast<int8_t*>(out) + i, m, _mm512_cvtsepi32_epi8(q));
  }
}

__attribute__((target("avx512f,avx512bw,avx512vl"))) void dequantize_avx512(const void* q, int64_t n, bool is_u8,
                                                                           int32_t zp, float scale, float* y) {
  const __m512 vs = _mm512_set1_ps(scale);
  const __m512i izp = _mm512_set1_epi32(zp);
  for (int64_t i = 0; i < n; i += 16) {
    const __mmask16 m = n - i >= 16 ? __mmask16(0xFFFF) : __mmask16((1u << (n - i)) - 1);
    const __m128i b = _mm_maskz_loadu_epi8(m, static_cast<const char*>(q) + i);
    const __m512i v = is_u8 ? _mm512_cvtepu8_epi32(b) : _mm512_cvtepi8_epi32(b);
    _mm512_mask_storeu_ps(y + i, m, _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_sub_epi32(v, izp)), vs));
  }
}

bool use_avx512() {
  const auto& f = cpu_features();
  return f.avx512f && f.avx512bw && f.avx512vl;
}

}  // namespace

namespace fastq {

bool requantize(const int32_t* acc, const int32_t* bias, const float* mult, int64_t n, int32_t zp, quant::QRange r,
                bool is_u8, void* out, bool force_scalar) {
  if (!force_scalar && use_avx512()) return requant_avx512(acc, bias, mult, n, zp, r, is_u8, out);
  return requant_scalar(acc, bias, mult, n, zp, r, is_u8, out);
}

void quantize(const float* x, int64_t n, float scale, int32_t zp, quant::QRange r, bool is_u8, void* out,
              bool force_scalar) {
  if (!force_scalar && use_avx512()) return quantize_avx512(x, n, scale, zp, r, is_u8, out);
  for (int64_t i = 0; i < n; ++i) {
    const int32_t q = quant::quantize(x[i], scale, zp, r);
    if (is_u8) static_cast<uint8_t*>(out)[i] = static_cast<uint8_t>(q);
    else static_cast<int8_t*>(out)[i] = static_cast<int8_t>(q);
  }
}

void dequantize(const void* q, int64_t n, bool is_u8, int32_t zp, float scale, float* y, bool force_scalar) {
  if (!force_scalar && use_avx512()) return dequantize_avx512(q, n, is_u8, zp, scale, y);
  for (int64_t i = 0; i < n; ++i) {
    const int32_t v = is_u8 ? static_cast<const uint8_t*>(q)[i] : static_cast<const int8_t*>(q)[i];
    y[i] = quant::dequantize(v, zp, scale);
  }
}

}  // namespace fastq

namespace {

using dnnl::memory;
using tag = memory::format_tag;
using ddt = memory::data_type;
using dims = memory::dims;
using onednn::engine;
using onednn::thread_state;
using onednn::ThreadState;

// Below this many MACs x 2 a conv runs as one chunk on the calling thread: int8 VNNI does about 4x
// the float conv's work per cycle, and on the loaded development machine waking a worker cost more
// than int8 chunks below this (the float convs in cpu/fast/conv.cpp split from 1e5, tuned since on
// mobilenet_v2; not re-measured for int8).
constexpr double kMinParallelFlops = 40e6;

// A constant int8 weight in the layouts its primitives asked for: each layout is reordered once
// from the weight's own (plain) layout and shared by every primitive that wants it. Called under
// the kernel's plan mutex.
class ReorderedWeights {
 public:
  std::shared_ptr<memory> get(const memory::desc& wd, const memory::desc& plain, const void* data) {
    for (const auto& [desc, mem] : done_)
      if (desc == wd) return mem;
    auto mem = std::make_shared<memory>(wd, engine());
    memory src(plain, engine(), const_cast<void*>(data));
    omp_set_num_threads(1);
    dnnl::stream s(engine());
    dnnl::reorder(src, *mem).execute(s, src, *mem);
    s.wait();
    done_.emplace_back(wd, mem);
    return mem;
  }
  size_t bytes() const {
    size_t b = 0;
    for (const auto& [d, m] : done_) b += d.get_size();
    return b;
  }

 private:
  std::vector<std::pair<memory::desc, std::shared_ptr<memory>>> done_;
};

bool is_q8(DType t) { return t == DType::UInt8 || t == DType::Int8; }
ddt q8_ddt(DType t) { return t == DType::UInt8 ? ddt::u8 : ddt::s8; }
int32_t q_at(const Tensor& t, int64_t i) {
  return t.dtype() == DType::UInt8 ? int32_t{t.data<uint8_t>()[i]} : int32_t{t.data<int8_t>()[i]};
}


// A constant float32 scale with 1 or n elements (n = 0: must be a scalar), finite and non-zero.
bool const_scales(const Tensor* t, int64_t n, std::vector<float>& out) {
  if (!t || t->dtype() != DType::Float32) return false;
  if (!(t->numel() == 1 || (n > 0 && t->rank() == 1 && t->numel() == n))) return false;
  out.assign(static_cast<size_t>(std::max<int64_t>(n, 1)), 0.f);
  for (size_t i = 0; i < out.size(); ++i) {
    out[i] = t->data<float>()[t->numel() == 1 ? 0 : i];
    if (!std::isfinite(out[i]) || out[i] == 0.f) return false;
  }
  return true;
}
// A constant 8-bit scalar zero point.
bool const_zp(const Tensor* t, int32_t& zp, DType& dt) {
  if (!t || !is_q8(t->dtype()) || t->numel() != 1) return false;
  zp = q_at(*t, 0);
  dt = t->dtype();
  return true;
}
// All elements of an 8-bit zero point tensor are 0 (absent counts as 0).
bool all_zero(const Tensor* t) {
  if (!t) return true;
  if (!is_q8(t->dtype())) return false;
  for (int64_t i = 0; i < t->numel(); ++i)
    if (q_at(*t, i) != 0) return false;
  return true;
}

std::string no_vnni_reason() {
  return "needs AVX-512 VNNI (without it oneDNN's int8 kernels saturate int16 intermediates: not bit-exact)";
}


void run_prim(const dnnl::primitive& p, std::unordered_map<int, memory>& args, const memory::desc& sd, size_t scratch) {
  ThreadState& ts = thread_state();
  if (scratch) args.emplace(DNNL_ARG_SCRATCHPAD, memory(sd, engine(), ts.scratchpad(scratch)));
  omp_set_num_threads(1);
  p.execute(ts.stream, args);
  ts.stream.wait();
}

template <class T>
T* thread_buffer(size_t n, int which) {
  static thread_local std::vector<char> bufs[3];
  auto& b = bufs[which];
  if (b.size() < n * sizeof(T)) b.resize(n * sizeof(T));
  return reinterpret_cast<T*>(b.data());
}

// A node the layout pass (qconv_layout_nhwc, below) switched to NHWC ("layout" attribute) when its
// fast kernel falls back at run time: the ONNX reference kernel on an NCHW copy of input 0, its
// output transposed back.
void reference_nhwc(KernelContext& ctx, KernelFn ref) {
  ctx.check(ctx.input(0).rank() == 4, "layout NHWC needs a rank-4 input, got {}", shape_str(ctx.input(0).shape()));
  Tensor x = nhwc_to_nchw(ctx.input(0));
  std::vector<const Tensor*> ins;
  for (size_t i = 0; i < ctx.num_inputs(); ++i) ins.push_back(i == 0 ? &x : ctx.optional_input(i));
  ir::Node one = ctx.node();
  one.outputs.resize(1);
  KernelContext sub(one, std::move(ins), ctx.opset(), nullptr);
  ref(sub);
  ctx.set_output(0, nchw_to_nhwc(sub.outputs()[0]));
}

// ---------------------------------------------------------------------------------------------
// QLinearConv

class FastQConv final : public PreparedKernel {
 public:
  struct Chunk {
    dnnl::convolution_forward prim;
    memory::desc src, dst, scratch_desc, ydesc_nhwc, ydesc_nchw;
    dnnl::reorder out_reorder;
    std::shared_ptr<memory> weights;
    size_t scratch = 0;
    int64_t in_row = 0, out_row = 0, rows = 0;
  };
  struct Plan {
    bool ok = false;
    Shape y_shape;
    int64_t H = 0, W = 0, C = 0, OH = 0, OW = 0, pt = 0, pl = 0;
    dnnl::reorder in_reorder;
    memory::desc x_nchw, x_nhwc;
    std::vector<Chunk> chunks;
  };

  static std::unique_ptr<PreparedKernel> prepare(const PrepareContext& pc, std::string* why) {
    if (!cpu_features().avx512vnni) return *why = no_vnni_reason(), nullptr;
    const ir::Node& n = pc.node();
    auto k = std::make_unique<FastQConv>();
    const Tensor* w = pc.constant(3);
    if (!w || w->dtype() != DType::Int8 || w->rank() != 4) return *why = "w not a constant int8 4-D tensor", nullptr;
    const int64_t M = w->dim(0);
    DType ydt = DType::UInt8, wzdt = DType::Int8;
    int32_t wz = 0;
    if (!const_zp(pc.constant(2), k->x_zp_, k->x_dt_)) return *why = "x_zero_point not a constant 8-bit scalar", nullptr;
    if (!const_zp(pc.constant(7), k->y_zp_, ydt)) return *why = "y_zero_point not a constant 8-bit scalar", nullptr;
    (void)wz;
    (void)wzdt;
    const Tensor* wzt = pc.constant(5);
    if (!wzt || wzt->dtype() != DType::Int8 || !(wzt->numel() == 1 || wzt->numel() == M) || !all_zero(wzt))
      return *why = "w_zero_point not a constant int8 zero (the reference handles non-zero ones)", nullptr;
    std::vector<float> xs, ws, ys;
    if (!const_scales(pc.constant(1), 0, xs) || !const_scales(pc.constant(4), M, ws) || !const_scales(pc.constant(6), 0, ys))
      return *why = "scales not constant, finite, non-zero, per tensor (w: per tensor or per output channel)", nullptr;
    k->y_dt_ = ydt;
    k->mult_.resize(static_cast<size_t>(M));
    for (int64_t m = 0; m < M; ++m) {
      k->mult_[m] = quant::requant_multiplier(xs[0], ws[m], ys[0]);
      if (!std::isfinite(k->mult_[m])) return *why = "requantization multiplier not finite", nullptr;
    }
    k->bias_.assign(static_cast<size_t>(M), 0);
    if (n.has_input(8)) {
      const Tensor* b = pc.constant(8);
      if (!b || b->dtype() != DType::Int32 || b->rank() != 1 || b->numel() != M) return *why = "B not a constant int32 [M]", nullptr;
      std::memcpy(k->bias_.data(), b->raw(), static_cast<size_t>(M) * sizeof(int32_t));
    }
    for (const char* a : {"strides", "dilations"})
      if (pc.has_attr(a) && pc.attr_ints(a).size() != 2) return *why = "not 2-D", nullptr;
    if (pc.has_attr("pads") && pc.attr_ints("pads").size() != 4) return *why = "not 2-D", nullptr;
    for (const char* a : {"strides", "dilations"})
      for (int64_t v : pc.attr_ints(a))
        if (v < 1) return *why = std::string(a) + " < 1", nullptr;
    for (int64_t v : pc.attr_ints("pads"))
      if (v < 0) return *why = "negative pads", nullptr;
    if (pc.has_attr("kernel_shape") && pc.attr_ints("kernel_shape") != std::vector<int64_t>{w->dim(2), w->dim(3)})
      return *why = "kernel_shape differs from w", nullptr;
    const KernelDef* ref = reference_of(pc);
    if (!ref) return *why = "no reference kernel", nullptr;
    k->ref_ = ref->fn;
    k->W_ = *w;
    k->group_ = pc.attr_i("group", 1);
    k->nhwc_ = pc.attr_s("layout", "NCHW") == "NHWC";
    k->auto_pad_ = pc.attr_s("auto_pad", "NOTSET");
    k->strides_ = pc.attr_ints("strides");
    k->dil_ = pc.attr_ints("dilations");
    k->pads_ = pc.attr_ints("pads");
    if (k->strides_.empty()) k->strides_ = {1, 1};
    if (k->dil_.empty()) k->dil_ = {1, 1};
    if (k->pads_.empty()) k->pads_ = {0, 0, 0, 0};
    if (k->group_ < 1 || M % k->group_ != 0) return *why = "group does not divide M", nullptr;
    return k;
  }

  std::string name() const override { return "onednn_qconv"; }
  size_t state_bytes() const override {
    std::lock_guard<std::mutex> lk(mu_);
    return weights_.bytes();
  }

  void run(KernelContext& ctx) const override {
    const Tensor& x = ctx.input(0);
    auto fallback = [&] { return nhwc_ ? reference_nhwc(ctx, ref_) : ref_(ctx); };
    if (x.dtype() != x_dt_ || x.rank() != 4 || x.dim(0) == 0) return fallback();
    const int threads = in_parallel_region() ? 1 : num_threads();
    std::shared_ptr<const Plan> p = plan(x.shape(), threads);
    if (!p->ok) return fallback();
    Tensor& y = ctx.alloc_output(0, y_dt_, p->y_shape, KernelContext::Init::Uninit);
    const int64_t N = x.dim(0), M = W_.dim(0);
    const int64_t ximg = p->H * p->W * p->C, yimg = M * p->OH * p->OW;
    // x to NHWC (one oneDNN reorder over the batch) unless it is NHWC already.
    uint8_t* xh = nhwc_ ? static_cast<uint8_t*>(const_cast<void*>(x.raw()))
                        : thread_buffer<uint8_t>(static_cast<size_t>(x.numel()), 0);
    if (!nhwc_) {
      memory src(p->x_nchw, engine(), const_cast<void*>(x.raw())), dst(p->x_nhwc, engine(), xh);
      std::unordered_map<int, memory> args{{DNNL_ARG_FROM, src}, {DNNL_ARG_TO, dst}};
      run_prim(p->in_reorder, args, {}, 0);
    }
    const int64_t nc = static_cast<int64_t>(p->chunks.size());
    const bool u8 = y_dt_ == DType::UInt8;
    const quant::QRange r = quant::qrange(y_dt_);
    auto exec = [&](int64_t i) {
      const Chunk& c = p->chunks[static_cast<size_t>(i % nc)];
      const int64_t n = i / nc;
      const int64_t cells = c.rows * p->OW;
      int32_t* acc = thread_buffer<int32_t>(static_cast<size_t>(cells * M), 1);
      // NHWC output: requantized straight into y; NCHW: into a buffer reordered into y.
      uint8_t* yq = nhwc_ ? static_cast<uint8_t*>(y.raw()) + n * yimg + c.out_row * p->OW * M
                          : thread_buffer<uint8_t>(static_cast<size_t>(cells * M), 2);
      const uint8_t* xn = xh + n * ximg;
      memory src(c.src, engine(), const_cast<uint8_t*>(xn + c.in_row * p->W * p->C));
      memory dst(c.dst, engine(), acc);
      int32_t zp = x_zp_;
      std::unordered_map<int, memory> args{{DNNL_ARG_SRC, src}, {DNNL_ARG_WEIGHTS, *c.weights}, {DNNL_ARG_DST, dst}};
      if (x_zp_ != 0) args.emplace(DNNL_ARG_ATTR_ZERO_POINTS | DNNL_ARG_SRC, memory({{1}, ddt::s32, tag::x}, engine(), &zp));
      run_prim(c.prim, args, c.scratch_desc, c.scratch);
      for (int64_t cell = 0; cell < cells; ++cell) {
        int32_t* a = acc + cell * M;
        void* o = yq + cell * M;
        if (!fastq::requantize(a, bias_.data(), mult_.data(), M, y_zp_, r, u8, o)) continue;
        // Some |acc| >= 2^24: oneDNN rounded them to float32. Recompute those exactly.
        const int64_t oh = c.out_row + cell / p->OW, ow = cell % p->OW;
        for (int64_t m = 0; m < M; ++m) {
          if (a[m] < kExact && a[m] > -kExact) continue;
          const int32_t q = quant::requantize(exact_acc(*p, xn, oh, ow, m), bias_[m], mult_[m], y_zp_, r);
          if (u8) static_cast<uint8_t*>(o)[m] = static_cast<uint8_t>(q);
          else static_cast<int8_t*>(o)[m] = static_cast<int8_t>(q);
        }
      }
      if (nhwc_) return;
      memory ys(c.ydesc_nhwc, engine(), yq);
      memory yd(c.ydesc_nchw, engine(), static_cast<char*>(y.raw()) + n * yimg + c.out_row * p->OW);
      std::unordered_map<int, memory> rargs{{DNNL_ARG_FROM, ys}, {DNNL_ARG_TO, yd}};
      run_prim(c.out_reorder, rargs, {}, 0);
    };
    const int64_t tasks = N * nc;
    if (tasks == 1 || threads == 1) {
      for (int64_t i = 0; i < tasks; ++i) exec(i);
      return;
    }
    parallel_for(tasks, [&](int64_t lo, int64_t hi) {
      for (int64_t i = lo; i < hi; ++i) exec(i);
    });
  }

 private:
  // Σ (x − x_zp)·w for one output element, int32 wrapping (x in NHWC; padding contributes 0).
  int32_t exact_acc(const Plan& p, const uint8_t* xn, int64_t oh, int64_t ow, int64_t m) const {
    const int64_t Cg = W_.dim(1), KH = W_.dim(2), KW = W_.dim(3), M = W_.dim(0), g = m / (M / group_);
    const int8_t* w = W_.data<int8_t>() + m * Cg * KH * KW;
    uint32_t sum = 0;
    for (int64_t kh = 0; kh < KH; ++kh) {
      const int64_t ih = oh * strides_[0] - p.pt + kh * dil_[0];
      if (ih < 0 || ih >= p.H) continue;
      for (int64_t kw = 0; kw < KW; ++kw) {
        const int64_t iw = ow * strides_[1] - p.pl + kw * dil_[1];
        if (iw < 0 || iw >= p.W) continue;
        const uint8_t* xp = xn + (ih * p.W + iw) * p.C + g * Cg;
        for (int64_t c = 0; c < Cg; ++c) {
          const int32_t xv = x_dt_ == DType::UInt8 ? int32_t{xp[c]} : int32_t{static_cast<int8_t>(xp[c])};
          sum += static_cast<uint32_t>((xv - x_zp_) * int32_t{w[(c * KH + kh) * KW + kw]});
        }
      }
    }
    return static_cast<int32_t>(sum);
  }

  std::shared_ptr<const Plan> plan(const Shape& xs, int threads) const {
    std::lock_guard<std::mutex> lk(mu_);
    auto key = std::make_pair(xs, threads);
    if (auto it = plans_.find(key); it != plans_.end()) return it->second;
    auto p = std::make_shared<Plan>();
    // oneDNN fixes some kernels' thread count when the primitive is created (the int8 convs'
    // zero-point padding compensation ran on a 2-thread OpenMP team: 50x slower on a loaded
    // machine): create them with 1 thread, like they run.
    omp_set_num_threads(1);
    try {
      build(xs, threads, *p);
    } catch (const dnnl::error&) {
      p->ok = false;
    } catch (const Error&) {
      p->ok = false;
    }
    plans_[key] = p;
    return p;
  }

  void build(const Shape& xs, int threads, Plan& p) const {
    const int64_t N = xs[0], C = nhwc_ ? xs[3] : xs[1], H = nhwc_ ? xs[1] : xs[2], Wd = nhwc_ ? xs[2] : xs[3];
    const int64_t M = W_.dim(0), Cg = W_.dim(1), KH = W_.dim(2), KW = W_.dim(3), G = group_;
    if (C != Cg * G || M % G != 0) return;
    int64_t pt = pads_[0], pl = pads_[1], pb = pads_[2], pr = pads_[3], OH = 0, OW = 0;
    if (!spatial(auto_pad_, H, KH, strides_[0], dil_[0], pt, pb, OH)) return;
    if (!spatial(auto_pad_, Wd, KW, strides_[1], dil_[1], pl, pr, OW)) return;
    if (static_cast<uint64_t>(checked_numel({N, M, OH, OW})) > max_tensor_bytes() / sizeof(int32_t)) return;
    if (static_cast<uint64_t>(checked_numel({N, C, H, Wd})) > max_tensor_bytes()) return;
    p.H = H, p.W = Wd, p.C = C, p.OH = OH, p.OW = OW, p.pt = pt, p.pl = pl;
    const ddt xdt = q8_ddt(x_dt_), ydt = q8_ddt(y_dt_);
    p.x_nchw = memory::desc({N, C, H, Wd}, xdt, tag::nchw);
    p.x_nhwc = memory::desc({N, C, H, Wd}, xdt, tag::nhwc);
    if (!nhwc_) p.in_reorder = dnnl::reorder(dnnl::reorder::primitive_desc(engine(), p.x_nchw, engine(), p.x_nhwc));
    const dims wdims = G == 1 ? dims{M, C, KH, KW} : dims{G, M / G, Cg, KH, KW};
    const int64_t ek = (KH - 1) * dil_[0] + 1;
    const double flops = 2.0 * double(M) * double(Cg) * double(KH) * double(KW) * double(OH) * double(OW);
    const int64_t T = flops >= kMinParallelFlops ? std::max<int64_t>(1, std::min<int64_t>(threads, OH)) : 1;
    dnnl::primitive_attr attr;
    attr.set_scratchpad_mode(dnnl::scratchpad_mode::user);
    if (x_zp_ != 0) attr.set_zero_points(DNNL_ARG_SRC, 0, {DNNL_RUNTIME_S32_VAL});
    for (int64_t t = 0; t < T; ++t) {
      const int64_t r0 = OH * t / T, r1 = OH * (t + 1) / T;
      if (r1 == r0) continue;
      int64_t lo = r0 * strides_[0] - pt, hi = (r1 - 1) * strides_[0] - pt + ek;
      const int64_t ptc = std::max<int64_t>(0, -lo), pbc = std::max<int64_t>(0, hi - H);
      lo = std::max<int64_t>(lo, 0);
      hi = std::min<int64_t>(hi, H);
      if (hi - lo < 1) return;
      Chunk c;
      c.in_row = lo;
      c.out_row = r0;
      c.rows = r1 - r0;
      // The chunk's rows of one image: contiguous in NHWC.
      c.src = memory::desc({1, C, hi - lo, Wd}, xdt, tag::nhwc);
      c.dst = memory::desc({1, M, c.rows, OW}, ddt::s32, tag::nhwc);
      memory::desc wany(wdims, ddt::s8, tag::any);
      const dims st{strides_[0], strides_[1]}, dl{dil_[0] - 1, dil_[1] - 1}, padl{ptc, pl}, padr{pbc, pr};
      dnnl::convolution_forward::desc d(dnnl::prop_kind::forward_inference, dnnl::algorithm::convolution_direct, c.src,
                                        wany, c.dst, st, dl, padl, padr);
      dnnl::convolution_forward::primitive_desc pd(d, attr, engine());
      if (is_reference_impl(pd.impl_info_str())) return;  // oneDNN's reference: no faster than ours
      c.prim = dnnl::convolution_forward(pd);
      c.scratch_desc = pd.scratchpad_desc();
      c.scratch = c.scratch_desc.get_size();
      c.weights = weights_for(pd.weights_desc(), wdims, G);
      if (!nhwc_) {
        c.ydesc_nhwc = memory::desc({1, M, c.rows, OW}, ydt, tag::nhwc);
        c.ydesc_nchw = memory::desc({1, M, c.rows, OW}, ydt, dims{M * OH * OW, OH * OW, OW, 1});
        c.out_reorder = dnnl::reorder(dnnl::reorder::primitive_desc(engine(), c.ydesc_nhwc, engine(), c.ydesc_nchw));
      }
      p.chunks.push_back(std::move(c));
    }
    p.y_shape = nhwc_ ? Shape{N, OH, OW, M} : Shape{N, M, OH, OW};
    p.ok = true;
  }

  std::shared_ptr<memory> weights_for(const memory::desc& wd, const dims& wdims, int64_t G) const {
    return weights_.get(wd, memory::desc(wdims, ddt::s8, G == 1 ? tag::oihw : tag::goihw), W_.raw());
  }

  KernelFn ref_ = nullptr;
  Tensor W_;
  DType x_dt_ = DType::UInt8, y_dt_ = DType::UInt8;
  int32_t x_zp_ = 0, y_zp_ = 0;
  std::vector<float> mult_;
  std::vector<int32_t> bias_;
  int64_t group_ = 1;
  bool nhwc_ = false;
  std::string auto_pad_;
  std::vector<int64_t> strides_, dil_, pads_;
  mutable std::mutex mu_;
  mutable std::map<std::pair<Shape, int>, std::shared_ptr<const Plan>> plans_;
  mutable ReorderedWeights weights_;
};

// ---------------------------------------------------------------------------------------------
// QLinearMatMul (A [..., M, K] × constant B [K, N]) and com.microsoft QGemm (A' [M, K] × B'):
// one oneDNN int8 matmul over rows = all rows of A, cached per row count.

class FastQMatMul final : public PreparedKernel {
 public:
  struct Plan {
    bool ok = false;
    dnnl::matmul prim;
    memory::desc a, c, scratch_desc;
    std::shared_ptr<memory> weights;
    size_t scratch = 0;
  };

  static std::unique_ptr<PreparedKernel> prepare_matmul(const PrepareContext& pc, std::string* why) {
    return prepare(pc, why, false);
  }
  static std::unique_ptr<PreparedKernel> prepare_qgemm(const PrepareContext& pc, std::string* why) {
    return prepare(pc, why, true);
  }

  static std::unique_ptr<PreparedKernel> prepare(const PrepareContext& pc, std::string* why, bool gemm) {
    if (!cpu_features().avx512vnni) return *why = no_vnni_reason(), nullptr;
    auto k = std::make_unique<FastQMatMul>();
    k->gemm_ = gemm;
    const Tensor* b = pc.constant(3);
    if (!b || b->dtype() != DType::Int8 || b->rank() != 2) return *why = "B not a constant int8 2-D tensor", nullptr;
    const bool tb = gemm && pc.attr_i("transB", 0) != 0;
    k->ta_ = gemm && pc.attr_i("transA", 0) != 0;
    const int64_t K = tb ? b->dim(1) : b->dim(0), N = tb ? b->dim(0) : b->dim(1);
    k->K_ = K;
    k->N_ = N;
    if (K < 1 || N < 1) return *why = "empty B", nullptr;
    DType ydt = DType::UInt8;
    const size_t yzi = gemm ? 8 : 7, ysi = gemm ? 7 : 6;
    if (!const_zp(pc.constant(2), k->a_zp_, k->a_dt_)) return *why = "a_zero_point not a constant 8-bit scalar", nullptr;
    if (!const_zp(pc.constant(yzi), k->y_zp_, ydt)) return *why = "y_zero_point not a constant 8-bit scalar", nullptr;
    k->y_dt_ = ydt;
    const Tensor* bz = pc.constant(5);
    if (!bz || bz->dtype() != DType::Int8 || !(bz->numel() == 1 || (bz->rank() == 1 && bz->numel() == N)) || !all_zero(bz))
      return *why = "b_zero_point not a constant int8 zero (the reference handles non-zero ones)", nullptr;
    std::vector<float> as, bs, ys;
    if (!const_scales(pc.constant(1), 0, as) || !const_scales(pc.constant(4), N, bs) ||
        !const_scales(pc.constant(ysi), 0, ys))
      return *why = "scales not constant, finite, non-zero, per tensor (b: per tensor or per column)", nullptr;
    const float alpha = gemm ? pc.attr_f("alpha", 1.0f) : 1.0f;
    if (!std::isfinite(alpha)) return *why = "alpha not finite", nullptr;
    k->mult_.resize(static_cast<size_t>(N));
    for (int64_t j = 0; j < N; ++j) {
      if (gemm) {  // exactly quant_gemm.cpp's arithmetic
        float s = as[0] * bs[j];
        if (alpha != 1.0f) s = s * alpha;
        k->mult_[j] = s / ys[0];
      } else {
        k->mult_[j] = quant::requant_multiplier(as[0], bs[j], ys[0]);
      }
      if (!std::isfinite(k->mult_[j])) return *why = "requantization multiplier not finite", nullptr;
    }
    k->bias_.assign(static_cast<size_t>(N), 0);
    if (gemm && pc.node().has_input(6)) {
      const Tensor* c = pc.constant(6);
      if (!c || c->dtype() != DType::Int32 || !(c->numel() == 1 || c->numel() == N) ||
          !(c->rank() <= 1 || (c->rank() == 2 && c->dim(0) == 1)))
        return *why = "C not a constant int32 of 1 or N elements", nullptr;
      for (int64_t j = 0; j < N; ++j) k->bias_[j] = c->data<int32_t>()[c->numel() == 1 ? 0 : j];
    }
    if (gemm && !(pc.node().has_input(7) && pc.node().has_input(8)))
      return *why = "float-output QGemm", nullptr;
    const KernelDef* ref = reference_of(pc);
    if (!ref) return *why = "no reference kernel", nullptr;
    k->ref_ = ref->fn;
    // B as a plain [K, N] int8 matrix (transposed once when transB).
    k->B_ = Tensor(DType::Int8, {K, N});
    for (int64_t kk = 0; kk < K; ++kk)
      for (int64_t j = 0; j < N; ++j)
        k->B_.data<int8_t>()[kk * N + j] = b->data<int8_t>()[tb ? j * K + kk : kk * N + j];
    return k;
  }

  std::string name() const override { return gemm_ ? "onednn_qgemm" : "onednn_qmatmul"; }
  size_t state_bytes() const override {  // B as [K, N], the per-column constants, reordered copies
    std::lock_guard<std::mutex> lk(mu_);
    return B_.nbytes() + mult_.size() * sizeof(float) + bias_.size() * sizeof(int32_t) + weights_.bytes();
  }

  void run(KernelContext& ctx) const override {
    const Tensor& a = ctx.input(0);
    if (a.dtype() != a_dt_ || a.rank() < 2 || a.numel() == 0) return ref_(ctx);
    if (gemm_ && a.rank() != 2) return ref_(ctx);
    const int64_t K = ta_ ? a.dim(0) : a.dim(a.rank() - 1);
    if (K != K_) return ref_(ctx);
    const int64_t rows = a.numel() / K;
    std::shared_ptr<const Plan> p = plan(rows);
    if (!p->ok) return ref_(ctx);
    Shape ys = a.shape();
    if (ta_) ys = {a.dim(1), N_};
    else ys.back() = N_;
    Tensor& y = ctx.alloc_output(0, y_dt_, ys, KernelContext::Init::Uninit);
    int32_t* acc = thread_buffer<int32_t>(static_cast<size_t>(rows * N_), 1);
    memory am(p->a, engine(), const_cast<void*>(a.raw())), cm(p->c, engine(), acc);
    int32_t zp = a_zp_;
    std::unordered_map<int, memory> args{{DNNL_ARG_SRC, am}, {DNNL_ARG_WEIGHTS, *p->weights}, {DNNL_ARG_DST, cm}};
    if (a_zp_ != 0) args.emplace(DNNL_ARG_ATTR_ZERO_POINTS | DNNL_ARG_SRC, memory({{1}, ddt::s32, tag::x}, engine(), &zp));
    run_prim(p->prim, args, p->scratch_desc, p->scratch);
    const bool u8 = y_dt_ == DType::UInt8;
    const quant::QRange r = quant::qrange(y_dt_);
    char* yp = static_cast<char*>(y.raw());
    for (int64_t i = 0; i < rows; ++i) {
      int32_t* ar = acc + i * N_;
      if (!fastq::requantize(ar, bias_.data(), mult_.data(), N_, y_zp_, r, u8, yp + i * N_)) continue;
      for (int64_t j = 0; j < N_; ++j) {  // |acc| >= 2^24: recompute exactly (see the file comment)
        if (ar[j] < kExact && ar[j] > -kExact) continue;
        uint32_t sum = 0;
        for (int64_t kk = 0; kk < K_; ++kk) {
          const int64_t ai = ta_ ? kk * rows + i : i * K_ + kk;
          sum += static_cast<uint32_t>((q_at(a, ai) - a_zp_) * int32_t{B_.data<int8_t>()[kk * N_ + j]});
        }
        const int32_t q = quant::requantize(static_cast<int32_t>(sum), bias_[j], mult_[j], y_zp_, r);
        if (u8) reinterpret_cast<uint8_t*>(yp)[i * N_ + j] = static_cast<uint8_t>(q);
        else reinterpret_cast<int8_t*>(yp)[i * N_ + j] = static_cast<int8_t>(q);
      }
    }
  }

 private:
  std::shared_ptr<const Plan> plan(int64_t rows) const {
    std::lock_guard<std::mutex> lk(mu_);
    if (auto it = plans_.find(rows); it != plans_.end()) return it->second;
    auto p = std::make_shared<Plan>();
    omp_set_num_threads(1);  // see FastQConv::plan
    try {
      if (static_cast<uint64_t>(rows) * static_cast<uint64_t>(N_) <= max_tensor_bytes() / sizeof(int32_t)) {
        p->a = ta_ ? memory::desc({rows, K_}, q8_ddt(a_dt_), dims{1, rows}) : memory::desc({rows, K_}, q8_ddt(a_dt_), tag::ab);
        p->c = memory::desc({rows, N_}, ddt::s32, tag::ab);
        memory::desc wany({K_, N_}, ddt::s8, tag::any);
        dnnl::primitive_attr attr;
        attr.set_scratchpad_mode(dnnl::scratchpad_mode::user);
        if (a_zp_ != 0) attr.set_zero_points(DNNL_ARG_SRC, 0, {DNNL_RUNTIME_S32_VAL});
        dnnl::matmul::primitive_desc pd(dnnl::matmul::desc(p->a, wany, p->c), attr, engine());
        if (!is_reference_impl(pd.impl_info_str())) {
          p->prim = dnnl::matmul(pd);
          p->scratch_desc = pd.scratchpad_desc();
          p->scratch = p->scratch_desc.get_size();
          p->weights = weights_for(pd.weights_desc());
          p->ok = true;
        }
      }
    } catch (const dnnl::error&) {
      p->ok = false;
    }
    plans_[rows] = p;
    return p;
  }

  std::shared_ptr<memory> weights_for(const memory::desc& wd) const {
    return weights_.get(wd, memory::desc({K_, N_}, ddt::s8, tag::ab), B_.raw());
  }

  KernelFn ref_ = nullptr;
  bool gemm_ = false, ta_ = false;
  Tensor B_;
  int64_t K_ = 0, N_ = 0;
  DType a_dt_ = DType::UInt8, y_dt_ = DType::UInt8;
  int32_t a_zp_ = 0, y_zp_ = 0;
  std::vector<float> mult_;
  std::vector<int32_t> bias_;
  mutable std::mutex mu_;
  mutable std::map<int64_t, std::shared_ptr<const Plan>> plans_;
  mutable ReorderedWeights weights_;
};

// ---------------------------------------------------------------------------------------------
// QuantizeLinear / DequantizeLinear with constant per-tensor scale and zero point.

class FastQuantizeLinear final : public PreparedKernel {
 public:
  static std::unique_ptr<PreparedKernel> prepare(const PrepareContext& pc, std::string* why) {
    const bool dq = pc.node().op_type == "DequantizeLinear";
    auto k = std::make_unique<FastQuantizeLinear>();
    k->dq_ = dq;
    std::vector<float> s;
    if (!const_scales(pc.constant(1), 0, s)) return *why = "scale not a constant finite non-zero scalar", nullptr;
    k->scale_ = s[0];
    if (pc.node().has_input(2)) {
      if (!const_zp(pc.constant(2), k->zp_, k->qdt_)) return *why = "zero point not a constant 8-bit scalar", nullptr;
    } else {
      if (!dq) k->qdt_ = DType::UInt8;
      else return *why = "no zero point (the input type decides)", nullptr;
    }
    const KernelDef* ref = reference_of(pc);
    if (!ref) return *why = "no reference kernel", nullptr;
    k->ref_ = ref->fn;
    return k;
  }
  std::string name() const override { return dq_ ? "fast_dequantize" : "fast_quantize"; }

  void run(KernelContext& ctx) const override {
    const Tensor& x = ctx.input(0);
    if (x.dtype() != (dq_ ? qdt_ : DType::Float32)) return ref_(ctx);
    const bool u8 = qdt_ == DType::UInt8;
    Tensor& y = ctx.alloc_output(0, dq_ ? DType::Float32 : qdt_, x.shape(), KernelContext::Init::Uninit);
    const int64_t n = x.numel();
    // Memory-bound: about 0.1 ms per million elements on one core. Splitting smaller tensors over
    // threads cost more than it saved (resnet50 int8 at 2 threads on a loaded machine: Q + DQ took
    // 39 ms instead of 4 ms, waiting for workers).
    constexpr int64_t kBlock = 1 << 21;
    auto body = [&](int64_t b, int64_t e) {
      for (int64_t blk = b; blk < e; ++blk) {
        const int64_t lo = blk * kBlock, len = std::min(kBlock, n - lo);
        if (dq_) fastq::dequantize(static_cast<const char*>(x.raw()) + lo, len, u8, zp_, scale_, y.data<float>() + lo);
        else fastq::quantize(x.data<float>() + lo, len, scale_, zp_, quant::qrange(qdt_), u8, static_cast<char*>(y.raw()) + lo);
      }
    };
    const int64_t blocks = (n + kBlock - 1) / kBlock;
    if (blocks <= 1 || in_parallel_region()) body(0, blocks);
    else parallel_for(blocks, body);
  }

 private:
  KernelFn ref_ = nullptr;
  bool dq_ = false;
  float scale_ = 1.f;
  int32_t zp_ = 0;
  DType qdt_ = DType::UInt8;
};

// ---------------------------------------------------------------------------------------------
// MaxPool in int8 models, NCHW: on uint8/int8 tensors (oneDNN reorder to NHWC, oneDNN max
// pooling, reorder back), and on float32 tensors that a DequantizeLinear produced (the QDQ models'
// MaxPool sits between a DQ and a Q; oneDNN's NCHW float pooling). A maximum is exact, so any
// order gives the reference's result; a DequantizeLinear output holds no NaN (its scale is finite),
// the one value whose max semantics could differ. Declines ceil_mode, dilations, storage_order,
// the Indices output and non-2-D pools.

class FastQMaxPool final : public PreparedKernel {
 public:
  struct Plan {
    bool ok = false;
    Shape y_shape;
    dnnl::reorder in, out;
    dnnl::pooling_forward prim;
    memory::desc x_nchw, x_nhwc, y_nhwc, y_nchw, scratch_desc;
    size_t scratch = 0;
  };

  static std::unique_ptr<PreparedKernel> prepare(const PrepareContext& pc, std::string* why) {
    const ir::Node& n = pc.node();
    if (n.outputs.size() > 1 && !n.outputs[1].empty()) return *why = "Indices output wanted", nullptr;
    if (pc.attr_i("ceil_mode", 0) != 0) return *why = "ceil_mode=1", nullptr;
    if (pc.attr_i("storage_order", 0) != 0) return *why = "storage_order=1", nullptr;
    for (int64_t d : pc.attr_ints("dilations"))
      if (d != 1) return *why = "dilations != 1", nullptr;
    auto k = std::make_unique<FastQMaxPool>();
    const int p = producer_of(pc.graph(), n.inputs.empty() ? std::string() : n.inputs[0]);
    // NHWC: set by qconv_layout_nhwc only after it checked the same (its graph is being rebuilt).
    k->float_ok_ = (p >= 0 && pc.graph().nodes[static_cast<size_t>(p)].op_type == "DequantizeLinear") ||
                   pc.attr_s("layout", "NCHW") == "NHWC";
    const ir::ValueInfo* xi = pc.input_info(0);
    if (!k->float_ok_ && !(xi && is_q8(xi->dtype))) return *why = "input neither 8-bit nor a DequantizeLinear output", nullptr;
    k->kernel_ = pc.attr_ints("kernel_shape");
    k->strides_ = pc.attr_ints("strides");
    k->pads_ = pc.attr_ints("pads");
    k->auto_pad_ = pc.attr_s("auto_pad", "NOTSET");
    k->nhwc_ = pc.attr_s("layout", "NCHW") == "NHWC";
    if (k->strides_.empty()) k->strides_ = {1, 1};
    if (k->pads_.empty()) k->pads_ = {0, 0, 0, 0};
    if (k->kernel_.size() != 2 || k->strides_.size() != 2 || k->pads_.size() != 4) return *why = "not 2-D", nullptr;
    for (int64_t v : k->kernel_)
      if (v < 1) return *why = "kernel_shape < 1", nullptr;
    for (int64_t v : k->strides_)
      if (v < 1) return *why = "strides < 1", nullptr;
    for (int64_t v : k->pads_)
      if (v < 0) return *why = "negative pads", nullptr;
    const KernelDef* ref = reference_of(pc);
    if (!ref) return *why = "no reference kernel", nullptr;
    k->ref_ = ref->fn;
    return k;
  }
  std::string name() const override { return "onednn_qmaxpool"; }

  void run(KernelContext& ctx) const override {
    const Tensor& x = ctx.input(0);
    const bool f = x.dtype() == DType::Float32;
    auto fallback = [&] { return nhwc_ ? reference_nhwc(ctx, ref_) : ref_(ctx); };
    if (!(is_q8(x.dtype()) || (f && float_ok_)) || x.rank() != 4 || x.numel() == 0) return fallback();
    const Shape xs = nhwc_ ? Shape{x.dim(0), x.dim(3), x.dim(1), x.dim(2)} : x.shape();  // logical NCHW
    std::shared_ptr<const Plan> p = plan(xs, x.dtype());
    if (!p->ok) return fallback();
    const Shape& ys = p->y_shape;
    Tensor& y = ctx.alloc_output(0, x.dtype(), nhwc_ ? Shape{ys[0], ys[2], ys[3], ys[1]} : ys, KernelContext::Init::Uninit);
    if (nhwc_) {
      memory a(p->x_nhwc, engine(), const_cast<void*>(x.raw())), d(p->y_nhwc, engine(), y.raw());
      std::unordered_map<int, memory> pa{{DNNL_ARG_SRC, a}, {DNNL_ARG_DST, d}};
      return run_prim(p->prim, pa, p->scratch_desc, p->scratch);
    }
    if (f) {
      memory a(p->x_nchw, engine(), const_cast<void*>(x.raw())), d(p->y_nchw, engine(), y.raw());
      std::unordered_map<int, memory> pa{{DNNL_ARG_SRC, a}, {DNNL_ARG_DST, d}};
      return run_prim(p->prim, pa, p->scratch_desc, p->scratch);
    }
    uint8_t* xh = thread_buffer<uint8_t>(static_cast<size_t>(x.numel()), 0);
    uint8_t* yh = thread_buffer<uint8_t>(static_cast<size_t>(y.numel()), 2);
    memory a(p->x_nchw, engine(), const_cast<void*>(x.raw())), b(p->x_nhwc, engine(), xh);
    memory c(p->y_nhwc, engine(), yh), d(p->y_nchw, engine(), y.raw());
    std::unordered_map<int, memory> r1{{DNNL_ARG_FROM, a}, {DNNL_ARG_TO, b}}, r2{{DNNL_ARG_FROM, c}, {DNNL_ARG_TO, d}};
    std::unordered_map<int, memory> pa{{DNNL_ARG_SRC, b}, {DNNL_ARG_DST, c}};
    run_prim(p->in, r1, {}, 0);
    run_prim(p->prim, pa, p->scratch_desc, p->scratch);
    run_prim(p->out, r2, {}, 0);
  }

 private:
  std::shared_ptr<const Plan> plan(const Shape& xs, DType dt) const {
    std::lock_guard<std::mutex> lk(mu_);
    auto key = std::make_pair(xs, static_cast<int>(dt));
    if (auto it = plans_.find(key); it != plans_.end()) return it->second;
    auto p = std::make_shared<Plan>();
    omp_set_num_threads(1);  // see FastQConv::plan
    try {
      const int64_t N = xs[0], C = xs[1], H = xs[2], Wd = xs[3];
      int64_t pt = pads_[0], pl = pads_[1], pb = pads_[2], pr = pads_[3], OH = 0, OW = 0;
      if (spatial(auto_pad_, H, kernel_[0], strides_[0], 1, pt, pb, OH) &&
          spatial(auto_pad_, Wd, kernel_[1], strides_[1], 1, pl, pr, OW) &&
          // A window entirely in the padding has no maximum in oneDNN (the reference's is -inf
          // saturated): leave those to the reference.
          pt < kernel_[0] && pb < kernel_[0] && pl < kernel_[1] && pr < kernel_[1]) {
        const bool f = dt == DType::Float32;  // float: NCHW directly (oneDNN has a jit kernel)
        const ddt t = f ? ddt::f32 : q8_ddt(dt);
        p->x_nchw = memory::desc({N, C, H, Wd}, t, tag::nchw);
        p->x_nhwc = memory::desc({N, C, H, Wd}, t, tag::nhwc);
        p->y_nhwc = memory::desc({N, C, OH, OW}, t, tag::nhwc);
        p->y_nchw = memory::desc({N, C, OH, OW}, t, tag::nchw);
        const bool direct = f && !nhwc_;  // pooling reads/writes NCHW (else NHWC)
        dnnl::pooling_forward::desc d(dnnl::prop_kind::forward_inference, dnnl::algorithm::pooling_max,
                                      direct ? p->x_nchw : p->x_nhwc, direct ? p->y_nchw : p->y_nhwc, {strides_[0], strides_[1]}, {kernel_[0], kernel_[1]}, {pt, pl}, {pb, pr});
        dnnl::primitive_attr attr;
        attr.set_scratchpad_mode(dnnl::scratchpad_mode::user);
        dnnl::pooling_forward::primitive_desc pd(d, attr, engine());
        if (!is_reference_impl(pd.impl_info_str())) {
          p->prim = dnnl::pooling_forward(pd);
          p->scratch_desc = pd.scratchpad_desc();
          p->scratch = p->scratch_desc.get_size();
          p->in = dnnl::reorder(dnnl::reorder::primitive_desc(engine(), p->x_nchw, engine(), p->x_nhwc));
          p->out = dnnl::reorder(dnnl::reorder::primitive_desc(engine(), p->y_nhwc, engine(), p->y_nchw));
          p->y_shape = {N, C, OH, OW};
          p->ok = true;
        }
      }
    } catch (const dnnl::error&) {
      p->ok = false;
    }
    plans_[key] = p;
    return p;
  }

  KernelFn ref_ = nullptr;
  bool float_ok_ = false, nhwc_ = false;
  std::vector<int64_t> kernel_, strides_, pads_;
  std::string auto_pad_;
  mutable std::mutex mu_;
  mutable std::map<std::pair<Shape, int>, std::shared_ptr<const Plan>> plans_;
};

// ---------------------------------------------------------------------------------------------
// Pass qconv_layout_nhwc: runs of int8 ops in NHWC, so that consecutive QLinearConvs (and the
// DQ -> Add -> Q of a residual) pass NHWC tensors and no reorder runs between them (on
// mobilenet_v2 the per-conv NCHW<->NHWC reorders were half the int8 time). Converted, when the
// input is NHWC (or, for QLinearConv, always):
//   QLinearConv that onednn_qconv accepts       -> "layout" = "NHWC" (ai.onnx op, CPU-private
//                                                  attribute; its kernel's run-time fallback
//                                                  transposes around the reference)
//   MaxPool that onednn_qmaxpool accepts        -> the same
//   per-tensor QuantizeLinear/DequantizeLinear, Relu, Clip, Add/Sub/Mul/Max/Min of NHWC inputs
//                                               -> renamed to the NHWC values (elementwise: the
//                                                  layout does not change a single result)
// Any other reader of a converted value gets a Transpose back to NCHW, as do graph outputs. Only
// on machines where the int8 kernels run (AVX-512 VNNI): elsewhere the pass does nothing.

int qconv_layout_nhwc(ir::Model& m) {
  if (!cpu_features().avx512vnni) return 0;
  ir::Graph& g = m.graph;
  auto onnx = [](const ir::Node& n) { return n.domain.empty() || n.domain == "ai.onnx"; };
  auto accepts = [&](const ir::Node& n, PrepareFn prep) {
    ir::Node t = n;
    t.attrs["layout"] = ir::Attribute{};
    t.attrs["layout"].kind = ir::Attribute::Kind::String;
    t.attrs["layout"].s = "NHWC";
    std::string why;
    return prep(PrepareContext(m, g, t), &why) != nullptr;
  };
  auto per_tensor = [&](const ir::Node& n) {  // Q/DQ with a constant scalar scale and zero point
    for (size_t i = 1; i < 3 && i < n.inputs.size(); ++i) {
      if (n.inputs[i].empty()) continue;
      auto it = g.initializers.find(n.inputs[i]);
      if (it == g.initializers.end() || it->second.numel() != 1) return false;
    }
    return n.inputs.size() >= 2 && !n.inputs[1].empty();
  };
  static const std::unordered_set<std::string> unary = {"Relu", "Clip"};
  static const std::unordered_set<std::string> binary = {"Add", "Sub", "Mul", "Max", "Min"};
  std::vector<ir::Node> out;
  out.reserve(g.nodes.size() + 8);
  NhwcRewriter nh(g, out, "q_");
  // NHWC values made by a DequantizeLinear (float, never NaN) or an int8 op: what MaxPool takes.
  std::unordered_set<std::string> made_by;
  int converted = 0;
  for (auto& n0 : g.nodes) {
    ir::Node n = std::move(n0);
    bool done = false, subgraph = false;
    for (const auto& [_, a] : n.attrs)
      subgraph |= a.kind == ir::Attribute::Kind::Graph || a.kind == ir::Attribute::Kind::Graphs;
    const bool single = n.outputs.size() == 1;
    if (!subgraph && onnx(n) && single && !n.inputs.empty() && n.attr_s("layout", "NCHW") == "NCHW") {
      if (n.op_type == "QLinearConv" && accepts(n, FastQConv::prepare)) {
        n.inputs[0] = nh.want_nhwc(n.inputs[0]);
        done = true;
      } else if (n.op_type == "MaxPool" && nh.is_nhwc(n.inputs[0]) && made_by.count(nh.nhwc(n.inputs[0])) &&
                 accepts(n, FastQMaxPool::prepare)) {
        n.inputs[0] = nh.nhwc(n.inputs[0]);
        done = true;
      } else if ((n.op_type == "QuantizeLinear" || n.op_type == "DequantizeLinear") && nh.is_nhwc(n.inputs[0]) &&
                 per_tensor(n)) {
        n.inputs[0] = nh.nhwc(n.inputs[0]);
        done = true;
      } else if (unary.count(n.op_type) && nh.is_nhwc(n.inputs[0])) {
        bool ok = true;
        for (size_t k = 1; k < n.inputs.size(); ++k) ok &= !nh.is_nhwc(n.inputs[k]);
        if (ok) n.inputs[0] = nh.nhwc(n.inputs[0]);
        done = ok;
      } else if (binary.count(n.op_type) && n.inputs.size() == 2) {
        bool ok = true;
        for (const auto& v : n.inputs) ok &= !v.empty() && nh.is_nhwc(v);
        if (ok)
          for (auto& v : n.inputs) v = nh.nhwc(v);
        done = ok;
      }
    }
    if (done) {
      if (n.op_type == "QLinearConv" || n.op_type == "MaxPool") {
        n.attrs["layout"].kind = ir::Attribute::Kind::String;
        n.attrs["layout"].s = "NHWC";
      }
      nh.make_nhwc_output(n);
      if (n.op_type == "DequantizeLinear" || n.op_type == "QuantizeLinear" || n.op_type == "QLinearConv")
        made_by.insert(n.outputs[0]);
      ++converted;
    } else {
      for (const auto& r : ir::node_reads(n)) nh.need_nchw(r);
    }
    out.push_back(std::move(n));
  }
  for (const auto& o : g.outputs) nh.need_nchw(o.name);
  g.nodes = std::move(out);
  return converted;
}

}  // namespace

void register_fast_quant(FastRegistry& r) {
  r.add({"QLinearConv", "", "onednn_qconv", FastQConv::prepare});
  r.add({"QLinearMatMul", "", "onednn_qmatmul", FastQMatMul::prepare_matmul});
  r.add({"QGemm", "com.microsoft", "onednn_qgemm", FastQMatMul::prepare_qgemm});
  r.add({"QuantizeLinear", "", "fast_quantize", FastQuantizeLinear::prepare});
  r.add({"DequantizeLinear", "", "fast_dequantize", FastQuantizeLinear::prepare});
  r.add({"MaxPool", "", "onednn_qmaxpool", FastQMaxPool::prepare});
}

void add_quant_passes(std::vector<CpuPass>& p) { p.push_back({"qconv_layout_nhwc", qconv_layout_nhwc}); }

}  // namespace opennpu::cpu
