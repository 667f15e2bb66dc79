// cpu/fast/matmul.cpp — fast MatMul, Gemm and FusedMatMul (opennpu.cpu) with a constant weight.
//
// The weight operand is re-laid-out once, at prepare, into the blocked format oneDNN's matmul
// (brgemm, AVX-512/AVX2 chosen at run time by oneDNN) prefers, so a prediction never repacks it.
// Measured on this machine (bert_base shapes [128,768]x[768,{768,2304,3072}] and [128,3072]x
// [3072,768], 1 thread, median of 30 alternating runs of the 4 shapes): OpenBLAS sgemm 87.6 ms,
// oneDNN sgemm (plain weights) 72.2 ms, oneDNN matmul with pre-packed weights 64.4 ms.
//
// Packed weights are shared: nodes whose weight is the same initializer buffer (e.g. a model whose
// layers reuse one weight through Identity) get one packed copy, keyed by the buffer's address. A
// packed copy keeps its source tensor (a shared reference, no copy) alive, so the address cannot
// be reused for other data while the entry can still be found.
//
// Threads: oneDNN's OpenMP threading is not used (its barriers degrade badly on a loaded machine,
// and set_num_threads must be honoured exactly); the rows of A are split into contiguous chunks,
// one per opennpu thread (parallel_for), each running the same primitive single-threaded.
//
// Bias and activation are fused as oneDNN post-ops (FusedMatMul: bias [N] and Relu/Gelu(erf)).
//
// Few rows (a classifier's Gemm at batch 1): when the declared row count is at most kGemvRows and
// the CPU has AVX-512, the product is a matrix-vector product that streams the weight once from
// memory. oneDNN's packed brgemm read mobilenet_v2's 1280x1000 classifier weight at about half
// the bandwidth of a plain dot-product loop over W's [N, K] rows (0.45-0.50 ms vs ONNX Runtime's
// 0.28 ms in the network), and the row split above cannot use a second thread at one row. So W is
// kept as [N, K] rows (Gemm's transB=1 weight itself, else a transposed copy, scaled by alpha) and
// the N outputs are split into contiguous ranges across threads. A run with more rows than
// kGemvRows (a dynamic batch) packs the weight for oneDNN on first use and takes the path above.
#include <dnnl.hpp>
#include <omp.h>

#include <immintrin.h>

#include <cmath>
#include <cstring>
#include <map>
#include <mutex>
#include <tuple>

#include "core/parallel.h"
#include "cpu/fast/fast.h"
#include "cpu/fast/fuse.h"
#include "cpu/fast/matmul.h"
#include "cpu/fast/onednn_util.h"

