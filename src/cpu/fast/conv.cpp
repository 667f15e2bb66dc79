// cpu/fast/conv.cpp — fast FusedConv and NHWC pooling (opennpu.cpu ops, see conv.h) on oneDNN.
//
// FusedConv: one oneDNN convolution primitive per input shape (built at the first run with that
// shape, cached under a mutex), with bias, the residual Add (sum post-op: the output buffer starts
// as Z, reusing Z's buffer when the executor allows it) and the activation (eltwise post-op) in
// the same pass over the output. oneDNN picks the kernel for the machine at run time (brgemm /
// jit AVX-512, AVX2, ...) and the weights' blocked layout; the constant weights are reordered
// into that layout once and shared between the shapes that want the same layout. Activations are
// NHWC (the layout pass puts runs of convs in NHWC: oneDNN's fast fp32 kernels read and write
// NHWC directly, so no reorder runs between two convs); NCHW works too (slower kernels).
// Declined at run time (the reference kernel runs): non-float32 input, rank != 4, empty batch,
// Z not of the output's shape (broadcast), and shapes where oneDNN only offers its reference
// implementation.
//
// Winograd: NHWC 3x3 stride-1 dilation-1 group-1 convs with >= kWinoMinChannels input and output
// channels, no activation or Relu (oneDNN's wino kernels refuse Clip / LeakyRelu with a slope /
// Sigmoid / Tanh; the residual sum is accepted), run on oneDNN's Winograd kernels
// (jit_fp32_wino_2x3 / jit_wino_4x3, whichever oneDNN picks for the chunk; 2.25x / 4x fewer
// multiplies). They refuse NHWC: each chunk reorders its NHWC input rows into a blocked
// (nChw16c) tensor, and Z's rows into the blocked output for the sum, runs the primitive and
// reorders the result back, in per-thread buffers (no allocation in the steady state). The
// reorders are ~2% of the conv (64 ch at 56x56: 0.04 of 1.04 ms). Chunks (see Threads below):
// when the weights outweigh an image's channel plane (M*9 > H*W: resnet50's 28x28, 14x14, 7x7
// layers) chunks of output channels (multiples of 16) over the whole image, so each thread reads
// only its share of the transformed weights (16/9 or 36/9 the size of the plain ones); else
// chunks of output rows, at least 2 per image even on one thread (oneDNN then picks the 4x3
// kernel, faster there). resnet50's 3x3 stride-1 layers (per-layer, opennpu profile --device
// cpu, direct -> Winograd): 1 thread 64@56x56 2.0 -> 0.8 ms, 128@28x28 2.0 -> 0.9, 256@14x14
// 1.95 -> 1.1-1.2, 512@7x7 2.1 -> 1.7-1.8; 2 threads 1.0 -> 0.39-0.46, 0.43-0.46, 0.61-0.66,
// 1.2 -> 0.91-0.93. Row chunks for the large-weight layers were 2x slower than direct at 7x7
// (each chunk reads all the weights). Below 32 channels wino is not faster (17 ch at 20x20:
// 0.88x). Accuracy: Winograd rounds a little more than a direct conv (test_fast_conv: max error
// 2.6e-6 vs 1.9e-6 of the output's scale against the fp32 reference; bound 2e-5).
// OPENNPU_CPU_WINOGRAD=0 (read once) turns it off. A shape / post-op the wino kernels refuse
// runs the direct conv.
//
// Pooling (MaxPool / AveragePool / GlobalAveragePool / GlobalMaxPool on NHWC tensors): a oneDNN
// pooling primitive per input shape; declines ceil_mode=1 and dilations != 1.
//
// Threads: oneDNN's OpenMP threading is not used for NHWC convs (its barriers degrade badly on a
// loaded machine: resnet50 at 2 threads was 2.15x ORT with it, 0.72x without, same run
// conditions): the output is split into one chunk per opennpu thread, each chunk its own
// single-threaded primitive, and the chunks are handed out by parallel_tasks (core/parallel.h),
// whose caller does not wait for a worker that has not started (descheduled on a shared
// machine): it runs that chunk itself. A 1x1 stride-1 unpadded conv is a GEMM over the batch's
// pixels and is split into chunks of pixels (even at 7x7: 25/24 pixels instead of 4/3 rows);
// other convs into chunks of output rows (with the part of the padding each chunk's rows see).
// Every conv from kMinParallelFlops is split: mobilenet_v2's 14x14/7x7 layers (0.9-40 MFLOP,
// formerly below a 10 MFLOP threshold, on one thread) are 40% of its time. mobilenet_v2 at 2
// threads, opennpu / ONNX Runtime latency (bench/vs_ort.py, same runs): 1.40x before, 0.80-0.86x
// after with the machine nearly to ourselves, 0.84-1.25x at load ~4 (round spread up to 90%).
// One chunk per thread measured best (2 or 4 per thread: mobilenet_v2 +3-13%, resnet50 +8%:
// each chunk is a primitive execution and a smaller GEMM). So set_num_threads(N) bounds the
// threads computing; OpenMP is set to 1 thread per calling thread (NCHW convs, only reached when
// the layout pass did not run, use OpenMP with N threads).
//
// Layout choice (measured, 1 thread, oneDNN 2.6 on AVX-512): NHWC brgconv kernels are as fast as
// the blocked nChw16c jit kernels on resnet50/mobilenet_v2 layers (3x3: 3.55 vs 3.62 ms,
// 512x512x3x3@7x7: 2.06 vs 2.65 ms; 1x1 about equal; depthwise 10-15% slower), need no channel
// padding, and a NHWC tensor is a plain [N, H, W, C] tensor that ONNX Transpose converts. oneDNN
// has no fast kernel taking an NCHW source and writing NHWC (ref:any), hence the Transpose
// (a oneDNN reorder, FastLayoutTranspose) at the start of a run of NHWC nodes.
#include <dnnl.hpp>
#include <omp.h>

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <map>
#include <mutex>
#include <tuple>

