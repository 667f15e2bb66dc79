// cpu/fast/rnn.cpp — fast LSTM, GRU and RNN for float32 (see fast.h).
//
// Prepared once: the gate columns of W, R, the biases and the peepholes are reordered by chunks of
// hidden units ([chunk][gate][unit of the chunk], chunks of a multiple of 16 units, at most 8 of
// them; one chunk = the ONNX order), then W and R are re-laid-out into column blocks of 16
// ([block][k][16], cpu/fast/rnn_cells.inc) so the per-step GEMM h·R^T streams them contiguously;
// R's blocks are further interleaved by groups of 8 within a chunk ([k][8 * 16]: one stream per
// 1-row tile instead of 8, Packed::group), and the biases are folded (Wb + Rb) into one vector. Per
// run and direction: the input projection of every time step is one GEMM (X·W^T + bias over
// seq*batch rows, W packed the same way), then each step runs, chunk by chunk, the packed
// recurrence GEMM for the chunk's gate columns (hand-vectorised; 1 row: 8 vector accumulators) and
// the gate arithmetic of its units with vectorised sigmoid/tanh.
//
// One thread, batch 1 (the recurrence streams all of R from L2 every step, ~1 MB for H = 256, and
// is bound by that bandwidth, with the FMA units half idle): the input projection of the steps
// [8g + 8, 8g + 16) is computed inside the recurrence tiles of steps [8g, 8g + 8), one column block
// per tile (AVX-512, gemm_grouped_fused; bit-identical to projecting up front); odd steps take the
// chunks in reverse order, so the weights read last, still in cache, are read first. models/lstm
// (2 layers, H = 256, 100 steps), 1 thread: 3.3 ms -> 3.1 (grouping) -> 2.9 ms (fusion), same runs.
// One source (rnn_cells.inc) is instantiated for AVX-512, AVX2+FMA and plain float; the best the CPU
// has is chosen at run time. The state is double-buffered ([batch, H] for steps k and k + 1), copied
// from initial_h / initial_c and into Y_h / Y_c; Y is written as the steps go.
//
// Threads: with --threads > 1, a forward or reverse LSTM, RNN or GRU with linear_before_reset (from
// kTeamMinMacs of recurrence work per batch row and step; LSTM H >= 128) runs its steps on a team
// (Team, FastRnn::run_team): each team thread computes its own share of a step's chunks (the same
// every step, so its part of R stays in its core's cache), and a share whose thread is late (kept
// off its core by another process) is taken by the others, so such a thread only slows the step
// down to one thread's speed, never stalls it. The implementation name then ends in _team<N>. Bidirectional runs its two
// directions in parallel instead (each on one thread); GRU without linear_before_reset (its second
// GEMM needs all of r ⊙ h) and small cells run on one thread.
//
// Handled: forward / reverse / bidirectional (the two directions run in parallel when there are
// threads), layout 0 and 1, sequence_lens (same semantics as the reference kernel), initial_h /
// initial_c, peepholes, clip, LSTM input_forget, GRU linear_before_reset 0 and 1, any hidden size.
// Declined at prepare (the reference kernel cpu/kernels/rnn.cpp runs): non-float32 weights, W/R/B/P
// that are not initializers, non-default activations. At run time, anything else the fast path
// does not take (non-float32 X, inconsistent shapes, out-of-range sequence_lens, empty sequence)
// is handed to the reference kernel, which also gives the error messages.
//
// Accuracy: the GEMMs are fp32 (different summation order than OpenBLAS); sigmoid and tanh use a
// Cephes-style exp (relative error ~2 ulp) and for |x| < 0.625 Cephes' tanhf polynomial: absolute
// error <= 2e-7 for both over all of float (tested against double in tests/cpu/test_fast_rnn.cpp).
#include <immintrin.h>
#include <sched.h>

#include <algorithm>
#include <atomic>
#include <cctype>
#include <chrono>
#include <cmath>
#include <condition_variable>
#include <cstring>
#include <limits>
#include <mutex>
#include <string>
#include <system_error>
#include <thread>
#include <vector>

#include "core/parallel.h"
#include "cpu/fast/fast.h"
#include "cpu/gemm.h"