namespace opennpu::cpu {

namespace {

using dnnl::memory;
using tag = memory::format_tag;
using ddt = memory::data_type;

using onednn::engine;
using onednn::thread_state;
using onednn::ThreadState;

// One packed weight [K, N] (optionally scaled by alpha), shared by every kernel that uses it.
struct Packed {
  memory::desc desc;  // the packed layout
  memory mem;         // owns the packed buffer
  size_t bytes = 0;
  Tensor source;  // keeps the weight buffer (and so the cache key's address) alive
};

using PackKey = std::tuple<const void*, int64_t, int64_t, bool, float, int64_t>;

std::shared_ptr<const Packed> pack_weights(const Tensor& W, int64_t K, int64_t N, bool trans, float alpha,
                                           int64_t m_hint, std::string* why) {
  const float* w = W.data<float>();
  static std::mutex mu;
  static std::map<PackKey, std::weak_ptr<const Packed>> cache;
  PackKey key{w, K, N, trans, alpha, m_hint};
  std::lock_guard<std::mutex> lk(mu);
  if (auto it = cache.find(key); it != cache.end())
    if (auto p = it->second.lock()) return p;
  // Let oneDNN pick the weights layout for this shape.
  memory::desc ad({m_hint, K}, ddt::f32, tag::ab), bany({K, N}, ddt::f32, tag::any), cd({m_hint, N}, ddt::f32, tag::ab);
  dnnl::matmul::primitive_desc pd;
  try {
    pd = dnnl::matmul::primitive_desc(dnnl::matmul::desc(ad, bany, cd), engine());
  } catch (const dnnl::error& e) {
    if (why) *why = std::string("oneDNN matmul unavailable: ") + e.what();
    return nullptr;
  }
  auto p = std::make_shared<Packed>();
  p->desc = pd.weights_desc();
  p->mem = memory(p->desc, engine());
  p->bytes = p->desc.get_size();
  p->source = W;
  std::vector<float> scaled;
  const float* src = w;
  if (alpha != 1.0f) {
    scaled.resize(static_cast<size_t>(K * N));
    for (size_t i = 0; i < scaled.size(); ++i) scaled[i] = alpha * w[i];
    src = scaled.data();
  }
  // B is [K, N] row-major, or [N, K] row-major when trans (i.e. [K, N] with strides {1, K}).
  memory::desc sd({K, N}, ddt::f32, trans ? tag::ba : tag::ab);
  memory sm(sd, engine(), const_cast<float*>(src));
  omp_set_num_threads(1);
  dnnl::stream s(engine());
  dnnl::reorder(sm, p->mem).execute(s, sm, p->mem);
  s.wait();
  cache[key] = p;
  return p;
}

constexpr int64_t kGemvRows = 4;

// One output: the sum of acc's lanes, + bias[n], the activation.
__attribute__((target("avx512f"))) float gemv_finish(const __m512& acc, const float* bias, Activation act, int64_t n) {
  alignas(64) float t[16];  // (gcc 12's _mm512_reduce_add_ps warns of an uninitialized __Y)
  _mm512_store_ps(t, acc);
  for (int w = 8; w > 0; w /= 2)
    for (int i = 0; i < w; ++i) t[i] += t[i + w];
  float v = t[0];
  if (bias) v += bias[n];
  if (act == Activation::Relu) v = v > 0 ? v : 0;
  else if (act == Activation::Gelu) v = 0.5f * v * (1.0f + std::erf(v * 0.70710678118654752f));
  return v;
}

// y[r, n] = act(dot(a[r, :], wt[n, :]) + bias[n]) for n in [n0, n1), r < rows. wt is [N, K].
// Four outputs at a time share each load of a; K's tail is a masked load.
__attribute__((target("avx512f"))) void gemv_avx512(const float* a, int64_t rows, const float* wt, int64_t K,
                                                    int64_t N, const float* bias, Activation act, float* y,
                                                    int64_t n0, int64_t n1) {
  const __mmask16 tail = static_cast<__mmask16>((1u << (K % 16)) - 1);
  const int64_t kv = K - K % 16;
  for (int64_t r = 0; r < rows; ++r) {
    const float* ar = a + r * K;
    float* yr = y + r * N;
    int64_t n = n0;
    for (; n + 4 <= n1; n += 4) {
      const float* w0 = wt + n * K;
      __m512 s0 = _mm512_setzero_ps(), s1 = s0, s2 = s0, s3 = s0;
      for (int64_t k = 0; k < kv; k += 16) {
        const __m512 x = _mm512_loadu_ps(ar + k);
        s0 = _mm512_fmadd_ps(x, _mm512_loadu_ps(w0 + k), s0);
        s1 = _mm512_fmadd_ps(x, _mm512_loadu_ps(w0 + K + k), s1);
        s2 = _mm512_fmadd_ps(x, _mm512_loadu_ps(w0 + 2 * K + k), s2);
        s3 = _mm512_fmadd_ps(x, _mm512_loadu_ps(w0 + 3 * K + k), s3);
      }
      if (tail) {
        const __m512 x = _mm512_maskz_loadu_ps(tail, ar + kv);
        s0 = _mm512_fmadd_ps(x, _mm512_maskz_loadu_ps(tail, w0 + kv), s0);
        s1 = _mm512_fmadd_ps(x, _mm512_maskz_loadu_ps(tail, w0 + K + kv), s1);
        s2 = _mm512_fmadd_ps(x, _mm512_maskz_loadu_ps(tail, w0 + 2 * K + kv), s2);
        s3 = _mm512_fmadd_ps(x, _mm512_maskz_loadu_ps(tail, w0 + 3 * K + kv), s3);
      }
      yr[n] = gemv_finish(s0, bias, act, n);
      yr[n + 1] = gemv_finish(s1, bias, act, n + 1);
      yr[n + 2] = gemv_finish(s2, bias, act, n + 2);
      yr[n + 3] = gemv_finish(s3, bias, act, n + 3);
    }
    for (; n < n1; ++n) {
      const float* w = wt + n * K;
      __m512 s = _mm512_setzero_ps();
      for (int64_t k = 0; k < kv; k += 16) s = _mm512_fmadd_ps(_mm512_loadu_ps(ar + k), _mm512_loadu_ps(w + k), s);
      if (tail) s = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(tail, ar + kv), _mm512_maskz_loadu_ps(tail, w + kv), s);
      yr[n] = gemv_finish(s, bias, act, n);
    }
  }
}

}  // namespace