#include "core/parallel.h"
#include "cpu/fast/conv.h"
#include "cpu/fast/onednn_util.h"

namespace opennpu::cpu {

namespace {

using dnnl::memory;
using tag = memory::format_tag;
using ddt = memory::data_type;
using dims = memory::dims;

using onednn::engine;
using onednn::thread_state;
using onednn::ThreadState;

// NHWC convs with at least this many flops (and more than one thread) are split into one chunk
// per thread: below it (mobilenet's 7x7 depthwise layers are ~0.9 MFLOP) a chunk is a few
// microseconds, about what handing it to another thread costs.
constexpr double kMinParallelFlops = 1e5;

// Winograd (see the top of the file) for 3x3 stride-1 convs with at least this many input and
// output channels: below it the direct kernel is as fast (17 channels at 20x20: wino 0.88x the
// direct kernel's speed, 24 at 56x56 1.06x, 32 at 14x14 1.48x, 64 at 7x7 1.11x; 1 thread).
constexpr int64_t kWinoMinChannels = 32;
constexpr int64_t kWinoChannelBlock = 16;  // oneDNN's blocked layout (nChw16c)

// OPENNPU_CPU_WINOGRAD=0 turns the Winograd path off (direct convs only), read once.
bool winograd_enabled() {
  static const bool on = [] {
    const char* e = std::getenv("OPENNPU_CPU_WINOGRAD");
    return !(e && std::string(e) == "0");
  }();
  return on;
}

// The per-thread buffer for a Winograd chunk's blocked input and output.
onednn::AlignedBuffer& wino_buffers() {
  static thread_local onednn::AlignedBuffer b;
  return b;
}

// ---------------------------------------------------------------------------------------------
// FusedConv

class FastConv final : public PreparedKernel {
 public:
  // One primitive per chunk of output rows (NHWC: each chunk reads and writes contiguous rows of
  // one image; NCHW: one chunk, the whole batch).
  struct Chunk {
    dnnl::convolution_forward prim;
    memory::desc src, dst, scratch_desc, bias;
    std::shared_ptr<memory> weights;
    size_t scratch = 0;
    int64_t src_off = 0, dst_off = 0;  // element offsets of the chunk's first input / output
    int64_t m0 = 0;                    // first output channel (Winograd chunks of output channels)
    // Winograd: the primitive reads / writes blocked tensors (src_blk / dst_blk, in per-thread
    // buffers): reorders from the NHWC rows (and of Z's rows into dst_blk for the sum post-op)
    // and back.
    bool wino = false;
    memory::desc src_blk, dst_blk;
    dnnl::reorder to_blk, z_to_blk, from_blk;
  };
  struct Plan {
    bool ok = false;
    Shape y_shape;
    std::vector<Chunk> chunks;
    bool per_image = true;           // tasks = images x chunks (else the chunks cover the batch)
    int64_t x_image = 0, y_image = 0;  // element strides of one image (NHWC)
  };

  FastConv(const PrepareContext& pc, KernelFn ref) : ref_(ref) {
    W_ = *pc.constant(1);
    if (const Tensor* b = pc.constant(2)) B_ = *b;
    has_sum_ = pc.node().has_input(3);
    nhwc_ = pc.attr_s("layout", "NCHW") == "NHWC";
    group_ = pc.attr_i("group", 1);
    auto_pad_ = pc.attr_s("auto_pad", "NOTSET");
    strides_ = pc.attr_ints("strides");
    dil_ = pc.attr_ints("dilations");
    pads_ = pc.attr_ints("pads");
    if (strides_.empty()) strides_ = {1, 1};
    if (dil_.empty()) dil_ = {1, 1};
    if (pads_.empty()) pads_ = {0, 0, 0, 0};
    act_ = pc.attr_s("activation", "");
    alpha_ = pc.attr_f("activation_alpha", 0.f);
    beta_ = pc.attr_f("activation_beta", 0.f);
  }

