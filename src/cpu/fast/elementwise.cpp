// cpu/fast/elementwise.cpp — float32 elementwise kernels that write in place when they can.
//
// Relu, Neg, Clip and the binary Add/Sub/Mul/Div on float32, for the shapes that dominate real
// models: equal shapes, one operand a scalar, or one operand broadcast along the leading axes
// (a [.., n] op b [n], e.g. a bias). Other shapes (and other dtypes) run the reference kernel,
// chosen at run time. The output goes into a dying input's buffer when the executor allows it
// (KernelContext::input_reusable), else into an uninitialised pool buffer: no zeroing pass and,
// in steady state, no allocation. The loops are compiled for AVX-512, AVX2 and baseline x86-64
// (target_clones: chosen at run time from the CPU's features). Results are bit-identical to the
// reference kernels (the same single IEEE operation per element); tests/cpu/test_executor_memory's
// FastElementwise tests check that, at 1 to 3 threads.
#include <algorithm>
#include <cmath>
#include <functional>
#include <memory>

#include "core/parallel.h"
#include "core/target_clones.h"
#include "cpu/fast/fast.h"
#include "cpu/fast/fuse.h"

namespace opennpu::cpu {

namespace {

enum class Bin { Add, Sub, Mul, Div };
enum class Un { Relu, Neg, Clip };

#define ONPU_CLONES OPENNPU_TARGET_CLONES_T  // templates (core/target_clones.h)

// y[i] = a[i] op b[i % nb] (nb == n: same shape; nb == 1: scalar; else inner broadcast).
// b_first swaps the operands (b op a) for a scalar/broadcast *first* operand.
template <Bin op>
ONPU_CLONES void bin_loop(const float* a, const float* b, float* y, int64_t n, int64_t nb, bool b_first) {
  auto f = [](float x, float z) {
    if constexpr (op == Bin::Add) return x + z;
    else if constexpr (op == Bin::Sub) return x - z;
    else if constexpr (op == Bin::Mul) return x * z;
    else return x / z;
  };
  if (nb == n) {
    for (int64_t i = 0; i < n; ++i) y[i] = b_first ? f(b[i], a[i]) : f(a[i], b[i]);
  } else if (nb == 1) {
    const float s = b[0];
    if (b_first) for (int64_t i = 0; i < n; ++i) y[i] = f(s, a[i]);
    else for (int64_t i = 0; i < n; ++i) y[i] = f(a[i], s);
  } else {
    for (int64_t r = 0; r < n / nb; ++r) {
      const float* ar = a + r * nb;
      float* yr = y + r * nb;
      if (b_first) for (int64_t i = 0; i < nb; ++i) yr[i] = f(b[i], ar[i]);
      else for (int64_t i = 0; i < nb; ++i) yr[i] = f(ar[i], b[i]);
    }
  }
}

template <Un op>
ONPU_CLONES void un_loop(const float* x, float* y, int64_t n, float lo, float hi) {
  for (int64_t i = 0; i < n; ++i) {
    // The reference kernels' exact expressions: Relu keeps NaN and -0; Clip lets NaN through.
    if constexpr (op == Un::Relu) y[i] = x[i] < 0.0f ? 0.0f : x[i];
    else if constexpr (op == Un::Neg) y[i] = -x[i];
    else {
      float v = x[i];
      if (v < lo) v = lo;
      if (v > hi) v = hi;
      y[i] = v;
    }
  }
}

// Elements of work per task at least, so that small tensors stay on one thread.
constexpr int64_t kGrain = 1 << 14;

// fn(begin, end) over [0, n) in one contiguous range per thread (at least min_chunk each), handed
// out by parallel_tasks: a worker that is not running (descheduled on a loaded machine) is not
// waited for, the caller does its range (with parallel_for's fixed split, resnet50 int8's Add /
// Relu took 7 ms at 2 threads against 1 ms at 1 thread under load).
void split_ranges(int64_t n, int64_t min_chunk, const std::function<void(int64_t, int64_t)>& fn) {
  const int64_t T = std::min<int64_t>(in_parallel_region() ? 1 : num_threads(), n / std::max<int64_t>(1, min_chunk));
  if (T <= 1) {
    fn(0, n);
    return;
  }
  parallel_tasks(T, [&](int64_t i) { fn(n * i / T, n * (i + 1) / T); });
}


// Output buffer: a dying input of the same shape if allowed, else a fresh uninitialised one.
Tensor& output_like(KernelContext& ctx, const Tensor& like, std::initializer_list<size_t> candidates) {
  for (size_t i : candidates)
    if (ctx.input_reusable(i) && ctx.input(i).shape() == like.shape() && ctx.input(i).dtype() == DType::Float32)
      return ctx.reuse_input_as_output(i, 0, like.shape());
  return ctx.alloc_output(0, DType::Float32, like.shape(), KernelContext::Init::Uninit);
}

template <Bin op>
class BinaryKernel final : public PreparedKernel {
 public:
  explicit BinaryKernel(const KernelDef* ref) : ref_(ref) {}
  std::string name() const override { return "fast_elementwise"; }
  void run(KernelContext& ctx) const override {
    const Tensor& a = ctx.input(0);
    const Tensor& b = ctx.input(1);
    // The larger operand (the output's shape) must hold the other as a scalar or a suffix.
    const bool a_big = a.numel() >= b.numel();
    const Tensor& big = a_big ? a : b;
    const Tensor& small = a_big ? b : a;
    if (a.dtype() != DType::Float32 || b.dtype() != DType::Float32 || !suffix_broadcast(big, small) || big.numel() == 0) {
      ref_->fn(ctx);
      return;
    }
    const int64_t n = big.numel(), nb = small.numel();
    const float* pb = big.data<float>();
    const float* ps = small.data<float>();
    Tensor& y = a.numel() == b.numel() ? output_like(ctx, big, {size_t{0}, size_t{1}})
                                       : output_like(ctx, big, {a_big ? size_t{0} : size_t{1}});
    float* py = y.data<float>();
    // Chunks aligned to whole rows of the broadcast operand.
    const int64_t row = nb == n || nb == 1 ? 1 : nb;
    const int64_t rows = n / row;
    split_ranges(rows, std::max<int64_t>(1, kGrain / row), [&](int64_t r0, int64_t r1) {
      const int64_t off = r0 * row, len = (r1 - r0) * row;
      bin_loop<op>(pb + off, nb == n ? ps + off : ps, py + off, len, nb == n ? len : nb, !a_big);
    });
  }