// ---------------------------------------------------------------------------------------------

struct PackedMatMul::Impl {
  int64_t K = 0, N = 0;
  Epilogue epi;
  std::shared_ptr<const Packed> w;  // null in gemv mode until a run has more than kGemvRows rows
  // gemv mode: W as [N, K] rows (wt_owned, or the source weight itself when it is already [N, K]
  // and unscaled); wt_source keeps the weight alive for that and for a later oneDNN packing.
  const float* wt = nullptr;
  std::vector<float> wt_owned;
  Tensor wt_source;
  bool trans = false;
  float alpha = 1.0f;
  int64_t m_hint = 0;
  std::once_flag packed_once;
  std::string pack_error;
  std::vector<float> bias;  // [N] or empty
  memory::desc bias_desc;
  struct Prim {
    dnnl::matmul prim;
    size_t scratch = 0;
  };
  mutable std::mutex mu;
  mutable std::map<int64_t, std::unique_ptr<Prim>> prims;  // per M; never erased (stable pointers)

  dnnl::primitive_attr attr() const {
    dnnl::primitive_attr a;
    a.set_scratchpad_mode(dnnl::scratchpad_mode::user);
    dnnl::post_ops po;
    if (epi.act == Activation::Relu) po.append_eltwise(1.f, dnnl::algorithm::eltwise_relu, 0.f, 0.f);
    if (epi.act == Activation::Gelu) po.append_eltwise(1.f, dnnl::algorithm::eltwise_gelu_erf, 0.f, 0.f);
    a.set_post_ops(po);
    return a;
  }
  std::unique_ptr<Prim> make(int64_t M) const {
    memory::desc ad({M, K}, ddt::f32, tag::ab), cd({M, N}, ddt::f32, tag::ab);
    auto d = bias.empty() ? dnnl::matmul::desc(ad, w->desc, cd) : dnnl::matmul::desc(ad, w->desc, bias_desc, cd);
    dnnl::matmul::primitive_desc pd(d, attr(), engine());
    auto p = std::make_unique<Prim>();
    p->prim = dnnl::matmul(pd);
    p->scratch = pd.scratchpad_desc().get_size();
    return p;
  }
  const Prim* get(int64_t M) const {
    std::lock_guard<std::mutex> lk(mu);
    auto it = prims.find(M);
    if (it != prims.end()) return it->second.get();
    auto p = make(M);
    return (prims[M] = std::move(p)).get();
  }
};

PackedMatMul::PackedMatMul() : impl_(std::make_unique<Impl>()) {}
PackedMatMul::~PackedMatMul() = default;

std::unique_ptr<PackedMatMul> PackedMatMul::create(const Tensor& W, bool trans, float alpha, const float* bias,
                                                   Epilogue epi, int64_t m_hint, std::string* why) {
  if (W.dtype() != DType::Float32 || W.rank() != 2) {
    if (why) *why = "weight is not float32 2-D";
    return nullptr;
  }
  const int64_t K = trans ? W.dim(1) : W.dim(0), N = trans ? W.dim(0) : W.dim(1);
  if (K <= 0 || N <= 0) {
    if (why) *why = "empty weight";
    return nullptr;
  }
  if (m_hint <= 0) m_hint = 128;
  auto pm = std::unique_ptr<PackedMatMul>(new PackedMatMul());
  Impl& im = *pm->impl_;
  im.K = K;
  im.N = N;
  im.epi = epi;
  if (bias) {
    im.bias.assign(bias, bias + N);
    im.bias_desc = memory::desc({1, N}, ddt::f32, tag::ab);
  }
  if (m_hint <= kGemvRows && cpu_features().avx512f) {
    im.trans = trans;
    im.alpha = alpha;
    im.m_hint = m_hint;
    const float* w = W.data<float>();
    im.wt_source = W;  // shares the buffer: the zero-copy case below and a later oneDNN packing
    if (trans && alpha == 1.0f) {
      im.wt = w;
    } else {
      im.wt_owned.resize(static_cast<size_t>(K * N));
      for (int64_t n = 0; n < N; ++n)
        for (int64_t k = 0; k < K; ++k) im.wt_owned[n * K + k] = alpha * (trans ? w[n * K + k] : w[k * N + n]);
      im.wt = im.wt_owned.data();
    }
    return pm;
  }
  im.w = pack_weights(W, K, N, trans, alpha, m_hint, why);
  if (!im.w) return nullptr;
  // The packed layout must serve every row count, not only the one it was chosen for.
  try {
    for (int64_t m : {int64_t(1), int64_t(3), int64_t(16), int64_t(33), m_hint, int64_t(1000)}) im.get(m);
  } catch (const dnnl::error& e) {
    if (why) *why = std::string("oneDNN matmul declined the packed layout: ") + e.what();
    return nullptr;
  }
  return pm;
}