  static std::unique_ptr<PreparedKernel> prepare(const PrepareContext& pc, std::string* why) {
    const ir::Node& n = pc.node();
    const Tensor* w = pc.constant(1);
    if (!w || w->dtype() != DType::Float32 || w->rank() != 4) return *why = "weights not a constant float32 4-D tensor", nullptr;
    if (n.has_input(2)) {
      const Tensor* b = pc.constant(2);
      if (!b || b->dtype() != DType::Float32 || b->rank() != 1 || b->dim(0) != w->dim(0))
        return *why = "bias not a constant float32 [M]", nullptr;
    }
    if (pc.attr_ints("strides").size() > 2 || pc.attr_ints("dilations").size() > 2 || pc.attr_ints("pads").size() > 4)
      return *why = "attributes not 2-D", nullptr;
    for (const char* a : {"strides", "dilations", "pads"})
      if (pc.has_attr(a) && pc.attr_ints(a).size() != (std::string(a) == "pads" ? 4u : 2u))
        return *why = std::string("attribute ") + a + " has the wrong length", nullptr;
    // Invalid values are the reference kernel's to report (it names the node and attribute).
    for (const char* a : {"strides", "dilations"})
      for (int64_t v : pc.attr_ints(a))
        if (v < 1) return *why = std::string(a) + " < 1", nullptr;
    for (int64_t v : pc.attr_ints("pads"))
      if (v < 0) return *why = "negative pads", nullptr;
    const std::string act = pc.attr_s("activation", "");
    if (!(act.empty() || act == "Relu" || act == "LeakyRelu" || act == "Clip" || act == "Sigmoid" || act == "Tanh"))
      return *why = "activation " + act, nullptr;
    const KernelDef* ref = reference_of(pc);
    if (!ref) return *why = "no reference kernel", nullptr;
    return std::make_unique<FastConv>(pc, ref->fn);
  }

  // "onednn_conv_wino" once a shape ran (some of) its chunks with Winograd.
  std::string name() const override { return used_wino_ ? "onednn_conv_wino" : "onednn_conv"; }
  size_t state_bytes() const override {
    std::lock_guard<std::mutex> lk(mu_);
    size_t b = 0;
    for (const auto& [d, off, m] : weights_) b += d.get_size();
    return b;
  }

  void run(KernelContext& ctx) const override {
    const Tensor& x = ctx.input(0);
    if (x.dtype() != DType::Float32 || x.rank() != 4 || x.dim(0) == 0) return ref_(ctx);
    const int threads = in_parallel_region() ? 1 : num_threads();
    std::shared_ptr<const Plan> p = plan(x.shape(), threads);
    if (!p->ok) return ref_(ctx);
    Tensor* y = nullptr;
    if (has_sum_) {
      const Tensor& z = ctx.input(3);
      if (z.dtype() != DType::Float32 || z.shape() != p->y_shape) return ref_(ctx);
      y = &sum_output(ctx, 3, x, p->y_shape);
    } else {
      y = &ctx.alloc_output(0, DType::Float32, p->y_shape, KernelContext::Init::Uninit);
    }
    const float* xp = x.data<float>();
    float* yp = y->data<float>();
    const float* bp = B_.empty_value() ? nullptr : B_.data<float>();
    const int64_t nc = static_cast<int64_t>(p->chunks.size());
    auto exec = [&](int64_t i, int omp_threads) {
      const Chunk& c = p->chunks[static_cast<size_t>(i % nc)];
      const int64_t n = p->per_image ? i / nc : 0;
      ThreadState& ts = thread_state();
      memory src(c.src, engine(), const_cast<float*>(xp + n * p->x_image + c.src_off));
      memory dst(c.dst, engine(), yp + n * p->y_image + c.dst_off);
      omp_set_num_threads(omp_threads);
      memory src_blk, dst_blk;
      if (c.wino) {
        const size_t sb = (c.src_blk.get_size() + 63) / 64 * 64;
        char* buf = wino_buffers().get(sb + c.dst_blk.get_size());
        src_blk = memory(c.src_blk, engine(), buf);
        dst_blk = memory(c.dst_blk, engine(), buf + sb);
        c.to_blk.execute(ts.stream, src, src_blk);
        if (has_sum_) c.z_to_blk.execute(ts.stream, dst, dst_blk);
      }
      std::unordered_map<int, memory> args = {{DNNL_ARG_SRC, c.wino ? src_blk : src},
                                              {DNNL_ARG_WEIGHTS, *c.weights},
                                              {DNNL_ARG_DST, c.wino ? dst_blk : dst}};
      if (bp) args.emplace(DNNL_ARG_BIAS, memory(c.bias, engine(), const_cast<float*>(bp + c.m0)));
      if (c.scratch) args.emplace(DNNL_ARG_SCRATCHPAD, memory(c.scratch_desc, engine(), ts.scratchpad(c.scratch)));
      c.prim.execute(ts.stream, args);
      if (c.wino) c.from_blk.execute(ts.stream, dst_blk, dst);
      ts.stream.wait();
    };
    if (!nhwc_) return exec(0, threads);  // NCHW: one primitive over the batch, oneDNN's threads
    const int64_t tasks = p->per_image ? x.dim(0) * nc : nc;
    if (tasks == 1 || threads == 1) {
      for (int64_t i = 0; i < tasks; ++i) exec(i, 1);
      return;
    }
    // Tasks are handed out one at a time: a thread that is descheduled (the machine is shared)
    // or slower leaves its share to the others instead of holding the layer.
    parallel_tasks(tasks, [&](int64_t i) { exec(i, 1); });
  }