 private:
  // small's shape is a suffix of big's after dropping its leading 1s (and big's rank >= small's).
  static bool suffix_broadcast(const Tensor& big, const Tensor& small) {
    if (small.numel() == 1) return true;
    if (small.numel() == big.numel()) return small.shape() == big.shape() || small.rank() <= big.rank();
    const auto& bs = big.shape();
    const auto& ss = small.shape();
    size_t k = 0;
    while (k < ss.size() && ss[k] == 1) ++k;
    const size_t m = ss.size() - k;
    if (m > bs.size()) return false;
    for (size_t i = 0; i < m; ++i)
      if (ss[k + i] != bs[bs.size() - m + i]) return false;
    return ss.size() <= bs.size();
  }
  const KernelDef* ref_;
};

template <Un op>
class UnaryKernel final : public PreparedKernel {
 public:
  UnaryKernel(const KernelDef* ref, float lo, float hi) : ref_(ref), lo_(lo), hi_(hi) {}
  std::string name() const override { return "fast_elementwise"; }
  void run(KernelContext& ctx) const override {
    const Tensor& x = ctx.input(0);
    if (x.dtype() != DType::Float32 || x.numel() == 0) {
      ref_->fn(ctx);
      return;
    }
    const float* px = x.data<float>();
    Tensor& y = output_like(ctx, x, {0});
    float* py = y.data<float>();
    split_ranges(x.numel(), kGrain, [&](int64_t i0, int64_t i1) { un_loop<op>(px + i0, py + i0, i1 - i0, lo_, hi_); });
  }

 private:
  const KernelDef* ref_;
  float lo_, hi_;
};

template <Bin op>
std::unique_ptr<PreparedKernel> prep_binary(const PrepareContext& pc, std::string* why) {
  const KernelDef* ref = reference_of(pc);
  if (!ref) { *why = "no reference kernel at this opset"; return nullptr; }
  return std::make_unique<BinaryKernel<op>>(ref);
}

template <Un op>
std::unique_ptr<PreparedKernel> prep_unary(const PrepareContext& pc, std::string* why) {
  const KernelDef* ref = reference_of(pc);
  if (!ref) { *why = "no reference kernel at this opset"; return nullptr; }
  return std::make_unique<UnaryKernel<op>>(ref, 0.0f, 0.0f);
}

// Clip: only with bounds known at load (attributes before opset 11, constant inputs after) and
// not NaN; the reference kernel's semantics are min(max(x, lo), hi).
std::unique_ptr<PreparedKernel> prep_clip(const PrepareContext& pc, std::string* why) {
  const KernelDef* ref = reference_of(pc);
  if (!ref) { *why = "no reference kernel at this opset"; return nullptr; }
  float lo = -INFINITY, hi = INFINITY;
  if (pc.opset() < 11) {
    lo = pc.attr_f("min", -INFINITY);
    hi = pc.attr_f("max", INFINITY);
  } else {
    for (size_t i = 1; i <= 2; ++i) {
      if (i >= pc.node().inputs.size() || pc.node().inputs[i].empty()) continue;
      const Tensor* t = pc.constant(i);
      if (!t || t->dtype() != DType::Float32 || t->numel() != 1) { *why = "min/max are not float32 constants"; return nullptr; }
      (i == 1 ? lo : hi) = t->data<float>()[0];
    }
  }
  if (std::isnan(lo) || std::isnan(hi)) { *why = "NaN bound"; return nullptr; }
  return std::make_unique<UnaryKernel<Un::Clip>>(ref, lo, hi);
}

}  // namespace

void register_fast_elementwise(FastRegistry& r) {
  r.add({"Add", "", "fast_elementwise", prep_binary<Bin::Add>});
  r.add({"Sub", "", "fast_elementwise", prep_binary<Bin::Sub>});
  r.add({"Mul", "", "fast_elementwise", prep_binary<Bin::Mul>});
  r.add({"Div", "", "fast_elementwise", prep_binary<Bin::Div>});
  r.add({"Relu", "", "fast_elementwise", prep_unary<Un::Relu>});
  r.add({"Neg", "", "fast_elementwise", prep_unary<Un::Neg>});
  r.add({"Clip", "", "fast_elementwise", prep_clip});
}

void add_elementwise_passes(std::vector<CpuPass>&) {}

}  // namespace opennpu::cpu