size_t PackedMatMul::packed_bytes() const {
  return impl_->wt ? impl_->wt_owned.size() * sizeof(float) : impl_->w->bytes;
}
bool PackedMatMul::gemv() const { return impl_->wt != nullptr; }
int64_t PackedMatMul::K() const { return impl_->K; }
int64_t PackedMatMul::N() const { return impl_->N; }

void PackedMatMul::run(const float* a, int64_t rows, float* y) const {
  if (rows <= 0) return;
  const Impl& im = *impl_;
  const int nt = in_parallel_region() ? 1 : num_threads();
  if (im.wt && rows <= kGemvRows) {
    // Contiguous output ranges of at least 64 columns (and 256 KiB of weight) per thread.
    const int64_t chunks =
        std::max<int64_t>(1, std::min<int64_t>({nt, im.N / 64, im.N * im.K / (64 * 1024)}));
    auto range = [&](int64_t c) {
      const int64_t n0 = im.N * c / chunks / 4 * 4, n1 = c + 1 == chunks ? im.N : im.N * (c + 1) / chunks / 4 * 4;
      gemv_avx512(a, rows, im.wt, im.K, im.N, im.bias.empty() ? nullptr : im.bias.data(), im.epi.act, y, n0, n1);
    };
    if (chunks == 1) range(0);
    else parallel_tasks(chunks, range);
    return;
  }
  if (im.wt) {  // gemv mode, but this run has more rows: pack for oneDNN once
    auto& mut = const_cast<Impl&>(im);
    std::call_once(mut.packed_once, [&] {
      std::string why;
      mut.w = pack_weights(mut.wt_source, im.K, im.N, im.trans, im.alpha, 128, &why);
      if (!mut.w) mut.pack_error = why;
    });
    if (!im.w) throw Error("MatMul with " + std::to_string(rows) + " rows: " + im.pack_error);
  }
  auto chunk = [&](int64_t r0, int64_t r1) {
    const int64_t M = r1 - r0;
    const Impl::Prim* p = im.get(M);
    omp_set_num_threads(1);
    ThreadState& ts = thread_state();
    memory am({{M, im.K}, ddt::f32, tag::ab}, engine(), const_cast<float*>(a + r0 * im.K));
    memory ym({{M, im.N}, ddt::f32, tag::ab}, engine(), y + r0 * im.N);
    memory sp({{static_cast<memory::dim>(p->scratch)}, ddt::u8, tag::a}, engine(), ts.scratchpad(p->scratch + 64));
    std::unordered_map<int, memory> args{{DNNL_ARG_SRC, am}, {DNNL_ARG_WEIGHTS, im.w->mem}, {DNNL_ARG_DST, ym},
                                         {DNNL_ARG_SCRATCHPAD, sp}};
    if (!im.bias.empty())
      args.emplace(DNNL_ARG_BIAS, memory(im.bias_desc, engine(), const_cast<float*>(im.bias.data())));
    p->prim.execute(ts.stream, args);
    ts.stream.wait();
  };
  // Rows per chunk: at least 16 (a brgemm row block), and at least kMinChunkMacs multiply-adds, so
  // small problems stay on one thread (the LSTM model's 100x256x10 head took 0.04 ms on one thread,
  // 0.3 ms when split: waking a worker costs more than the work). parallel_tasks: a worker that
  // has not started is not waited for, the caller runs its chunk.
  constexpr int64_t kMinChunkMacs = int64_t(1) << 20;
  const int64_t chunks =
      std::max<int64_t>(1, std::min<int64_t>({nt, rows / 16, rows * im.K * im.N / kMinChunkMacs}));
  if (chunks == 1) { chunk(0, rows); return; }
  parallel_tasks(chunks, [&](int64_t c) { chunk(rows * c / chunks, rows * (c + 1) / chunks); });
}