 private:
  std::shared_ptr<const Plan> plan(const Shape& xs, int threads) const {
    std::lock_guard<std::mutex> lk(mu_);
    auto key = std::make_pair(xs, nhwc_ ? threads : 0);
    if (auto it = plans_.find(key); it != plans_.end()) return it->second;
    auto p = std::make_shared<Plan>();
    // oneDNN fixes a primitive's thread count when it is created (OpenMP's setting for this
    // thread then): NHWC chunks run single-threaded, so create them that way, or each chunk
    // would start an OpenMP team (more than --threads computing, and a spinning worker).
    omp_set_num_threads(nhwc_ ? 1 : threads);
    try {
      build(xs, threads, *p);
    } catch (const dnnl::error&) {
      p->ok = false;
    }
    plans_[key] = p;
    return p;
  }

  void build(const Shape& xs, int threads, Plan& p) const {
    const int64_t N = xs[0], C = nhwc_ ? xs[3] : xs[1], H = nhwc_ ? xs[1] : xs[2], Wd = nhwc_ ? xs[2] : xs[3];
    const int64_t M = W_.dim(0), Cg = W_.dim(1), KH = W_.dim(2), KW = W_.dim(3), G = group_;
    if (G < 1 || C != Cg * G || M % G != 0) return;
    int64_t pt = pads_[0], pl = pads_[1], pb = pads_[2], pr = pads_[3], OH = 0, OW = 0;
    if (!spatial(auto_pad_, H, KH, strides_[0], dil_[0], pt, pb, OH)) return;
    if (!spatial(auto_pad_, Wd, KW, strides_[1], dil_[1], pl, pr, OW)) return;
    // An output too large to count (hostile dims) is the reference kernel's to report.
    try {
      if (static_cast<uint64_t>(checked_numel({N, M, OH, OW})) > max_tensor_bytes() / sizeof(float)) return;
    } catch (const Error&) {
      return;
    }
    const dims wdims = G == 1 ? dims{M, C, KH, KW} : dims{G, M / G, Cg, KH, KW};
    p.x_image = H * Wd * C;
    p.y_image = OH * OW * M;
    p.y_shape = nhwc_ ? Shape{N, OH, OW, M} : Shape{N, M, OH, OW};
    const double flops = 2.0 * double(N) * double(M) * double(Cg) * double(KH) * double(KW) * double(OH) * double(OW);
    // NHWC: one chunk per thread (see the top of the file); one chunk below kMinParallelFlops or
    // with one thread.
    int64_t T = nhwc_ && threads > 1 && flops >= kMinParallelFlops ? threads : 1;
    const auto prop = dnnl::prop_kind::forward_inference;
    // Winograd where oneDNN has it (else, or when a chunk is refused, the direct convs below).
    bool wino = nhwc_ && winograd_enabled() && G == 1 && KH == 3 && KW == 3 && strides_[0] == 1 &&
                strides_[1] == 1 && dil_[0] == 1 && dil_[1] == 1 && C >= kWinoMinChannels && M >= kWinoMinChannels &&
                (act_.empty() || (act_ == "Relu") || (act_ == "LeakyRelu" && alpha_ == 0.f));
    auto add_chunk = [&](memory::desc src, memory::desc dst, int64_t src_off, int64_t dst_off, int64_t ptc, int64_t pbc,
                         int64_t plc, int64_t prc, int64_t m0 = 0, int64_t mc = -1) {
      Chunk c;
      c.src = src, c.dst = dst, c.src_off = src_off, c.dst_off = dst_off, c.m0 = m0;
      if (mc < 0) mc = M;  // else output channels [m0, m0 + mc) (G == 1)
      c.bias = memory::desc({mc}, ddt::f32, tag::x);
      const dims cwdims = mc == M ? wdims : dims{mc, C, KH, KW};
      memory::desc wany(cwdims, ddt::f32, tag::any);
      const dims st{strides_[0], strides_[1]}, dl{dil_[0] - 1, dil_[1] - 1}, padl{ptc, plc}, padr{pbc, prc};
      const auto alg = wino ? dnnl::algorithm::convolution_winograd : dnnl::algorithm::convolution_direct;
      // Winograd: blocked src / dst (format any: oneDNN refuses NHWC), reordered per chunk.
      memory::desc s_any = wino ? memory::desc(src.dims(), ddt::f32, tag::any) : src;
      memory::desc d_any = wino ? memory::desc(dst.dims(), ddt::f32, tag::any) : dst;
      auto d = B_.empty_value() ? dnnl::convolution_forward::desc(prop, alg, s_any, wany, d_any, st, dl, padl, padr)
                                : dnnl::convolution_forward::desc(prop, alg, s_any, wany, c.bias, d_any, st, dl, padl, padr);
      dnnl::convolution_forward::primitive_desc pd;
      try {
        pd = dnnl::convolution_forward::primitive_desc(d, attr(), engine());
      } catch (const dnnl::error&) {
        if (wino) return false;  // refused (padding, post-ops): direct convs
        throw;
      }
      if (is_reference_impl(pd.impl_info_str())) return false;  // slower than our reference; let it run
      if (wino) {
        if (!std::strstr(pd.impl_info_str(), "wino")) return false;
        c.wino = true;
        c.src_blk = pd.src_desc();
        c.dst_blk = pd.dst_desc();
        c.to_blk = dnnl::reorder(dnnl::reorder::primitive_desc(engine(), src, engine(), c.src_blk));
        if (has_sum_) c.z_to_blk = dnnl::reorder(dnnl::reorder::primitive_desc(engine(), dst, engine(), c.dst_blk));
        c.from_blk = dnnl::reorder(dnnl::reorder::primitive_desc(engine(), c.dst_blk, engine(), dst));
      }
      c.prim = dnnl::convolution_forward(pd);
      c.scratch_desc = pd.scratchpad_desc();
      c.scratch = c.scratch_desc.get_size();
      c.weights = weights_for(pd.weights_desc(), cwdims, G, m0);
      p.chunks.push_back(std::move(c));
      return true;
    };
    const bool pointwise = KH == 1 && KW == 1 && strides_[0] == 1 && strides_[1] == 1 && pt == 0 && pl == 0 &&
                           pb == 0 && pr == 0;
    if (nhwc_ && pointwise && T > 1) {
      // A 1x1 conv is a GEMM over the batch's pixels: chunks of pixels, as a [1, 1, P, C] image.
      const int64_t P = N * H * Wd;
      T = std::min(T, P);
      bool ok = true;
      for (int64_t t = 0; t < T && ok; ++t) {
        const int64_t q0 = P * t / T, q1 = P * (t + 1) / T;
        if (q1 > q0)
          ok = add_chunk(memory::desc({1, C, 1, q1 - q0}, ddt::f32, tag::nhwc),
                         memory::desc({1, M, 1, q1 - q0}, ddt::f32, tag::nhwc), q0 * C, q0 * M, 0, 0, 0, 0);
      }
      if (ok) {
        p.per_image = false;
        p.ok = true;
        return;
      }
      p.chunks.clear();  // no fast kernel for a row of pixels: split by rows below
    }
    // Output rows split into chunks (NHWC), each its own primitive whose padding is the part of
    // the conv's padding its rows see.
    const int64_t ek = (KH - 1) * dil_[0] + 1;
    T = std::min(T, OH);
    if (wino && T > 1 && M * KH * KW > H * Wd && M >= 2 * kWinoChannelBlock) {
      // Weights larger than an image's channel plane (resnet50's 28x28 to 7x7 layers): chunks of
      // output channels over the whole image, so that each thread reads only its part of the
      // (Winograd-transformed, 16/9 or 36/9 times larger) weights; row chunks would each read all
      // of them (512 channels at 7x7, 2 threads: 2x slower than the direct conv).
      const int64_t blocks = M / kWinoChannelBlock;
      const int64_t Tc = std::min(T, blocks);
      bool ok = true;
      for (int64_t t = 0; t < Tc && ok; ++t) {
        const int64_t m0 = blocks * t / Tc * kWinoChannelBlock;
        const int64_t m1 = t + 1 == Tc ? M : blocks * (t + 1) / Tc * kWinoChannelBlock;
        ok = add_chunk(memory::desc({1, C, H, Wd}, ddt::f32, tag::nhwc),
                       memory::desc({1, m1 - m0, OH, OW}, ddt::f32, dims{OH * OW * M, 1, OW * M, M}), 0, m0, pt, pb,
                       pl, pr, m0, m1 - m0);
      }
      if (ok) {
        used_wino_ = true;
        p.ok = true;
        return;
      }
      p.chunks.clear();  // refused: row chunks
      drop_unused_weights();
    }
    // Row chunks; with small weights at least two per image, also on one thread: oneDNN picks its
    // faster 4x3 Winograd kernel for a chunk (one-sided padding), the 2x3 one for the whole image
    // (resnet50's 64 channels at 56x56, 1 thread: 2 chunks 0.78 ms, whole image 1.10, direct
    // 2.0). With large weights each chunk would read all of its (4x larger) weights: 256
    // channels at 14x14 1.40 vs 1.17 ms, 512 at 7x7 4.5-5.4 vs 1.65 ms.
    const int64_t Tw = M * KH * KW <= H * Wd ? std::min(std::max<int64_t>(T, 2), OH) : T;
    if (wino && !add_row_chunks(Tw, ek, N, H, Wd, C, M, OH, OW, pt, pb, pl, pr, add_chunk)) {
      p.chunks.clear();
      drop_unused_weights();
      wino = false;
    } else if (wino) {
      used_wino_ = true;
      p.ok = true;
      return;
    }
    if (add_row_chunks(T, ek, N, H, Wd, C, M, OH, OW, pt, pb, pl, pr, add_chunk)) p.ok = true;
  }