namespace opennpu::cpu {

// Test hooks: which instruction set the kernels prepared from now on use (0 = the best this CPU
// has, 1 = generic, 2 = at most AVX2), so tests cover every instantiation the CPU can run; and the
// vector activations of one ISA (same codes; false when this CPU cannot run it), for their accuracy test.
void fast_rnn_force_isa(int isa);
// Test hook: fuse the input projection into one-thread batch-1 recurrences (default on; see
// gemm_grouped_fused), so tests can compare the two paths.
void fast_rnn_fuse_projection(bool on);
bool fast_rnn_activation(int isa, bool tanh, const float* x, float* out, int64_t n);
// Test hook for the multi-threaded recurrence (the team, see run_team): kernels prepared from now on
// use it from `min_macs` multiply-adds per batch row and step (< 0: the default, kTeamMinMacs); the
// leader takes over a chunk another thread claimed after `steal_after_ns` of waiting (< 0: adaptive,
// 0: at once, and helpers pause 20 us before committing a chunk as if descheduled, which makes the
// take-over path run on most steps; for tests); wait_for_helpers: the
// leader starts a job only once every helper has joined it (so tests see the helpers take part);
// any_size: teams may be larger than the hardware thread count (so tests of 3+ threads run as such
// on 2 cores).
void fast_rnn_team_tuning(int64_t min_macs, int64_t steal_after_ns, bool wait_for_helpers, bool any_size);

namespace {

// Test hook: 0 = best for this CPU, 1 = generic, 2 = at most AVX2.
std::atomic<int> g_force_isa{0};
std::atomic<bool> g_fuse_projection{true};
constexpr int64_t kNB = 16;  // packed column block width
// Rows of X whose projection a fused recurrence tile computes (see gemm_tile_fused).
constexpr int kPR = 8;
// Column blocks [next, end) of the input projection of kPR rows to compute in fused tiles: the
// rows transposed in X ([KP][kPR], KP = input size), W and bias packed as Packed; the blocks from
// `first` on go to Y as [block][row][kNB].
struct ProjQueue {
  const float* X = nullptr;
  int64_t KP = 0;
  const float* W = nullptr;
  const float* bias = nullptr;
  float* Y = nullptr;
  int64_t first = 0, next = 0, end = 0;
};
// The team pays off from about this much recurrence work per batch row and step (LSTM H=128: 64K).
constexpr int64_t kTeamMinMacs = int64_t(1) << 16;
std::atomic<int64_t> g_team_min_macs{-1}, g_steal_after_ns{-1};
std::atomic<bool> g_wait_for_helpers{false}, g_team_any_size{false};

// ---- the generic (plain float) instantiation ---------------------------------------------------
namespace generic {
struct V {
  using T = float;
  static constexpr int W = 1, NB1 = 1, NBM = 1, MR = 3;  // vector width; GEMM tile shapes
  static T zero() { return 0.0f; }
  static T set1(float v) { return v; }
  static T load(const float* p) { return *p; }
  static void store(float* p, T v) { *p = v; }
  static T load_n(const float* p, int64_t) { return *p; }
  static void store_n(float* p, int64_t, T v) { *p = v; }
  static T add(T a, T b) { return a + b; }
  static T sub(T a, T b) { return a - b; }
  static T mul(T a, T b) { return a * b; }
  static T fmadd(T a, T b, T c) { return a * b + c; }
  static T min(T a, T b) { return a < b ? a : b; }
  static T max(T a, T b) { return a > b ? a : b; }
  static T sigmoid(T x) {
    if (x >= 0) return 1.0f / (1.0f + std::exp(-x));
    const float e = std::exp(x);
    return e / (1.0f + e);
  }
  static T tanh(T x) { return std::tanh(x); }
};
#include "cpu/fast/rnn_cells.inc"
}  // namespace generic

// ---- the AVX2 + FMA instantiation ----------------------------------------------------------------
#ifdef __clang__  // clang ignores GCC's target pragma; this is its equivalent
#pragma clang attribute push(__attribute__((target("avx2,fma"))), apply_to = function)
#else
#pragma GCC push_options
#pragma GCC target("avx2,fma")
#endif
namespace avx2 {
struct V {
  using T = __m256;
  static constexpr int W = 8, NB1 = 4, NBM = 2, MR = 3;
  static T zero() { return _mm256_setzero_ps(); }
  static T set1(float v) { return _mm256_set1_ps(v); }
  static T load(const float* p) { return _mm256_loadu_ps(p); }
  static void store(float* p, T v) { _mm256_storeu_ps(p, v); }
  static __m256i mask(int64_t n) {
    return _mm256_cmpgt_epi32(_mm256_set1_epi32(static_cast<int>(n)), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
  }
  static T load_n(const float* p, int64_t n) { return n == 8 ? _mm256_loadu_ps(p) : _mm256_maskload_ps(p, mask(n)); }
  static void store_n(float* p, int64_t n, T v) {
    if (n == 8) _mm256_storeu_ps(p, v);
    else _mm256_maskstore_ps(p, mask(n), v);
  }
  static T add(T a, T b) { return _mm256_add_ps(a, b); }
  static T sub(T a, T b) { return _mm256_sub_ps(a, b); }
  static T mul(T a, T b) { return _mm256_mul_ps(a, b); }
  static T fmadd(T a, T b, T c) { return _mm256_fmadd_ps(a, b, c); }
  static T min(T a, T b) { return _mm256_min_ps(a, b); }
  static T max(T a, T b) { return _mm256_max_ps(a, b); }
  // e^x, Cephes expf: range reduction x = n ln2 + r, degree-5 polynomial on r, 2^n via exponent
  // bits. Inputs are clamped to [-88.376, 88.376]; at the top 2^n overflows to +inf, which the
  // callers turn into the right limits (sigmoid 0, tanh's argument is clamped lower).
  static T exp(T x) {
    x = _mm256_min_ps(_mm256_max_ps(x, _mm256_set1_ps(-88.3762626647949f)), _mm256_set1_ps(88.3762626647949f));
    T fx = _mm256_floor_ps(_mm256_fmadd_ps(x, _mm256_set1_ps(1.44269504088896341f), _mm256_set1_ps(0.5f)));
    x = _mm256_fnmadd_ps(fx, _mm256_set1_ps(0.693359375f), x);
    x = _mm256_fnmadd_ps(fx, _mm256_set1_ps(-2.12194440e-4f), x);
    T y = _mm256_set1_ps(1.9875691500e-4f);
    y = _mm256_fmadd_ps(y, x, _mm256_set1_ps(1.3981999507e-3f));
    y = _mm256_fmadd_ps(y, x, _mm256_set1_ps(8.3334519073e-3f));
    y = _mm256_fmadd_ps(y, x, _mm256_set1_ps(4.1665795894e-2f));
    y = _mm256_fmadd_ps(y, x, _mm256_set1_ps(1.6666665459e-1f));
    y = _mm256_fmadd_ps(y, x, _mm256_set1_ps(5.0000001201e-1f));
    y = _mm256_fmadd_ps(y, _mm256_mul_ps(x, x), _mm256_add_ps(x, _mm256_set1_ps(1.0f)));
    __m256i e = _mm256_add_epi32(_mm256_cvttps_epi32(fx), _mm256_set1_epi32(127));
    return _mm256_mul_ps(y, _mm256_castsi256_ps(_mm256_slli_epi32(e, 23)));
  }
  static T sigmoid(T x) {  // 1 / (1 + e^-x)
    const T one = _mm256_set1_ps(1.0f);
    return _mm256_div_ps(one, _mm256_add_ps(one, exp(_mm256_sub_ps(_mm256_setzero_ps(), x))));
  }
  // tanh: |x| < 0.625: Cephes tanhf odd polynomial (keeps relative accuracy near 0); otherwise
  // sign(x) (1 - 2 / (e^{2|x|} + 1)) with 2|x| clamped to 40 (tanh is 1 in float long before).
  static T tanh(T x) {
    const T sign = _mm256_set1_ps(-0.0f);
    const T ax = _mm256_andnot_ps(sign, x);
    const T one = _mm256_set1_ps(1.0f);
    const T e = exp(_mm256_min_ps(_mm256_add_ps(ax, ax), _mm256_set1_ps(40.0f)));
    T big = _mm256_sub_ps(one, _mm256_div_ps(_mm256_set1_ps(2.0f), _mm256_add_ps(e, one)));
    big = _mm256_or_ps(big, _mm256_and_ps(sign, x));
    const T z = _mm256_mul_ps(x, x);
    T p = _mm256_set1_ps(-5.70498872745e-3f);
    p = _mm256_fmadd_ps(p, z, _mm256_set1_ps(2.06390887954e-2f));
    p = _mm256_fmadd_ps(p, z, _mm256_set1_ps(-5.37397155531e-2f));
    p = _mm256_fmadd_ps(p, z, _mm256_set1_ps(1.33314422036e-1f));
    p = _mm256_fmadd_ps(p, z, _mm256_set1_ps(-3.33332819422e-1f));
    const T small = _mm256_fmadd_ps(_mm256_mul_ps(p, z), x, x);
    return _mm256_blendv_ps(small, big, _mm256_cmp_ps(ax, _mm256_set1_ps(0.625f), _CMP_GE_OQ));
  }
};
#include "cpu/fast/rnn_cells.inc"
}  // namespace avx2
#ifdef __clang__
#pragma clang attribute pop
#else
#pragma GCC pop_options
#endif

// ---- the AVX-512 instantiation (same algorithms, 16 floats per vector) ----------------------------
#ifdef __clang__
#pragma clang attribute push(__attribute__((target("avx512f,avx2,fma"))), apply_to = function)
#else
#pragma GCC push_options
#pragma GCC target("avx512f,avx2,fma")
#endif
namespace avx512 {
struct V {
  using T = __m512;
  static constexpr int W = 16, NB1 = 8, NBM = 4, MR = 6;
  static T zero() { return _mm512_setzero_ps(); }
  static T set1(float v) { return _mm512_set1_ps(v); }
  static T load(const float* p) { return _mm512_loadu_ps(p); }
  static void store(float* p, T v) { _mm512_storeu_ps(p, v); }
  static __mmask16 mask(int64_t n) { return static_cast<__mmask16>((1u << n) - 1u); }
  static T load_n(const float* p, int64_t n) { return n == 16 ? _mm512_loadu_ps(p) : _mm512_maskz_loadu_ps(mask(n), p); }
  static void store_n(float* p, int64_t n, T v) {
    if (n == 16) _mm512_storeu_ps(p, v);
    else _mm512_mask_storeu_ps(p, mask(n), v);
  }
  static T add(T a, T b) { return _mm512_add_ps(a, b); }
  static T sub(T a, T b) { return _mm512_sub_ps(a, b); }
  static T mul(T a, T b) { return _mm512_mul_ps(a, b); }
  static T fmadd(T a, T b, T c) { return _mm512_fmadd_ps(a, b, c); }
  static T min(T a, T b) { return _mm512_min_ps(a, b); }
  static T max(T a, T b) { return _mm512_max_ps(a, b); }
  static T exp(T x) {  // as avx2::V::exp
    x = _mm512_min_ps(_mm512_max_ps(x, _mm512_set1_ps(-88.3762626647949f)), _mm512_set1_ps(88.3762626647949f));
    T fx = _mm512_roundscale_ps(_mm512_fmadd_ps(x, _mm512_set1_ps(1.44269504088896341f), _mm512_set1_ps(0.5f)),
                                _MM_FROUND_TO_NEG_INF | _MM_FROUND_NO_EXC);
    x = _mm512_fnmadd_ps(fx, _mm512_set1_ps(0.693359375f), x);
    x = _mm512_fnmadd_ps(fx, _mm512_set1_ps(-2.12194440e-4f), x);
    T y = _mm512_set1_ps(1.9875691500e-4f);
    y = _mm512_fmadd_ps(y, x, _mm512_set1_ps(1.3981999507e-3f));
    y = _mm512_fmadd_ps(y, x, _mm512_set1_ps(8.3334519073e-3f));
    y = _mm512_fmadd_ps(y, x, _mm512_set1_ps(4.1665795894e-2f));
    y = _mm512_fmadd_ps(y, x, _mm512_set1_ps(1.6666665459e-1f));
    y = _mm512_fmadd_ps(y, x, _mm512_set1_ps(5.0000001201e-1f));
    y = _mm512_fmadd_ps(y, _mm512_mul_ps(x, x), _mm512_add_ps(x, _mm512_set1_ps(1.0f)));
    __m512i e = _mm512_add_epi32(_mm512_cvttps_epi32(fx), _mm512_set1_epi32(127));
    return _mm512_mul_ps(y, _mm512_castsi512_ps(_mm512_slli_epi32(e, 23)));
  }
  static T sigmoid(T x) {
    const T one = _mm512_set1_ps(1.0f);
    return _mm512_div_ps(one, _mm512_add_ps(one, exp(_mm512_sub_ps(_mm512_setzero_ps(), x))));
  }
  static T tanh(T x) {  // as avx2::V::tanh
    const __m512i sign = _mm512_set1_epi32(static_cast<int>(0x80000000u));
    const __m512i xi = _mm512_castps_si512(x);
    const T ax = _mm512_castsi512_ps(_mm512_andnot_si512(sign, xi));
    const T one = _mm512_set1_ps(1.0f);
    const T e = exp(_mm512_min_ps(_mm512_add_ps(ax, ax), _mm512_set1_ps(40.0f)));
    T big = _mm512_sub_ps(one, _mm512_div_ps(_mm512_set1_ps(2.0f), _mm512_add_ps(e, one)));
    big = _mm512_castsi512_ps(_mm512_or_si512(_mm512_castps_si512(big), _mm512_and_si512(sign, xi)));
    const T z = _mm512_mul_ps(x, x);
    T p = _mm512_set1_ps(-5.70498872745e-3f);
    p = _mm512_fmadd_ps(p, z, _mm512_set1_ps(2.06390887954e-2f));
    p = _mm512_fmadd_ps(p, z, _mm512_set1_ps(-5.37397155531e-2f));
    p = _mm512_fmadd_ps(p, z, _mm512_set1_ps(1.33314422036e-1f));
    p = _mm512_fmadd_ps(p, z, _mm512_set1_ps(-3.33332819422e-1f));
    const T small = _mm512_fmadd_ps(_mm512_mul_ps(p, z), x, x);
    return _mm512_mask_blend_ps(_mm512_cmp_ps_mask(ax, _mm512_set1_ps(0.625f), _CMP_GE_OQ), small, big);
  }
};
#define OPENNPU_RNN_FUSED
#include "cpu/fast/rnn_cells.inc"
#undef OPENNPU_RNN_FUSED
}  // namespace avx512
#ifdef __clang__
#pragma clang attribute pop
#else
#pragma GCC pop_options
#endif

// The inner loops of one ISA.
struct Ops {
  const char* isa;
  void (*gemm)(const float*, int64_t, int64_t, int64_t, const float*, const float*, int64_t, int64_t, float*, int64_t);
  void (*lstm)(const float*, const float*, const float*, float*, float*, float*, int64_t, float, bool);
  void (*gru_lbr)(const float*, const float*, const float*, float*, float*, int64_t, float);
  void (*gru_reset)(const float*, const float*, const float*, float*, int64_t, float);
  void (*gru_update)(const float*, const float*, const float*, float*, float*, int64_t, float);
  void (*rnn)(const float*, const float*, float*, float*, int64_t, float);
  void (*gemm_grouped)(const float*, int64_t, int64_t, int64_t, const float*, int64_t, float*, int64_t);
  int64_t nb1;  // blocks per group of the recurrence weights (Packed::group)
  // gemm_grouped for one row with projection blocks fused in (gemm_grouped_fused); null: not offered.
  void (*gemm_grouped_fused)(const float*, int64_t, const float*, int64_t, float*, ProjQueue&);
};
const Ops kGeneric{"generic", generic::gemm_packed, generic::lstm_row, generic::gru_lbr_row, generic::gru_reset_row,
                   generic::gru_update_row, generic::rnn_row, generic::gemm_grouped, generic::V::NB1, nullptr};
const Ops kAvx2{"avx2", avx2::gemm_packed, avx2::lstm_row, avx2::gru_lbr_row, avx2::gru_reset_row,
                avx2::gru_update_row, avx2::rnn_row, avx2::gemm_grouped, avx2::V::NB1, nullptr};
const Ops kAvx512{"avx512", avx512::gemm_packed, avx512::lstm_row, avx512::gru_lbr_row, avx512::gru_reset_row,
                  avx512::gru_update_row, avx512::rnn_row, avx512::gemm_grouped, avx512::V::NB1, avx512::gemm_grouped_fused};

const Ops& pick_ops() {
  const auto& f = cpu_features();
  const int force = g_force_isa;
  if (force == 0 && f.avx512f && f.avx2 && f.fma) return kAvx512;
  if (force != 1 && f.avx2 && f.fma) return kAvx2;
  return kGeneric;
}

enum class Cell { RNN, GRU, LSTM };

// Wt [N, K] row-major (rows = output columns) packed as [ceil(N/16)][K][16], zero-padded.
struct Packed {
  int64_t N = 0, K = 0, nblk = 0;
  std::vector<float> data;
  Packed() = default;
  Packed(const float* Wt, int64_t n, int64_t k) : N(n), K(k), nblk((n + kNB - 1) / kNB) {
    data.assign(static_cast<size_t>(nblk * K * kNB), 0.0f);
    for (int64_t r = 0; r < N; ++r)
      for (int64_t kk = 0; kk < K; ++kk) data[static_cast<size_t>(((r / kNB) * K + kk) * kNB + r % kNB)] = Wt[r * K + kk];
  }
  int64_t width() const { return nblk * kNB; }
  // Re-lays the whole groups of G blocks in [b0, b1) as [k][G * kNB] (see gemm_grouped); a
  // group takes the same place as its blocks did.
  void group(int64_t b0, int64_t b1, int64_t G) {
    std::vector<float> tmp(static_cast<size_t>(G * K * kNB));
    for (int64_t b = b0; b + G <= b1; b += G) {
      float* g = data.data() + b * K * kNB;
      for (int64_t j = 0; j < G; ++j)
        for (int64_t k = 0; k < K; ++k) std::copy_n(g + (j * K + k) * kNB, kNB, tmp.data() + (k * G + j) * kNB);
      std::copy(tmp.begin(), tmp.end(), g);
    }
  }
};

struct Direction {
  Packed W;                  // input weights [G*H, input], for the input projection
  Packed R;                  // LSTM 4H, GRU lbr 3H, GRU (no lbr) z,r = 2H, RNN H columns
  Packed Rh;                 // GRU without linear_before_reset: the h rows of R
  std::vector<float> bias;   // [W.width()] added to the input projection (Wb + Rb, except GRU lbr's Rb_h)
  std::vector<float> rbh;    // GRU lbr: Rb_h [H]
  std::vector<float> P;      // LSTM peepholes [3H] (zeros when absent)
};

// Scratch of one direction's run, kept per thread so steady-state runs do not allocate: the input
// projection and the double-buffered state (shared by the team's threads, owned by the caller).
struct Scratch {
  std::vector<float> xw, hb, cb;
  std::vector<float> xt;  // fused projection: X's rows of each whole group of kPR steps, transposed
};
Scratch& scratch(int64_t d) {
  thread_local Scratch s[2];
  return s[d];
}
// Private buffers of the thread computing a chunk (each team thread has its own).
struct ChunkScratch {
  std::vector<float> g, h, c, g2, rh;
  // Fused projection: blocks [pj_first, pj_first + pj_n) of rows [pj_r0, pj_r0 + kPR) computed
  // with this chunk ([block][row][kNB]), copied into the projection when the chunk is committed.
  std::vector<float> pj;
  const float* pj_at = nullptr;  // the aligned start in pj
  int64_t pj_first = 0, pj_n = 0, pj_r0 = 0;
  // Team runs: this thread's copy of the step's h (read once per step, not per chunk), valid for
  // step id `hs_id` (step ids are unique per process; 0 = none); `id` is the step being computed.
  std::vector<float> hs;
  uint64_t hs_id = 0, id = 0;
};
// Relaxed atomic copies of the team's shared state (plain moves on x86): a thread whose chunk was
// taken over may still read step k's state while others write step k + 2's into the same buffer,
// and its result is dropped; atomic accesses keep that a well-defined (and ThreadSanitizer-clean)
// race.
void load_relaxed(const float* src, float* dst, int64_t n) {
  for (int64_t i = 0; i < n; ++i) dst[i] = std::atomic_ref<float>(const_cast<float&>(src[i])).load(std::memory_order_relaxed);
}
void store_relaxed(const float* src, float* dst, int64_t n) {
  for (int64_t i = 0; i < n; ++i) std::atomic_ref<float>(dst[i]).store(src[i], std::memory_order_relaxed);
}
ChunkScratch& chunk_scratch() {
  thread_local ChunkScratch s;
  return s;
}
float* grow(std::vector<float>& v, int64_t n) {
  if (v.size() < static_cast<size_t>(n)) v.resize(static_cast<size_t>(n));
  return v.data();
}
// Like grow, 64-byte aligned (so chunk slices that start at multiples of 16 floats share no cache line).
float* grow_aligned(std::vector<float>& v, int64_t n) {
  float* p = grow(v, n + 16);
  return p + ((64 - reinterpret_cast<uintptr_t>(p) % 64) % 64) / sizeof(float);
}

std::string lower(std::string s) {
  for (auto& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

// Waiting in the team: pause-spin for about `spin` checks, then sched_yield() so a descheduled
// partner (or another process) gets the core.
template <class P>
void wait_until(P pred, int spin = 2048) {
  for (int i = 0; !pred(); ++i) {
    if (i < spin) _mm_pause();
    else sched_yield();
  }
}
int64_t now_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

// ---- the recurrence team -------------------------------------------------------------------------
// A job: `steps` steps of `nchunk` chunks each; step k of a chunk is computed (into the thread's
// private buffers, from the shared state of step k only) and then committed (copied into the state
// of step k + 1). Optionally first a step -1 of `pre_chunks` chunks (the input projection). See
// FastRnn::run_team for the protocol's rationale.
struct TeamJob {
  int64_t nchunk = 1, steps = 0, pre_chunks = 0;
  int nt = 2;                   // team threads, the leader included
  int64_t steal_after_ns = -1;  // < 0: adaptive
  bool wait_for_helpers = false;  // test hook: start once every helper has joined
  virtual void compute(int64_t c, int64_t k, ChunkScratch& pv) const = 0;
  virtual void commit(int64_t c, int64_t k, const ChunkScratch& pv) const = 0;
  virtual ~TeamJob() = default;
};

// The helpers of the recurrence team: threads of their own (not the parallel_for pool, whose
// regions end only when every worker has run: a worker another process keeps off the CPU would hold
// the end of every LSTM). They sleep while no job runs, so with --threads N at most N threads
// compute: the leader (the caller) plus N - 1 helpers, and only during a job. A helper that the
// scheduler runs late finds the job gone and goes back to sleep; a job's memory is touched only
// under `in_flight_`, which the leader waits on before returning.
class Team {
 public:
  static constexpr int64_t kMaxChunks = 8;
  static Team& get() {
    static Team t;
    return t;
  }
  // Runs the job with the caller as leader; false (nothing done) when another run holds the team.
  bool run(const TeamJob& job) {
    std::unique_lock<std::mutex> one(run_mu_, std::try_to_lock);
    if (!one.owns_lock() || job.nchunk > kMaxChunks) return false;
    if (job.pre_chunks > kMaxChunks) return false;
    const bool test_mode = job.steal_after_ns >= 0 || job.wait_for_helpers;
    if (cooldown_ > 0 && !test_mode) {  // the last team run went badly: one thread for a while
      --cooldown_;
      return false;
    }
    park_workers();  // pool workers still spinning after the last layer would take the helpers' cores
    takeovers_.store(0, std::memory_order_relaxed);
    const uint64_t base = next_id_;  // step k has id base + 2 + k
    next_id_ += static_cast<uint64_t>(job.steps) + 2;
    {
      std::lock_guard<std::mutex> lk(mu_);
      try {
        while (static_cast<int>(threads_.size()) < job.nt - 1) {
          const int id = static_cast<int>(threads_.size()) + 1;
          threads_.emplace_back([this, id] { helper(id); });
        }
      } catch (const std::system_error&) {
        return false;  // no more threads: this run on one thread
      }
      job_ = &job;
      base_ = base;
      step_.v.store(base + (job.pre_chunks ? 1 : 2), std::memory_order_relaxed);
      joined_.store(0, std::memory_order_relaxed);
      gen_.fetch_add(1, std::memory_order_seq_cst);  // before active_: a helper that sees this job active sees its generation
      active_.store(true, std::memory_order_seq_cst);
    }
    cv_.notify_all();
    if (job.wait_for_helpers) wait_until([&] { return joined_.load(std::memory_order_acquire) >= job.nt - 1; });
    work(job, base, 0, [] { return true; }, [] {});
    active_.store(false, std::memory_order_seq_cst);
    // A helper inside the job (at most one chunk's work, unless it was descheduled) finishes first.
    const int64_t t_end = now_ns();
    for (int i = 0;; ++i) {
      const int v = in_flight_.v.load(std::memory_order_seq_cst);
      if (v == 0) break;
      if (i < 2048) _mm_pause();
      else in_flight_.v.wait(v);  // sleeping lets the scheduler run a descheduled helper here
    }
    // When other processes keep a helper off its core, the team costs take-overs and a wait here
    // (a helper descheduled inside a chunk runs again only when the scheduler lets it), and one
    // thread would have been faster: the next runs use one thread, for twice as many runs each
    // time this repeats (up to 64), until a team run goes well.
    if (takeovers_.load(std::memory_order_relaxed) > 2 || now_ns() - t_end > 200000) {
      cooldown_ = backoff_;
      backoff_ = std::min(backoff_ * 2, 64);
    } else {
      backoff_ = 1;
    }
    return true;
  }
  ~Team() {
    {
      std::lock_guard<std::mutex> lk(mu_);
      stop_ = true;
      gen_.fetch_add(1);
    }
    cv_.notify_all();
    for (auto& t : threads_) t.join();
  }

 private:
  struct alignas(64) Slot {  // a chunk's claim state: id * 4 + phase (1 claimed, 2 committing or taken over, 3 done)
    std::atomic<uint64_t> st{0};
  };
  struct alignas(64) Counter {
    std::atomic<uint64_t> v{0};
  };
  struct alignas(64) Flight {
    std::atomic<int> v{0};
  };

  bool claim(int64_t c, uint64_t id) {
    uint64_t v = slots_[c].st.load(std::memory_order_relaxed);
    return v < id * 4 && slots_[c].st.compare_exchange_strong(v, id * 4 + 1, std::memory_order_acq_rel);
  }

  // One team thread's part of a job (p = 0: the leader, the caller; every thread runs the same
  // protocol, so the steps go on as long as any team thread is running). Per step: claim chunks
  // (from this thread's own start), compute each privately and commit it unless another thread took
  // it over meanwhile; then wait for the step's other chunks, taking over one whose thread has not
  // finished it after a few of this thread's chunk-times (that thread was descheduled: its late
  // commit is refused and its result dropped), and publish the next step (whoever sees the step
  // complete first). enter() / leave() bracket every use of the job's memory (helpers count
  // themselves in in_flight_; enter() is false once the job is over). Returns when the last step is
  // done (or, for a helper, the job is over).
  template <class Enter, class Leave>
  void work(const TeamJob& job, uint64_t base, int p, Enter enter, Leave leave) {
    ChunkScratch& pv = chunk_scratch();
    uint64_t last = 0;  // id of the last step (job memory is read under enter())
    int nt = 0;
    int64_t chunk_ns = 0;  // this thread's recent time per chunk
    // Computes chunk c of step `id` and commits it unless it was taken over (`taken`: this thread
    // took it over, it is ours to commit). False when it was taken over: this thread is behind.
    auto run_chunk = [&](int64_t c, uint64_t id, bool taken) {
      const int64_t k = static_cast<int64_t>(id - base) - 2;
      pv.id = id;
      job.compute(c, k, pv);
      if (job.steal_after_ns == 0 && p > 0 && !taken) {  // test hook: a helper "descheduled" mid-chunk
        const int64_t t = now_ns();
        while (now_ns() - t < 20000) _mm_pause();
      }
      std::atomic<uint64_t>& st = slots_[c].st;
      uint64_t expect = id * 4 + 1;
      if (!taken && !st.compare_exchange_strong(expect, id * 4 + 2, std::memory_order_acq_rel)) return false;
      job.commit(c, k, pv);
      st.store(id * 4 + 3, std::memory_order_release);
      return true;
    };
    for (;;) {
      if (!enter()) return;
      nt = job.nt;
      last = base + 1 + static_cast<uint64_t>(job.steps);
      const uint64_t id = step_.v.load(std::memory_order_acquire);
      if (id > last) {
        leave();
        return;
      }
      const int64_t k = static_cast<int64_t>(id - base) - 2;
      const int64_t n = k < 0 ? job.pre_chunks : job.nchunk;
      // This thread's own chunks first: [start, end) (the same every step, so each core keeps its
      // part of the weights in its own cache: with the chunks split by whoever came first, ~11%
      // of them ran on the other core and the LSTM model took 1.93-1.98 ms at 2 threads instead of
      // 1.67). Another thread's chunk is taken only when that thread is late (below).
      const int64_t start = p * n / nt, end = (p + 1) * n / nt, steal = job.steal_after_ns;
      const int64_t t0 = now_ns();
      int64_t mine = 0;
      bool behind = false;
      for (int64_t c = start; c < end && !behind; ++c) {
        if (!claim(c, id)) continue;
        ++mine;
        behind = !run_chunk(c, id, false);
      }
      if (mine) {
        const int64_t dt = (now_ns() - t0) / mine;
        chunk_ns = chunk_ns && k != 0 ? (3 * chunk_ns + dt) / 4 : dt;  // (step -1's chunks are larger)
      }
      leave();
      const int64_t patience = steal >= 0 ? steal : 3 * chunk_ns + 2000;
      for (int64_t c = 0; c < n && !behind; ++c) {
        std::atomic<uint64_t>& st = slots_[c].st;
        int64_t tw = -1;
        wait_until([&] {
          const uint64_t v = st.load(std::memory_order_acquire);
          if (v >= id * 4 + 3) return true;  // done (or a later step's: behind)
          if (step_.v.load(std::memory_order_acquire) != id) return behind = true;
          if (v < id * 4) {  // unclaimed: another thread's chunk (at once while not every helper
                             // has joined the job, e.g. waking up; else once its thread is late)
            const bool joined = joined_.load(std::memory_order_acquire) >= nt - 1;
            if (tw < 0) tw = now_ns();
            if (!joined || now_ns() - tw >= patience) {
              if (!enter()) return behind = true;  // the job is over
              if (claim(c, id)) run_chunk(c, id, false);
              leave();
            }
          } else if (v == id * 4 + 1) {  // claimed, not done: take it over once its thread is late
            if (tw < 0) tw = now_ns();
            else if (now_ns() - tw >= patience) {
              if (!enter()) return behind = true;
              uint64_t expect = id * 4 + 1;
              if (st.compare_exchange_strong(expect, id * 4 + 2, std::memory_order_acq_rel)) {
                takeovers_.fetch_add(1, std::memory_order_relaxed);
                run_chunk(c, id, true);
              }
              leave();
            }
          }
          return false;
        });
      }
      if (!behind) {
        uint64_t expect = id;
        step_.v.compare_exchange_strong(expect, id + 1, std::memory_order_acq_rel);
      }
    }
  }

  void helper(int p) {
    uint64_t seen_gen = 0;
    for (;;) {
      const TeamJob* job;
      uint64_t base;
      {
        std::unique_lock<std::mutex> lk(mu_);
        cv_.wait(lk, [&] { return stop_ || gen_.load() != seen_gen; });
        if (stop_) return;
        seen_gen = gen_.load();
        job = job_;  // valid while that generation's job is active (checked under in_flight_ below)
        base = base_;
      }
      bool joined = false;
      auto enter = [&] {
        // The job cannot end (and its memory stays valid) while in_flight_ counts this thread.
        in_flight_.v.fetch_add(1, std::memory_order_seq_cst);
        if (active_.load(std::memory_order_seq_cst) && gen_.load(std::memory_order_seq_cst) == seen_gen &&
            p < job->nt) {
          if (!joined) {
            joined = true;
            joined_.fetch_add(1, std::memory_order_release);
          }
          return true;
        }
        leave_job();
        return false;
      };
      work(*job, base, p, enter, [&] { leave_job(); });
    }
  }
  void leave_job() {
    if (in_flight_.v.fetch_sub(1, std::memory_order_seq_cst) == 1 && !active_.load(std::memory_order_seq_cst))
      in_flight_.v.notify_all();
  }

  std::mutex run_mu_, mu_;
  std::condition_variable cv_;
  std::vector<std::thread> threads_;
  std::atomic<uint64_t> gen_{0};  // job generation (written under mu_)
  bool stop_ = false;
  const TeamJob* job_ = nullptr;  // under mu_
  uint64_t base_ = 0;             // under mu_: the job's step ids are base_ + 1 ... base_ + steps
  uint64_t next_id_ = 1;          // under run_mu_
  Slot slots_[kMaxChunks];
  Counter step_;  // the id of the step being computed
  Flight in_flight_;
  std::atomic<bool> active_{false};
  std::atomic<int> joined_{0};  // helpers that have entered the current job
  std::atomic<int> takeovers_{0};
  int cooldown_ = 0, backoff_ = 1;  // under run_mu_: runs left on one thread, the next cool-down
};

class FastRnn final : public PreparedKernel {
 public:
  FastRnn(Cell cell, KernelFn ref) : cell_(cell), ref_(ref), ops_(&pick_ops()) {}

  // "_team<N>" when the recurrence runs on a team of N threads at the current thread setting
  // (forward or reverse, enough work per step; see run_team); otherwise one thread per direction.
  std::string name() const override {
    const char* c = cell_ == Cell::LSTM ? "lstm" : cell_ == Cell::GRU ? "gru" : "rnn";
    std::string n = std::string("fast_") + c + "_" + ops_->isa;
    if (const int p = team_size(); p > 1) n += "_team" + std::to_string(p);
    return n;
  }
  size_t state_bytes() const override {
    size_t n = 0;
    for (const auto& d : dirs_) n += d.W.data.size() + d.R.data.size() + d.Rh.data.size() + d.bias.size() + d.rbh.size() + d.P.size();
    return n * sizeof(float);
  }

  // Returns an empty string when prepared, else why not.
  std::string prepare(const PrepareContext& pc) {
    const ir::Node& n = pc.node();
    gates_ = cell_ == Cell::RNN ? 1 : cell_ == Cell::GRU ? 3 : 4;
    const std::string dir = pc.attr_s("direction", "forward");
    if (dir != "forward" && dir != "reverse" && dir != "bidirectional") return "unknown direction";
    ndir_ = dir == "bidirectional" ? 2 : 1;
    reverse_only_ = dir == "reverse";
    const int64_t layout = pc.attr_i("layout", 0);
    if (layout != 0 && layout != 1) return "layout not 0/1";
    if (layout == 1 && pc.opset() < 14) return "layout before opset 14";
    batch_major_ = layout == 1;
    if (n.has_attr("activation_alpha") || n.has_attr("activation_beta")) return "activation parameters";
    if (n.has_attr("activations")) {
      std::vector<std::string> want = cell_ == Cell::RNN   ? std::vector<std::string>{"tanh"}
                                      : cell_ == Cell::GRU ? std::vector<std::string>{"sigmoid", "tanh"}
                                                           : std::vector<std::string>{"sigmoid", "tanh", "tanh"};
      auto names = n.attr_strings("activations", {});
      if (names.size() != want.size() && names.size() != want.size() * static_cast<size_t>(ndir_))
        return "activations list size";
      for (size_t i = 0; i < names.size(); ++i)
        if (lower(names[i]) != want[i % want.size()]) return "non-default activation " + names[i];
    }
    if (pc.has_attr("clip")) {
      const float c = pc.attr_f("clip", 0);
      if (!(c > 0)) return "clip not positive";
      clip_ = c;
    }
    if (cell_ == Cell::GRU) {
      const int64_t lbr = pc.attr_i("linear_before_reset", 0);
      if (lbr != 0 && lbr != 1) return "linear_before_reset not 0/1";
      lbr_ = lbr == 1;
    }
    if (cell_ == Cell::LSTM) {
      const int64_t inf = pc.attr_i("input_forget", 0);
      if (inf != 0 && inf != 1) return "input_forget not 0/1";
      input_forget_ = inf == 1;
    }
    if (const auto* xi = pc.input_info(0); xi && xi->dtype != DType::Float32) return "X is not float32";
    const Tensor* W = pc.constant(1);
    const Tensor* R = pc.constant(2);
    if (!W || !R) return "W or R is not an initializer";
    if (W->dtype() != DType::Float32 || R->dtype() != DType::Float32) return "weights are not float32";
    if (W->rank() != 3 || R->rank() != 3) return "W/R rank";
    H_ = R->dim(2);
    I_ = W->dim(2);
    const int64_t GH = gates_ * H_;
    if (H_ <= 0 || I_ <= 0) return "empty hidden or input size";
    if (W->shape() != Shape{ndir_, GH, I_} || R->shape() != Shape{ndir_, GH, H_}) return "W/R shapes";
    if (pc.has_attr("hidden_size") && pc.attr_i("hidden_size", 0) != H_) return "hidden_size mismatch";
    if (GH >= std::numeric_limits<int>::max() / 2 || I_ >= std::numeric_limits<int>::max() / 2) return "too large";
    const Tensor* B = nullptr;
    if (n.has_input(3)) {
      B = pc.constant(3);
      if (!B) return "B is not an initializer";
      if (B->dtype() != DType::Float32 || B->shape() != Shape{ndir_, 2 * GH}) return "B dtype/shape";
    }
    const Tensor* P = nullptr;
    if (cell_ == Cell::LSTM && n.has_input(7)) {
      P = pc.constant(7);
      if (!P) return "P is not an initializer";
      if (P->dtype() != DType::Float32 || P->shape() != Shape{ndir_, 3 * H_}) return "P dtype/shape";
    }
    // Chunks of hidden units (multiples of 16, about 8 of them) whose gate columns are contiguous
    // in W, R, the biases and the peepholes: [chunk][gate][unit of the chunk]. One chunk is the
    // ONNX order. GRU without linear_before_reset needs all of r ⊙ h before its second GEMM: one chunk.
    cu_ = 16 * ((H_ + 8 * 16 - 1) / (8 * 16));
    if (cu_ >= H_ || (cell_ == Cell::GRU && !lbr_)) cu_ = H_;
    nchunk_ = (H_ + cu_ - 1) / cu_;
    const int64_t min_macs = g_team_min_macs >= 0 ? g_team_min_macs.load() : kTeamMinMacs;
    team_ok_ = nchunk_ > 1 && ndir_ == 1 && GH * H_ >= min_macs;
    std::vector<int64_t> perm(static_cast<size_t>(GH));  // ONNX column -> chunked column
    for (int64_t q = 0; q < gates_; ++q)
      for (int64_t u = 0; u < H_; ++u) {
        const int64_t a = u / cu_ * cu_, w = std::min(H_, a + cu_) - a;
        perm[static_cast<size_t>(q * H_ + u)] = gates_ * a + q * w + (u - a);
      }
    auto permute_rows = [&](const float* m, int64_t cols) {
      std::vector<float> out(static_cast<size_t>(GH * cols));
      for (int64_t r = 0; r < GH; ++r) std::copy_n(m + r * cols, cols, out.begin() + perm[static_cast<size_t>(r)] * cols);
      return out;
    };
    for (int64_t d = 0; d < ndir_; ++d) {
      Direction dd;
      const std::vector<float> wp = permute_rows(W->data<float>() + d * GH * I_, I_);
      dd.W = Packed(wp.data(), GH, I_);
      const std::vector<float> rp = permute_rows(R->data<float>() + d * GH * H_, H_);
      const float* r = rp.data();  // (identity for GRU without linear_before_reset: one chunk)
      if (cell_ == Cell::GRU && !lbr_) {
        dd.R = Packed(r, 2 * H_, H_);
        dd.Rh = Packed(r + 2 * H_ * H_, H_, H_);
      } else {
        dd.R = Packed(r, GH, H_);
      }
      for (int64_t c = 0; c < nchunk_; ++c) {
        const auto [b0, b1] = chunk_blocks(c, dd.R);
        dd.R.group(b0, b1, ops_->nb1);
      }
      dd.bias.assign(static_cast<size_t>(dd.W.width()), 0.0f);
      if (B) {
        const float* b = B->data<float>() + d * 2 * GH;
        for (int64_t k = 0; k < GH; ++k)
          dd.bias[static_cast<size_t>(perm[static_cast<size_t>(k)])] =
              b[k] + ((cell_ == Cell::GRU && lbr_ && k >= 2 * H_) ? 0.0f : b[GH + k]);
      }
      if (cell_ == Cell::GRU && lbr_) {  // indexed by unit: not permuted
        dd.rbh.assign(static_cast<size_t>(H_), 0.0f);
        if (B) std::copy_n(B->data<float>() + d * 2 * GH + GH + 2 * H_, H_, dd.rbh.begin());
      }
      if (cell_ == Cell::LSTM) {  // [chunk][Pi, Po, Pf][unit of the chunk]
        dd.P.assign(static_cast<size_t>(3 * H_), 0.0f);
        if (P)
          for (int64_t q = 0; q < 3; ++q)
            for (int64_t u = 0; u < H_; ++u) {
              const int64_t a = u / cu_ * cu_, w = std::min(H_, a + cu_) - a;
              dd.P[static_cast<size_t>(3 * a + q * w + (u - a))] = P->data<float>()[d * 3 * H_ + q * H_ + u];
            }
      }
      dirs_.push_back(std::move(dd));
    }
    // Group tiles of the one-row recurrence before each chunk (the fused projection's slots).
    group_off_.assign(static_cast<size_t>(nchunk_ + 1), 0);
    for (int64_t c = 0; c < nchunk_; ++c) {
      const auto [b0, b1] = chunk_blocks(c, dirs_[0].R);
      group_off_[static_cast<size_t>(c + 1)] = group_off_[static_cast<size_t>(c)] + (b1 - b0) / ops_->nb1;
    }
    return "";
  }

  void run(KernelContext& ctx) const override {
    if (!accepts(ctx)) {
      ref_(ctx);
      return;
    }
    const Tensor& X = ctx.input(0);
    const int64_t seq = batch_major_ ? X.dim(1) : X.dim(0), batch = batch_major_ ? X.dim(0) : X.dim(1);
    std::vector<int64_t> lens;
    bool ragged = false;
    if (ctx.has_input(4)) {
      const Tensor& sl = ctx.input(4);
      lens.resize(static_cast<size_t>(batch));
      for (int64_t b = 0; b < batch; ++b) {
        lens[b] = sl.get_i64(b);
        ragged |= lens[b] != seq;
      }
    }
    if (!ragged) lens.clear();

    // Outputs; the state ends in Y_h / Y_c (or scratch of the same layout), which start as the initial state.
    Tensor* Y = nullptr;
    if (ctx.output_wanted(0)) {
      Shape s = batch_major_ ? Shape{batch, seq, ndir_, H_} : Shape{seq, ndir_, batch, H_};
      Y = &ctx.alloc_output(0, DType::Float32, s, ragged ? KernelContext::Init::Zero : KernelContext::Init::Uninit);
    }
    const Shape ss = batch_major_ ? Shape{batch, ndir_, H_} : Shape{ndir_, batch, H_};
    const int64_t state_n = ndir_ * batch * H_;
    std::vector<float> h_tmp, c_tmp;
    auto state = [&](size_t out, size_t in, std::vector<float>& tmp) -> float* {
      float* p;
      if (ctx.output_wanted(out)) p = ctx.alloc_output(out, DType::Float32, ss, KernelContext::Init::Uninit).data<float>();
      else p = grow(tmp, state_n);
      if (ctx.has_input(in)) std::memcpy(p, ctx.input(in).data<float>(), static_cast<size_t>(state_n) * sizeof(float));
      else std::fill_n(p, state_n, 0.0f);
      return p;
    };
    float* Hs = state(1, 5, h_tmp);
    float* Cs = cell_ == Cell::LSTM ? state(2, 6, c_tmp) : nullptr;

    auto one = [&](int64_t d) {
      run_direction(X.data<float>(), seq, batch, d, reverse_only_ || d == 1, lens, Y ? Y->data<float>() : nullptr, Hs,
                    Cs);
    };
    if (ndir_ == 2 && num_threads() > 1 && !in_parallel_region()) {
      parallel_for(2, [&](int64_t b, int64_t e) {
        for (int64_t d = b; d < e; ++d) one(d);
      });
    } else {
      for (int64_t d = 0; d < ndir_; ++d) one(d);
    }
  }

 private:
  // The blocks [first, second) of R's columns that chunk c's gates use.
  std::pair<int64_t, int64_t> chunk_blocks(int64_t c, const Packed& R) const {
    const int64_t a = c * cu_, w = std::min(H_, a + cu_) - a;
    return {gates_ * a / kNB, c == nchunk_ - 1 ? R.nblk : gates_ * (a + w) / kNB};
  }

  // Threads of the recurrence team at the current thread setting (1: no team): no more than the
  // chunks, nor than the hardware threads (team threads wait for each other's chunks: more of them
  // than cores would only take turns).
  int team_size() const {
    if (!team_ok_ || in_parallel_region()) return 1;
    static const int64_t hw = std::max(1u, std::thread::hardware_concurrency());
    return static_cast<int>(std::min<int64_t>({num_threads(), nchunk_, g_team_any_size ? nchunk_ : hw}));
  }

  // Whether the fast path takes this run's inputs; the reference kernel handles (and reports) the rest.
  bool accepts(const KernelContext& ctx) const {
    const Tensor& X = ctx.input(0);
    if (X.is_sequence() || X.is_none() || X.dtype() != DType::Float32 || X.rank() != 3 || X.dim(2) != I_) return false;
    const int64_t seq = batch_major_ ? X.dim(1) : X.dim(0), batch = batch_major_ ? X.dim(0) : X.dim(1);
    if (seq <= 0 || batch <= 0 || seq * batch >= std::numeric_limits<int>::max() / 2) return false;
    const Shape ss = batch_major_ ? Shape{batch, ndir_, H_} : Shape{ndir_, batch, H_};
    for (size_t i : {size_t(5), size_t(6)}) {
      if (i == 6 && cell_ != Cell::LSTM) break;
      if (!ctx.has_input(i)) continue;
      const Tensor& t = ctx.input(i);
      if (t.is_sequence() || t.is_none() || t.dtype() != DType::Float32 || t.shape() != ss) return false;
    }
    if (ctx.has_input(4)) {
      const Tensor& sl = ctx.input(4);
      if (sl.is_sequence() || sl.is_none() || (sl.dtype() != DType::Int32 && sl.dtype() != DType::Int64) ||
          sl.shape() != Shape{batch})
        return false;
      for (int64_t b = 0; b < batch; ++b) {
        const int64_t L = sl.get_i64(b);
        if (L < 0 || L > seq) return false;
      }
    }
    return true;
  }

  // One direction's run: what every chunk computation needs.
  struct Dir {
    const Direction* dw;
    float* xw;  // input projection, rows in X's order, row stride xld, chunked column order
    int64_t xld, seq, batch, d;
    const float* X;   // the input, for the input projection as team step -1
    int64_t pre_rows;  // rows of X per chunk of step -1
    bool reverse;
    const std::vector<int64_t>* lens;
    float* Y;
    float* hb;  // h double buffer: [2][batch][H]; step k reads hb[k % 2], writes hb[(k + 1) % 2]
    float* cb;  // c likewise (LSTM), else null
    bool team = false;  // run by the team: hb / cb are accessed with relaxed atomics
    // Batch 1 with the projection fused (see run_direction): X's whole groups transposed, the
    // steps, and the group tiles per step (its fused projection blocks); xt null: not fused.
    const float* xt = nullptr;
    int64_t steps = 0, slots = 0;
  };

  // Batch 1: the first row of X (and of the projection) that the kPR steps of group g read (a
  // reverse direction reads them backwards; its steps = its sequence length).
  static int64_t group_row(const Dir& r, int64_t g) { return r.reverse ? r.steps - (g + 1) * kPR : g * kPR; }

  // Step k of chunk c (hidden units [a, a + w)) into the calling thread's private buffers: reads only
  // the shared state of step k (and the weights), so a chunk can be computed again by another thread.
  // Step -1: rows [c * pre_rows, ...) of the input projection.
  void chunk_compute(const Dir& r, int64_t c, int64_t k, ChunkScratch& pv) const {
    const Ops& ops = *ops_;
    const Direction& dw = *r.dw;
    const int64_t H = H_, batch = r.batch, sn = batch * H;
    if (k < 0) {
      const int64_t r0 = c * r.pre_rows, nr = std::min(r.seq * batch, r0 + r.pre_rows) - r0;
      ops.gemm(r.X + r0 * I_, I_, nr, I_, dw.W.data.data(), dw.bias.data(), 0, dw.W.nblk, grow(pv.g, nr * r.xld), r.xld);
      return;
    }
    const int64_t a = c * cu_, w = std::min(H, a + cu_) - a, col0 = gates_ * a;
    const float* hp = r.hb + (k % 2) * sn;
    const float* cp = r.cb ? r.cb + (k % 2) * sn : nullptr;
    const auto [blk0, blk1] = chunk_blocks(c, dw.R);
    const int64_t gw = (blk1 - blk0) * kNB;
    float* g = grow_aligned(pv.g, batch * gw);
    float* hd = grow(pv.h, batch * w);
    float* cd = cp ? grow(pv.c, batch * w) : nullptr;
    if (r.team) {  // the step's state through this thread's relaxed copy of h (see load_relaxed)
      if (pv.hs_id != pv.id) {
        load_relaxed(hp, grow(pv.hs, sn), sn);
        pv.hs_id = pv.id;
      }
      hp = pv.hs.data();
    }
    // Fused projection: step k's group tiles compute W column blocks (k % kPR) * slots + tile of
    // the next whole group's rows (every block once over the group's kPR steps, when there are
    // enough tiles; run_direction projects the rest).
    pv.pj_n = 0;
    const int64_t g1 = k / kPR + 1, pb0 = (k % kPR) * r.slots + group_off_[c];
    const int64_t npb = std::min(group_off_[c + 1] - group_off_[c], dw.W.nblk - pb0);
    if (r.xt && (g1 + 1) * kPR <= r.steps && npb > 0) {
      ProjQueue q;
      q.X = r.xt + g1 * I_ * kPR, q.KP = I_, q.W = dw.W.data.data(), q.bias = dw.bias.data();
      q.Y = grow_aligned(pv.pj, npb * kPR * kNB);
      q.first = q.next = pb0, q.end = pb0 + npb;
      ops.gemm_grouped_fused(hp, H, dw.R.data.data() + blk0 * H * kNB, blk1 - blk0, g, q);
      pv.pj_at = q.Y, pv.pj_first = pb0, pv.pj_n = npb, pv.pj_r0 = group_row(r, g1);
    } else {
      ops.gemm_grouped(hp, H, batch, H, dw.R.data.data() + blk0 * H * kNB, blk1 - blk0, g, gw);
    }

    auto active = [&](int64_t b, int64_t* t) {
      const int64_t L = r.lens->empty() ? r.seq : (*r.lens)[static_cast<size_t>(b)];
      *t = r.reverse ? L - 1 - k : k;
      return k < L;
    };
    auto xrow = [&](int64_t t, int64_t b) {
      return r.xw + (batch_major_ ? b * r.seq + t : t * batch + b) * r.xld + col0;
    };
    for (int64_t b = 0; b < batch; ++b) {  // carried state (finished rows keep theirs)
      std::copy_n(hp + b * H + a, w, hd + b * w);
      if (!cd) continue;
      if (r.team) load_relaxed(cp + b * H + a, cd + b * w, w);
      else std::copy_n(cp + b * H + a, w, cd + b * w);
    }
    if (cell_ == Cell::GRU && !lbr_) {  // one chunk: the whole step, two GEMMs
      float* rh = grow(pv.rh, sn);
      float* g2 = grow(pv.g2, batch * dw.Rh.width());
      for (int64_t b = 0; b < batch; ++b) {
        int64_t t;
        if (active(b, &t)) ops.gru_reset(xrow(t, b), g + b * gw, hp + b * H, rh + b * H, H, clip_);
        else std::fill_n(rh + b * H, H, 0.0f);
      }
      ops.gemm(rh, H, batch, H, dw.Rh.data.data(), nullptr, 0, dw.Rh.nblk, g2, dw.Rh.width());
      for (int64_t b = 0; b < batch; ++b) {
        int64_t t;
        if (active(b, &t)) ops.gru_update(xrow(t, b), g + b * gw, g2 + b * dw.Rh.width(), hd + b * w, nullptr, H, clip_);
      }
      return;
    }
    for (int64_t b = 0; b < batch; ++b) {
      int64_t t;
      if (!active(b, &t)) continue;
      const float* x = xrow(t, b);
      const float* gg = g + b * gw;
      switch (cell_) {
        case Cell::LSTM:
          ops.lstm(x, gg, dw.P.data() + 3 * a, cd + b * w, hd + b * w, nullptr, w, clip_, input_forget_);
          break;
        case Cell::GRU: ops.gru_lbr(x, gg, dw.rbh.data() + a, hd + b * w, nullptr, w, clip_); break;
        case Cell::RNN: ops.rnn(x, gg, hd + b * w, nullptr, w, clip_); break;
      }
    }
  }

  // Copies a computed chunk into the state of step k + 1 and into Y.
  void chunk_commit(const Dir& r, int64_t c, int64_t k, const ChunkScratch& pv) const {
    const int64_t H = H_, batch = r.batch, sn = batch * H;
    if (k < 0) {
      const int64_t r0 = c * r.pre_rows, nr = std::min(r.seq * batch, r0 + r.pre_rows) - r0;
      std::copy_n(pv.g.data(), nr * r.xld, r.xw + r0 * r.xld);
      return;
    }
    const int64_t a = c * cu_, w = std::min(H, a + cu_) - a;
    for (int64_t j = 0; j < pv.pj_n; ++j)
      for (int64_t q = 0; q < kPR; ++q)
        std::copy_n(pv.pj_at + (j * kPR + q) * kNB, kNB, r.xw + (pv.pj_r0 + q) * r.xld + (pv.pj_first + j) * kNB);
    float* hn = r.hb + ((k + 1) % 2) * sn;
    float* cn = r.cb ? r.cb + ((k + 1) % 2) * sn : nullptr;
    for (int64_t b = 0; b < batch; ++b) {
      const float* hd = pv.h.data() + b * w;
      if (r.team) {
        store_relaxed(hd, hn + b * H + a, w);
        if (cn) store_relaxed(pv.c.data() + b * w, cn + b * H + a, w);
      } else {
        std::copy_n(hd, w, hn + b * H + a);
        if (cn) std::copy_n(pv.c.data() + b * w, w, cn + b * H + a);
      }
      const int64_t L = r.lens->empty() ? r.seq : (*r.lens)[static_cast<size_t>(b)];
      if (r.Y && k < L) {
        const int64_t t = r.reverse ? L - 1 - k : k;
        std::copy_n(hd, w, r.Y + (batch_major_ ? (b * r.seq + t) * ndir_ + r.d : (t * ndir_ + r.d) * batch + b) * H + a);
      }
    }
  }

  // The recurrence on a team of `nt` threads (Team: the caller plus nt - 1 helpers; false when the
  // team is busy with another run, which then runs on one thread), with the input projection as its
  // step -1 when large enough. Each step's chunks are claimed with a compare-and-swap: thread p
  // starts at chunk p * nchunk / nt (so each thread keeps streaming the same slice of R, which stays
  // in its core's cache) and takes any chunk still unclaimed. A thread that is not running claims
  // nothing, so the others simply do its share: no step waits for a thread that is not scheduled.
  // A chunk claimed by a thread that is then descheduled would stall the step, so after a few
  // chunk-times another team thread takes it over (claimed -> taken, atomically) and computes it;
  // the late thread sees its commit refused and drops its result. Whoever sees a step complete
  // publishes the next one. Every chunk is computed into private buffers from the state of step k
  // only, so whoever commits it, the result is the same (bit for bit: the same code on the same
  // inputs): results do not depend on timing or the thread count. (A thread that was taken over may
  // still be reading step k's state while the others write step k + 2's into the same buffer: its
  // result is dropped, and the state is accessed with relaxed atomics, see load_relaxed.)
  bool run_team(const Dir& r, int64_t steps, int nt, int64_t pre_chunks) const {
    struct Job final : TeamJob {
      const FastRnn* self;
      const Dir* r;
      void compute(int64_t c, int64_t k, ChunkScratch& pv) const override { self->chunk_compute(*r, c, k, pv); }
      void commit(int64_t c, int64_t k, const ChunkScratch& pv) const override { self->chunk_commit(*r, c, k, pv); }
    } job;
    job.self = this;
    job.r = &r;
    job.nchunk = nchunk_;
    job.steps = steps;
    job.pre_chunks = pre_chunks;
    job.nt = nt;
    job.steal_after_ns = g_steal_after_ns;
    job.wait_for_helpers = g_wait_for_helpers;
    return Team::get().run(job);
  }

  void run_direction(const float* X, int64_t seq, int64_t batch, int64_t d, bool reverse,
                     const std::vector<int64_t>& lens, float* Y, float* Hs, float* Cs) const {
    const Direction& dw = dirs_[static_cast<size_t>(d)];
    const Ops& ops = *ops_;
    const int64_t H = H_, rows = seq * batch, sn = batch * H;
    Scratch& sc = scratch(d);

    int64_t steps = seq;
    if (!lens.empty()) steps = *std::max_element(lens.begin(), lens.end());
    const int nt = team_size();
    const bool team = nt > 1 && steps > 1;

    // Input projection of every step: xw = X·W^T + bias (rows in X's own order, row stride xld).
    // With a team, it is the team's step -1 (chunks of rows, at most 8; each computed privately and
    // copied, so their copies must stay small); otherwise here, split over column blocks when large.
    const int64_t xld = dw.W.width();
    float* xw = grow(sc.xw, rows * xld);
    int64_t pre_rows = 0, pre_chunks = 0;
    if (team && rows > 1 && rows * I_ * xld >= (int64_t(1) << 18) && rows * xld <= (int64_t(1) << 22)) {
      pre_rows = ((rows + 7) / 8 + 5) / 6 * 6;  // a multiple of the GEMM tile's 6 rows
      pre_chunks = (rows + pre_rows - 1) / pre_rows;
    }
    auto project = [&] {
      if (rows * I_ * xld >= (int64_t(1) << 20) && num_threads() > 1 && !in_parallel_region())
        parallel_for(dw.W.nblk, [&](int64_t b0, int64_t b1) {
          ops.gemm(X, I_, rows, I_, dw.W.data.data(), dw.bias.data(), b0, b1, xw, xld);
        }, 2);
      else
        ops.gemm(X, I_, rows, I_, dw.W.data.data(), dw.bias.data(), 0, dw.W.nblk, xw, xld);
    };
    // One thread, batch 1 (AVX-512): the projection of each whole group of kPR steps after the
    // first is computed inside the recurrence tiles of the kPR steps before it (chunk_compute,
    // copied in by chunk_commit; the blocks no tile takes are projected at the start of each
    // group); the first group and a last partial one are projected here. Not in a team: there
    // each core keeps its half of R in its own L2, and streaming W through it measured no faster
    // (models/lstm at 2 threads: 1.67-2.40 ms fused vs 1.77-2.07 ms not, alternating runs).
    const int64_t slots = group_off_.back(), groups = steps / kPR;
    const bool fuse = !team && batch == 1 && ops.gemm_grouped_fused && g_fuse_projection && groups >= 2 && slots > 0;
    auto project_rows = [&](int64_t r0, int64_t nr, int64_t b0) {
      if (nr > 0) ops.gemm(X + r0 * I_, I_, nr, I_, dw.W.data.data(), dw.bias.data(), b0, dw.W.nblk, xw + r0 * xld, xld);
    };
    if (!fuse && !pre_chunks) project();

    // State rows in Hs / Cs: [dirs, batch, H] (layout 0) or [batch, dirs, H] (layout 1); the steps
    // run on [batch, H] double buffers.
    const int64_t sld = batch_major_ ? ndir_ * H : H;
    float* h0 = Hs + (batch_major_ ? d * H : d * batch * H);
    float* c0 = Cs ? Cs + (batch_major_ ? d * H : d * batch * H) : nullptr;
    Dir r{&dw, xw, xld, seq, batch, d, X, pre_rows, reverse, &lens, Y, grow_aligned(sc.hb, 2 * sn),
          c0 ? grow_aligned(sc.cb, 2 * sn) : nullptr};
    for (int64_t b = 0; b < batch; ++b) {
      std::copy_n(h0 + b * sld, H, r.hb + b * H);
      if (c0) std::copy_n(c0 + b * sld, H, r.cb + b * H);
    }
    r.team = team;
    if (fuse) {  // X's whole groups after the first, transposed; the first and a partial last group projected
      r.steps = steps, r.slots = slots;
      float* xt = grow(sc.xt, groups * I_ * kPR);
      for (int64_t g = 1; g < groups; ++g) {
        const int64_t r0 = group_row(r, g);
        float* t = xt + g * I_ * kPR;
        for (int64_t j = 0; j < kPR; ++j)
          for (int64_t i = 0; i < I_; ++i) t[i * kPR + j] = X[(r0 + j) * I_ + i];
      }
      r.xt = xt;
      project_rows(group_row(r, 0), kPR, 0);
      project_rows(reverse ? 0 : groups * kPR, steps - groups * kPR, 0);
    }
    if (!(team && run_team(r, steps, nt, pre_chunks))) {  // one thread (or the team is busy with another run)
      r.team = false;
      if (pre_chunks) project();
      ChunkScratch& pv = chunk_scratch();
      // Odd steps take the chunks in reverse order: the recurrence weights read last in one step
      // (still in cache: all of them rarely fit) are the first the next step needs.
      for (int64_t k = 0; k < steps; ++k) {
        if (fuse && k % kPR == 0 && kPR * slots < dw.W.nblk && (k / kPR + 2) * kPR <= steps)
          project_rows(group_row(r, k / kPR + 1), kPR, kPR * slots);  // the next group's blocks no tile takes
        for (int64_t i = 0; i < nchunk_; ++i) {
          const int64_t c = k % 2 ? nchunk_ - 1 - i : i;
          chunk_compute(r, c, k, pv);
          chunk_commit(r, c, k, pv);
        }
      }
    }
    for (int64_t b = 0; b < batch; ++b) {
      std::copy_n(r.hb + (steps % 2) * sn + b * H, H, h0 + b * sld);
      if (c0) std::copy_n(r.cb + (steps % 2) * sn + b * H, H, c0 + b * sld);
    }
  }

  Cell cell_;
  KernelFn ref_;
  const Ops* ops_;
  int64_t gates_ = 1, ndir_ = 1, H_ = 0, I_ = 0;
  int64_t cu_ = 1, nchunk_ = 1;  // hidden units per chunk, chunks
  std::vector<int64_t> group_off_;  // [nchunk + 1]: one-row group tiles before chunk c
  bool team_ok_ = false;         // forward or reverse with enough work per step for the team
  bool reverse_only_ = false, batch_major_ = false, lbr_ = false, input_forget_ = false;
  float clip_ = std::numeric_limits<float>::infinity();
  std::vector<Direction> dirs_;
};

template <Cell C>
std::unique_ptr<PreparedKernel> prepare_cell(const PrepareContext& pc, std::string* why) {
  const KernelDef* ref = registry().find("", pc.node().op_type, pc.opset());
  if (!ref) {
    if (why) *why = "no reference kernel at this opset";
    return nullptr;
  }
  auto k = std::make_unique<FastRnn>(C, ref->fn);
  std::string r = k->prepare(pc);
  if (!r.empty()) {
    if (why) *why = r;
    return nullptr;
  }
  return k;
}

}  // namespace

void fast_rnn_force_isa(int isa) { g_force_isa = isa; }
void fast_rnn_fuse_projection(bool on) { g_fuse_projection = on; }

void fast_rnn_team_tuning(int64_t min_macs, int64_t steal_after_ns, bool wait_for_helpers, bool any_size) {
  g_team_min_macs = min_macs;
  g_steal_after_ns = steal_after_ns;
  g_wait_for_helpers = wait_for_helpers;
  g_team_any_size = any_size;
}

bool fast_rnn_activation(int isa, bool tanh, const float* x, float* out, int64_t n) {
  const auto& f = cpu_features();
  if (isa == 0) {
    if (!(f.avx512f && f.avx2 && f.fma)) return false;
    if (tanh) avx512::tanh_n(x, out, n);
    else avx512::sigmoid_n(x, out, n);
  } else if (isa == 2) {
    if (!(f.avx2 && f.fma)) return false;
    if (tanh) avx2::tanh_n(x, out, n);
    else avx2::sigmoid_n(x, out, n);
  } else {
    if (tanh) generic::tanh_n(x, out, n);
    else generic::sigmoid_n(x, out, n);
  }
  return true;
}

void register_fast_rnn(FastRegistry& r) {
  r.add({"LSTM", "", "fast_lstm", prepare_cell<Cell::LSTM>});
  r.add({"GRU", "", "fast_gru", prepare_cell<Cell::GRU>});
  r.add({"RNN", "", "fast_rnn", prepare_cell<Cell::RNN>});
}

}  // namespace opennpu::cpu