// ---------------------------------------------------------------------------------------------

namespace {

// The initializer behind input i when it is a true constant (not also a graph input a feed may
// override), float32, else null.
const Tensor* float_weight(const PrepareContext& pc, size_t i) {
  const Tensor* t = pc.constant(i);
  if (!t) return nullptr;
  for (const auto& in : pc.graph().inputs)
    if (in.name == pc.node().inputs[i]) return nullptr;
  return t->dtype() == DType::Float32 ? t : nullptr;
}

// Rows hint from a declared output shape: the product of all but the last dim when known.
int64_t rows_hint(const PrepareContext& pc) {
  const ir::ValueInfo* vi = pc.output_info(0);
  if (!vi || !vi->has_shape || vi->dims.empty()) return 128;
  int64_t r = 1;
  for (size_t d = 0; d + 1 < vi->dims.size(); ++d) {
    if (!vi->dims[d].known()) return 128;
    r *= vi->dims[d].value;
  }
  return std::clamp<int64_t>(r, 1, 4096);
}

class MatMulKernel final : public PreparedKernel {
 public:
  MatMulKernel(std::unique_ptr<PackedMatMul> mm, std::string name) : mm_(std::move(mm)), name_(std::move(name)) {}
  void run(KernelContext& ctx) const override {
    const Tensor& A = ctx.input(0);
    ctx.check(A.dtype() == DType::Float32, "input A must be float32 (the weight is), got {}", dtype_name(A.dtype()));
    ctx.check(A.rank() >= 1 && A.dim(A.rank() - 1) == mm_->K(), "inner dimensions differ: A {} but the weight has K={}",
              shape_str(A.shape()), mm_->K());
    Shape out(A.shape().begin(), A.shape().end() - 1);
    out.push_back(mm_->N());
    const int64_t rows = A.rank() == 1 ? 1 : A.numel() / mm_->K();
    Tensor& Y = ctx.alloc_output(0, DType::Float32, out, KernelContext::Init::Uninit);
    mm_->run(A.data<float>(), rows, Y.data<float>());
  }
  std::string name() const override { return name_; }
  size_t state_bytes() const override { return mm_->packed_bytes(); }