  // Output rows split into T chunks (NHWC; NCHW: T = 1), each its own primitive whose padding is
  // the part of the conv's padding its rows see; false when a chunk is not added.
  template <class AddChunk>
  bool add_row_chunks(int64_t T, int64_t ek, int64_t N, int64_t H, int64_t Wd, int64_t C, int64_t M, int64_t OH, int64_t OW,
                      int64_t pt, int64_t pb, int64_t pl, int64_t pr, AddChunk& add_chunk) const {
    for (int64_t t = 0; t < T; ++t) {
      const int64_t r0 = OH * t / T, r1 = OH * (t + 1) / T;
      if (r1 == r0) continue;
      int64_t lo = nhwc_ ? r0 * strides_[0] - pt : -pt, hi = nhwc_ ? (r1 - 1) * strides_[0] - pt + ek : H + pb;
      const int64_t ptc = std::max<int64_t>(0, -lo), pbc = std::max<int64_t>(0, hi - H);
      lo = std::max<int64_t>(lo, 0);
      hi = std::min<int64_t>(hi, H);
      if (hi - lo < 1) return false;  // rows entirely in the padding: leave it to the reference
      const int64_t n = nhwc_ ? 1 : N;
      if (!add_chunk(memory::desc({n, C, hi - lo, Wd}, ddt::f32, nhwc_ ? tag::nhwc : tag::nchw),
                     memory::desc({n, M, r1 - r0, OW}, ddt::f32, nhwc_ ? tag::nhwc : tag::nchw), lo * Wd * C,
                     r0 * OW * M, ptc, pbc, pl, pr))
        return false;
    }
    return true;
  }

  dnnl::primitive_attr attr() const {
    dnnl::primitive_attr a;
    a.set_scratchpad_mode(dnnl::scratchpad_mode::user);
    a.set_post_ops(onednn::conv_post_ops(act_, alpha_, beta_, has_sum_));
    return a;
  }

  // The weights in layout wd, reordered once per layout (callers hold mu_).
  // Drops the reordered weights no chunk uses (those of a Winograd plan refused part-way; callers
  // hold mu_).
  void drop_unused_weights() const {
    std::erase_if(weights_, [](const auto& e) { return std::get<2>(e).use_count() == 1; });
  }

  // m0: the weights of output channels [m0, m0 + wdims[0]) (G == 1).
  std::shared_ptr<memory> weights_for(const memory::desc& wd, const dims& wdims, int64_t G, int64_t m0) const {
    for (const auto& [desc, off, mem] : weights_)
      if (desc == wd && off == m0) return mem;
    auto mem = std::make_shared<memory>(wd, engine());
    memory::desc plain(wdims, ddt::f32, G == 1 ? tag::oihw : tag::goihw);
    memory src(plain, engine(), const_cast<float*>(W_.data<float>() + m0 * W_.dim(1) * W_.dim(2) * W_.dim(3)));
    omp_set_num_threads(1);
    dnnl::stream s(engine());
    dnnl::reorder(src, *mem).execute(s, src, *mem);
    s.wait();
    weights_.emplace_back(wd, m0, mem);
    return mem;
  }

  KernelFn ref_;
  Tensor W_, B_;
  bool has_sum_ = false, nhwc_ = false;
  int64_t group_ = 1;
  std::string auto_pad_, act_;
  std::vector<int64_t> strides_, dil_, pads_;
  float alpha_ = 0, beta_ = 0;
  mutable std::mutex mu_;
  mutable std::map<std::pair<Shape, int>, std::shared_ptr<const Plan>> plans_;
  mutable std::vector<std::tuple<memory::desc, int64_t, std::shared_ptr<memory>>> weights_;
  mutable std::atomic<bool> used_wino_{false};
};

// ---------------------------------------------------------------------------------------------
// NHWC pooling

class FastPool final : public PreparedKernel {
 public:
  struct Plan {
    bool ok = false;
    Shape y_shape;
    dnnl::pooling_forward prim;
    memory::desc src, dst, scratch_desc;
    size_t scratch = 0;
  };

  FastPool(const PrepareContext& pc, KernelFn ref) : ref_(ref) {
    const std::string op = pc.node().op_type;
    global_ = op == "GlobalAveragePool" || op == "GlobalMaxPool";
    max_ = op == "MaxPool" || op == "GlobalMaxPool";
    include_pad_ = pc.attr_i("count_include_pad", 0) != 0;
    auto_pad_ = pc.attr_s("auto_pad", "NOTSET");
    kernel_ = pc.attr_ints("kernel_shape");
    strides_ = pc.attr_ints("strides");
    pads_ = pc.attr_ints("pads");
    if (strides_.empty()) strides_ = {1, 1};
    if (pads_.empty()) pads_ = {0, 0, 0, 0};
  }

  static std::unique_ptr<PreparedKernel> prepare(const PrepareContext& pc, std::string* why) {
    if (pc.attr_s("layout", "NCHW") != "NHWC") return *why = "layout not NHWC", nullptr;
    const std::string op = pc.node().op_type;
    if (op == "MaxPool" || op == "AveragePool") {
      if (pc.attr_i("ceil_mode", 0) != 0) return *why = "ceil_mode=1", nullptr;
      for (int64_t d : pc.attr_ints("dilations"))
        if (d != 1) return *why = "dilations != 1", nullptr;
      if (pc.attr_ints("kernel_shape").size() != 2) return *why = "not 2-D", nullptr;
      if (pc.has_attr("strides") && pc.attr_ints("strides").size() != 2) return *why = "strides not 2-D", nullptr;
      if (pc.has_attr("pads") && pc.attr_ints("pads").size() != 4) return *why = "pads not 2-D", nullptr;
      for (const char* a : {"strides", "kernel_shape"})
        for (int64_t v : pc.attr_ints(a))
          if (v < 1) return *why = std::string(a) + " < 1", nullptr;
      for (int64_t v : pc.attr_ints("pads"))
        if (v < 0) return *why = "negative pads", nullptr;
    }
    const KernelDef* ref = reference_of(pc);
    if (!ref) return *why = "no reference kernel", nullptr;
    return std::make_unique<FastPool>(pc, ref->fn);
  }

  std::string name() const override { return "onednn_pool"; }