 private:
  std::unique_ptr<PackedMatMul> mm_;
  std::string name_;
};

std::string isa_suffix() {
  const auto& f = cpu_features();
  return f.avx512f ? "avx512" : f.avx2 ? "avx2" : "sse";
}

// MatMul(A, W) with W a constant float32 2-D initializer.
std::unique_ptr<PreparedKernel> prepare_matmul(const PrepareContext& pc, std::string* why) {
  const Tensor* W = float_weight(pc, 1);
  if (!W) { *why = "B is not a constant float32 initializer"; return nullptr; }
  if (W->rank() != 2) { *why = "B is not 2-D"; return nullptr; }
  auto mm = PackedMatMul::create(*W, false, 1.0f, nullptr, {}, rows_hint(pc), why);
  if (!mm) return nullptr;
  std::string name = mm->gemv() ? "gemv_avx512" : "onednn_matmul_packed_" + isa_suffix();
  return std::make_unique<MatMulKernel>(std::move(mm), name);
}

// FusedMatMul(A, W, bias?) activation=""|"Relu"|"Gelu" (opennpu.cpu; see transformer.cpp).
std::unique_ptr<PreparedKernel> prepare_fused_matmul(const PrepareContext& pc, std::string* why) {
  const Tensor* W = float_weight(pc, 1);
  if (!W || W->rank() != 2) { *why = "B is not a constant float32 2-D initializer"; return nullptr; }
  const Tensor* bias = nullptr;
  if (pc.node().inputs.size() > 2 && !pc.node().inputs[2].empty()) {
    bias = float_weight(pc, 2);
    if (!bias || bias->numel() != W->dim(1)) { *why = "bias is not a constant float32 [N]"; return nullptr; }
  }
  Epilogue epi;
  const std::string act = pc.attr_s("activation", "");
  if (act == "Relu") epi.act = Activation::Relu;
  else if (act == "Gelu") epi.act = Activation::Gelu;
  else if (!act.empty()) { *why = "activation " + act; return nullptr; }
  auto mm = PackedMatMul::create(*W, false, 1.0f, bias ? bias->data<float>() : nullptr, epi, rows_hint(pc), why);
  if (!mm) return nullptr;
  std::string name = (mm->gemv() ? "gemv_avx512" : "onednn_matmul_packed_" + isa_suffix()) +
                     (act.empty() ? "" : "_" + act);
  return std::make_unique<MatMulKernel>(std::move(mm), name);
}

// Gemm(A, B, C?) with B constant, transA = 0, C absent or a constant broadcast along rows
// ([N], [1,N], [1], [1,1] or scalar). alpha is folded into the packed B, beta into the bias.
std::unique_ptr<PreparedKernel> prepare_gemm(const PrepareContext& pc, std::string* why) {
  if (pc.opset() < 11) { *why = "opset < 11"; return nullptr; }
  if (pc.attr_i("transA", 0) != 0) { *why = "transA=1"; return nullptr; }
  const Tensor* B = float_weight(pc, 1);
  if (!B || B->rank() != 2) { *why = "B is not a constant float32 2-D initializer"; return nullptr; }
  const bool tb = pc.attr_i("transB", 0) != 0;
  const int64_t N = tb ? B->dim(0) : B->dim(1);
  const float alpha = pc.attr_f("alpha", 1.0f), beta = pc.attr_f("beta", 1.0f);
  std::vector<float> bias;
  if (pc.node().inputs.size() > 2 && !pc.node().inputs[2].empty()) {
    const Tensor* C = float_weight(pc, 2);
    if (!C) { *why = "C is not a constant float32 initializer"; return nullptr; }
    const bool row = C->rank() <= 2 && (C->numel() == 1 || (C->numel() == N && C->dim(C->rank() - 1) == N));
    if (!row) { *why = "C is not broadcast along rows"; return nullptr; }
    bias.resize(static_cast<size_t>(N));
    for (int64_t j = 0; j < N; ++j) bias[j] = beta * C->data<float>()[C->numel() == 1 ? 0 : j];
  }
  auto mm = PackedMatMul::create(*B, tb, alpha, bias.empty() ? nullptr : bias.data(), {}, rows_hint(pc), why);
  if (!mm) return nullptr;
  class GemmKernel final : public PreparedKernel {
   public:
    explicit GemmKernel(std::unique_ptr<PackedMatMul> mm) : mm_(std::move(mm)) {}
    void run(KernelContext& ctx) const override {
      const Tensor& A = ctx.input(0);
      ctx.check(A.dtype() == DType::Float32, "input A must be float32, got {}", dtype_name(A.dtype()));
      ctx.check(A.rank() == 2 && A.dim(1) == mm_->K(), "A must be [M,{}], got {}", mm_->K(), shape_str(A.shape()));
      Tensor& Y = ctx.alloc_output(0, DType::Float32, {A.dim(0), mm_->N()}, KernelContext::Init::Uninit);
      mm_->run(A.data<float>(), A.dim(0), Y.data<float>());
    }
    std::string name() const override { return mm_->gemv() ? "gemv_avx512" : "onednn_gemm_packed_" + isa_suffix(); }
    size_t state_bytes() const override { return mm_->packed_bytes(); }

   private:
    std::unique_ptr<PackedMatMul> mm_;
  };
  return std::make_unique<GemmKernel>(std::move(mm));
}

}  // namespace

void register_fast_matmul(FastRegistry& r) {
  r.add({"MatMul", "", "onednn_matmul_packed", prepare_matmul});
  r.add({"Gemm", "", "onednn_gemm_packed", prepare_gemm});
  r.add({"FusedMatMul", kCpuDomain, "onednn_matmul_packed", prepare_fused_matmul});
}

}  // namespace opennpu::cpu