  void run(KernelContext& ctx) const override {
    const Tensor& x = ctx.input(0);
    if (x.dtype() != DType::Float32 || x.rank() != 4 || x.numel() == 0) return ref_(ctx);
    std::shared_ptr<const Plan> p = plan(x.shape());
    if (!p->ok) return ref_(ctx);
    Tensor& y = ctx.alloc_output(0, DType::Float32, p->y_shape, KernelContext::Init::Uninit);
    ThreadState& ts = thread_state();
    memory src(p->src, engine(), const_cast<void*>(x.raw()));
    memory dst(p->dst, engine(), y.raw());
    std::unordered_map<int, memory> args = {{DNNL_ARG_SRC, src}, {DNNL_ARG_DST, dst}};
    if (p->scratch) args.emplace(DNNL_ARG_SCRATCHPAD, memory(p->scratch_desc, engine(), ts.scratchpad(p->scratch)));
    omp_set_num_threads(1);  // small next to the convs; OpenMP barriers cost more than they save
    p->prim.execute(ts.stream, args);
    ts.stream.wait();
  }

 private:
  std::shared_ptr<const Plan> plan(const Shape& xs) const {
    std::lock_guard<std::mutex> lk(mu_);
    if (auto it = plans_.find(xs); it != plans_.end()) return it->second;
    auto p = std::make_shared<Plan>();
    omp_set_num_threads(1);  // it runs single-threaded (see FastConv::plan)
    try {
      build(xs, *p);
    } catch (const dnnl::error&) {
      p->ok = false;
    }
    plans_[xs] = p;
    return p;
  }

  void build(const Shape& xs, Plan& p) const {
    const int64_t N = xs[0], H = xs[1], Wd = xs[2], C = xs[3];
    int64_t KH = H, KW = Wd, SH = 1, SW = 1, pt = 0, pl = 0, pb = 0, pr = 0, OH = 1, OW = 1;
    if (!global_) {
      KH = kernel_[0], KW = kernel_[1], SH = strides_[0], SW = strides_[1];
      pt = pads_[0], pl = pads_[1], pb = pads_[2], pr = pads_[3];
      if (!spatial(auto_pad_, H, KH, SH, 1, pt, pb, OH) || !spatial(auto_pad_, Wd, KW, SW, 1, pl, pr, OW)) return;
      // A window lying entirely in the padding would give oneDNN -inf / 0-count cells.
      if (pt >= KH || pb >= KH || pl >= KW || pr >= KW) return;
    }
    p.src = memory::desc({N, C, H, Wd}, ddt::f32, tag::nhwc);
    p.dst = memory::desc({N, C, OH, OW}, ddt::f32, tag::nhwc);
    const auto alg = max_ ? dnnl::algorithm::pooling_max
                          : (include_pad_ ? dnnl::algorithm::pooling_avg_include_padding
                                          : dnnl::algorithm::pooling_avg_exclude_padding);
    dnnl::pooling_forward::desc d(dnnl::prop_kind::forward_inference, alg, p.src, p.dst, {SH, SW}, {KH, KW}, {pt, pl},
                                  {pb, pr});
    dnnl::primitive_attr attr;
    attr.set_scratchpad_mode(dnnl::scratchpad_mode::user);
    dnnl::pooling_forward::primitive_desc pd(d, attr, engine());
    if (is_reference_impl(pd.impl_info_str())) return;
    p.prim = dnnl::pooling_forward(pd);
    p.scratch_desc = pd.scratchpad_desc();
    p.scratch = p.scratch_desc.get_size();
    p.y_shape = {N, OH, OW, C};
    p.ok = true;
  }

  KernelFn ref_;
  bool global_ = false, max_ = false, include_pad_ = false;
  std::string auto_pad_;
  std::vector<int64_t> kernel_, strides_, pads_;
  mutable std::mutex mu_;
  mutable std::map<Shape, std::shared_ptr<const Plan>> plans_;
};

// ---------------------------------------------------------------------------------------------
// Transpose NCHW <-> NHWC (the layout pass's conversions): a oneDNN reorder per shape. Other
// permutations, ranks and dtypes: declined (the reference kernel, or another fast kernel).

class FastLayoutTranspose final : public PreparedKernel {
 public:
  explicit FastLayoutTranspose(bool to_nhwc, KernelFn ref) : to_nhwc_(to_nhwc), ref_(ref) {}

  static std::unique_ptr<PreparedKernel> prepare(const PrepareContext& pc, std::string* why) {
    const auto perm = pc.attr_ints("perm");
    const bool to_nhwc = perm == std::vector<int64_t>{0, 2, 3, 1}, to_nchw = perm == std::vector<int64_t>{0, 3, 1, 2};
    if (!to_nhwc && !to_nchw) return *why = "perm not NCHW<->NHWC", nullptr;
    const KernelDef* ref = reference_of(pc);
    if (!ref) return *why = "no reference kernel", nullptr;
    return std::make_unique<FastLayoutTranspose>(to_nhwc, ref->fn);
  }
  std::string name() const override { return "onednn_reorder"; }

  void run(KernelContext& ctx) const override {
    const Tensor& x = ctx.input(0);
    // float32, and the int8 CPU path's uint8/int8 tensors (cpu/fast/quant.cpp's layout pass).
    const DType dt = x.dtype();
    const bool f32 = dt == DType::Float32;
    if ((!f32 && dt != DType::UInt8 && dt != DType::Int8) || x.rank() != 4 || x.numel() == 0) return ref_(ctx);
    const Shape& s = x.shape();
    const int threads = in_parallel_region() ? 1 : num_threads();
    std::shared_ptr<const Plan> p;
    {
      std::lock_guard<std::mutex> lk(mu_);
      auto& slot = cache_[{s, threads, dt}];
      if (!slot) {
        auto np = std::make_shared<Plan>();
        try {
          build(s, threads, f32 ? ddt::f32 : dt == DType::UInt8 ? ddt::u8 : ddt::s8, *np);
        } catch (const dnnl::error&) {
          np->chunks.clear();
        }
        slot = np;
      }
      p = slot;
    }
    if (p->chunks.empty()) return ref_(ctx);
    const Shape ys = to_nhwc_ ? Shape{s[0], s[2], s[3], s[1]} : Shape{s[0], s[3], s[1], s[2]};
    Tensor& y = ctx.alloc_output(0, dt, ys, KernelContext::Init::Uninit);
    const int64_t es = f32 ? 4 : 1;  // element size
    const char* xp = static_cast<const char*>(x.raw());
    char* yp = static_cast<char*>(y.raw());
    const int64_t nc = static_cast<int64_t>(p->chunks.size()), image = x.numel() / s[0];
    auto exec = [&](int64_t i) {
      const Chunk& c = p->chunks[static_cast<size_t>(i % nc)];
      const int64_t n = i / nc;
      memory src(c.src, engine(), const_cast<char*>(xp + (n * image + c.src_off) * es));
      memory dst(c.dst, engine(), yp + (n * image + c.dst_off) * es);
      ThreadState& ts = thread_state();
      omp_set_num_threads(1);
      c.prim.execute(ts.stream, src, dst);
      ts.stream.wait();
    };
    // Split into row chunks (a copy is memory-bound; on the network input this also wakes the
    // pool's workers for the first conv, which would otherwise pay their wake-up).
    parallel_tasks(s[0] * nc, exec);
  }

 private:
  struct Chunk {
    dnnl::reorder prim;
    memory::desc src, dst;
    int64_t src_off = 0, dst_off = 0;
  };
  struct Plan {
    std::vector<Chunk> chunks;  // row chunks of one image; empty: declined
  };
  // Below this many elements per image one chunk (a few microseconds of copying).
  static constexpr int64_t kMinParallelElems = 1 << 14;

  void build(const Shape& s, int threads, ddt et, Plan& p) const {
    omp_set_num_threads(1);  // the chunks run single-threaded (see FastConv::plan)
    // Logical NCHW dims of one image; rows (H) split into chunks.
    const int64_t C = to_nhwc_ ? s[1] : s[3], H = to_nhwc_ ? s[2] : s[1], W = to_nhwc_ ? s[3] : s[2];
    const int64_t T = C * H * W >= kMinParallelElems ? std::min<int64_t>(threads, H) : 1;
    for (int64_t t = 0; t < T; ++t) {
      const int64_t h0 = H * t / T, h1 = H * (t + 1) / T, h = h1 - h0;
      if (h == 0) continue;
      const dims d{1, C, h, W};
      // The chunk's rows inside the whole image: NCHW strides of the full image, NHWC dense.
      memory::desc nchw(d, et, dims{C * H * W, H * W, W, 1}), nhwc(d, et, tag::nhwc);
      Chunk c;
      c.src = to_nhwc_ ? nchw : nhwc;
      c.dst = to_nhwc_ ? nhwc : nchw;
      const int64_t nchw_off = h0 * W, nhwc_off = h0 * W * C;
      c.src_off = to_nhwc_ ? nchw_off : nhwc_off;
      c.dst_off = to_nhwc_ ? nhwc_off : nchw_off;
      c.prim = dnnl::reorder(dnnl::reorder::primitive_desc(engine(), c.src, engine(), c.dst));
      p.chunks.push_back(std::move(c));
    }
  }

  bool to_nhwc_;
  KernelFn ref_;
  mutable std::mutex mu_;
  mutable std::map<std::tuple<Shape, int, DType>, std::shared_ptr<const Plan>> cache_;
};

}  // namespace

Tensor& sum_output(KernelContext& ctx, int zi, const Tensor& x, const Shape& shape) {
  const Tensor& z = ctx.input(zi);
  if (ctx.input_reusable(zi) && &z != &x && z.raw() != x.raw()) return ctx.reuse_input_as_output(zi, 0, shape);
  Tensor& y = ctx.alloc_output(0, DType::Float32, shape, KernelContext::Init::Uninit);
  std::memcpy(y.raw(), z.raw(), z.nbytes());
  return y;
}

void register_fast_conv(FastRegistry& r) {
  r.add({"FusedConv", kCpuDomain, "onednn_conv", FastConv::prepare});
  for (const char* op : {"MaxPool", "AveragePool", "GlobalAveragePool", "GlobalMaxPool"})
    r.add({op, kCpuDomain, "onednn_pool", FastPool::prepare});
  r.add({"Transpose", "", "onednn_reorder", FastLayoutTranspose::prepare});
}

}  // namespace opennpu::cpu
