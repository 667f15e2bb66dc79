// Recurrent layers: RNN, GRU and LSTM (ai.onnx opsets 1-17), reference kernels.
//
// All three share one driver: the input projection of every time step is one GEMM (X·W^T over
// seq*batch rows), then each step does the recurrent GEMM (H·R^T over the batch) and the
// elementwise cell. Computation is in float (float16 inputs are widened) or double. Internally the
// layout is always seq-major (X [seq, batch, input], states [dirs, batch, hidden]); the opset-14
// `layout` = 1 (batch-major) is converted at the boundary.
//
// sequence_lens: batch entry b only runs its first L_b steps. A reverse direction runs from
// L_b-1 down to 0 (the sequence reversed within its own length, as ONNX Runtime does). Y is zero
// past a sequence's length; Y_h / Y_c are the state after the entry's last valid step (the initial
// state when L_b is 0, since no step ran).
#include <algorithm>
#include <cctype>
#include <cmath>
#include <limits>
#include <string>
#include <vector>

#include "cpu/gemm.h"
#include "cpu/util.h"

namespace opennpu::cpu {
namespace {

// ---- activations --------------------------------------------------------------------------------

enum class ActKind { Relu, Tanh, Sigmoid, Affine, LeakyRelu, ThresholdedRelu, ScaledTanh, HardSigmoid, Elu, Softsign, Softplus };

struct ActInfo {
  const char* name;
  ActKind kind;
  bool takes_alpha, takes_beta;
  double alpha, beta;  // defaults: those of the ONNX operator of the same name
};

// Every activation the RNN/GRU/LSTM schemas list. ScaledTanh and Affine were never given
// defaults by their (experimental) operators; 1 and 0/1 make them the plain function.
const ActInfo kActs[] = {
    {"Relu", ActKind::Relu, false, false, 0, 0},
    {"Tanh", ActKind::Tanh, false, false, 0, 0},
    {"Sigmoid", ActKind::Sigmoid, false, false, 0, 0},
    {"Affine", ActKind::Affine, true, true, 1.0, 0.0},
    {"LeakyRelu", ActKind::LeakyRelu, true, false, 0.01, 0},
    {"ThresholdedRelu", ActKind::ThresholdedRelu, true, false, 1.0, 0},
    {"ScaledTanh", ActKind::ScaledTanh, true, true, 1.0, 1.0},
    {"HardSigmoid", ActKind::HardSigmoid, true, true, 0.2, 0.5},
    {"Elu", ActKind::Elu, true, false, 1.0, 0},
    {"Softsign", ActKind::Softsign, false, false, 0, 0},
    {"Softplus", ActKind::Softplus, false, false, 0, 0},
};

struct Activation {
  ActKind kind = ActKind::Tanh;
  double alpha = 0, beta = 0;

  template <class C>
  C operator()(C x) const {
    const C a = static_cast<C>(alpha), b = static_cast<C>(beta);
    switch (kind) {
      case ActKind::Relu: return x > 0 ? x : C(0);
      case ActKind::Tanh: return std::tanh(x);
      case ActKind::Sigmoid:  // split by sign so exp never overflows
        if (x >= 0) return C(1) / (C(1) + std::exp(-x));
        else { C e = std::exp(x); return e / (C(1) + e); }
      case ActKind::Affine: return a * x + b;
      case ActKind::LeakyRelu: return x >= 0 ? x : a * x;
      case ActKind::ThresholdedRelu: return x > a ? x : C(0);
      case ActKind::ScaledTanh: return a * std::tanh(b * x);
      case ActKind::HardSigmoid: return std::min(C(1), std::max(C(0), a * x + b));
      case ActKind::Elu: return x >= 0 ? x : a * (std::exp(x) - C(1));
      case ActKind::Softsign: return x / (C(1) + std::fabs(x));
      case ActKind::Softplus:  // log(1 + e^x) without overflow for large x
        return x > 0 ? x + std::log1p(std::exp(-x)) : std::log1p(std::exp(x));
    }
    return x;
  }
};

std::string lower(std::string s) {
  for (auto& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

// Parses activations / activation_alpha / activation_beta. The alpha and beta lists are consumed
// in the order of the activations, one entry per activation that takes the parameter (as ONNX
// Runtime reads them); missing entries fall back to the operator's default. A bidirectional
// layer takes per_dir*2 names; per_dir names are accepted and used for both directions.
std::vector<Activation> parse_activations(const KernelContext& ctx, const std::vector<std::string>& defaults, int64_t dirs) {
  const auto& n = ctx.node();
  auto names = n.attr_strings("activations", {});
  auto alphas = n.attr_floats("activation_alpha", {});
  auto betas = n.attr_floats("activation_beta", {});
  const size_t per_dir = defaults.size();
  if (names.empty()) {
    for (int64_t d = 0; d < dirs; ++d) names.insert(names.end(), defaults.begin(), defaults.end());
  } else if (dirs == 2 && names.size() == per_dir) {
    auto once = names;
    names.insert(names.end(), once.begin(), once.end());
  }
  ctx.check(names.size() == per_dir * static_cast<size_t>(dirs),
            "'activations' has {} entries; expected {} ({} per direction, {} direction(s))", names.size(),
            per_dir * static_cast<size_t>(dirs), per_dir, dirs);
  std::vector<Activation> out;
  size_t ai = 0, bi = 0;
  for (const auto& name : names) {
    const ActInfo* info = nullptr;
    for (const auto& a : kActs)
      if (lower(a.name) == lower(name)) info = &a;
    if (!info) ctx.fail("unknown activation '{}'", name);
    Activation act{info->kind, info->alpha, info->beta};
    if (info->takes_alpha && ai < alphas.size()) act.alpha = alphas[ai++];
    if (info->takes_beta && bi < betas.size()) act.beta = betas[bi++];
    out.push_back(act);
  }
  ctx.check(ai == alphas.size(), "'activation_alpha' has {} values but the activations take only {}", alphas.size(), ai);
  ctx.check(bi == betas.size(), "'activation_beta' has {} values but the activations take only {}", betas.size(), bi);
  return out;
}

// ---- helpers ------------------------------------------------------------------------------------

inline void gemm(bool ta, bool tb, int64_t M, int64_t N, int64_t K, const float* A, int64_t lda, const float* B,
                 int64_t ldb, float* C, int64_t ldc) {
  sgemm(ta, tb, M, N, K, 1.0f, A, lda, B, ldb, 0.0f, C, ldc);
}
inline void gemm(bool ta, bool tb, int64_t M, int64_t N, int64_t K, const double* A, int64_t lda, const double* B,
                 int64_t ldb, double* C, int64_t ldc) {
  dgemm(ta, tb, M, N, K, 1.0, A, lda, B, ldb, 0.0, C, ldc);
}

// Copies a float tensor into compute type C.
template <class C>
std::vector<C> to_compute(const Tensor& t) {
  std::vector<C> v(static_cast<size_t>(t.numel()));
  dispatch_float(t.dtype(), [&](auto tag) {
    using T = typename decltype(tag)::type;
    const T* p = t.data<T>();
    for (size_t i = 0; i < v.size(); ++i) v[i] = static_cast<C>(static_cast<compute_t<T>>(p[i]));
  }, "RNN");
  return v;
}

template <class C>
void from_compute_into(const std::vector<C>& v, Tensor& t) {
  dispatch_float(t.dtype(), [&](auto tag) {
    using T = typename decltype(tag)::type;
    T* p = t.data<T>();
    for (size_t i = 0; i < v.size(); ++i) p[i] = static_cast<T>(static_cast<compute_t<T>>(v[i]));
  }, "RNN");
}

// [a, b, rest] -> [b, a, rest]: converts between batch-major (layout 1) and seq/dir-major.
template <class C>
std::vector<C> swap01(const std::vector<C>& v, int64_t a, int64_t b, int64_t rest) {
  std::vector<C> out(v.size());
  for (int64_t i = 0; i < a; ++i)
    for (int64_t j = 0; j < b; ++j)
      std::copy_n(v.begin() + (i * b + j) * rest, rest, out.begin() + (j * a + i) * rest);
  return out;
}

enum class Cell { RNN, GRU, LSTM };

struct Dims {
  int64_t seq = 0, batch = 0, input = 0, hidden = 0, dirs = 1, gates = 1;
  bool batch_major = false;
};

void check_shape(const KernelContext& ctx, const Tensor& t, const char* name, const Shape& want) {
  ctx.check(t.shape() == want, "input {} has shape {}, expected {}", name, shape_str(t.shape()), shape_str(want));
}

// Validates every input against X/W/R and the attributes; fills dims and per-entry lengths.
Dims validate(KernelContext& ctx, Cell cell, std::vector<int64_t>& lens) {
  const auto& n = ctx.node();
  const Tensor& X = ctx.input(0);
  const Tensor& W = ctx.input(1);
  const Tensor& R = ctx.input(2);
  Dims d;
  d.gates = cell == Cell::RNN ? 1 : cell == Cell::GRU ? 3 : 4;
  int64_t layout = n.attr_i("layout", 0);
  ctx.check(layout == 0 || layout == 1, "attribute 'layout' must be 0 or 1, got {}", layout);
  ctx.check(layout == 0 || ctx.opset() >= 14, "attribute 'layout' exists from opset 14 (model uses opset {})", ctx.opset());
  d.batch_major = layout == 1;
  std::string dir = n.attr_s("direction", "forward");
  ctx.check(dir == "forward" || dir == "reverse" || dir == "bidirectional",
            "attribute 'direction' must be forward, reverse or bidirectional, got '{}'", dir);
  d.dirs = dir == "bidirectional" ? 2 : 1;

  for (size_t i = 0; i < ctx.num_inputs(); ++i) {
    if (!ctx.has_input(i) || i == 4) continue;  // 4 = sequence_lens (int32)
    const Tensor& t = ctx.input(i);
    ctx.check(!t.is_sequence() && !t.is_none(), "input {} must be a tensor", i);
    ctx.check(t.dtype() == X.dtype(), "input {} has dtype {}, expected {} like X", i, dtype_name(t.dtype()),
              dtype_name(X.dtype()));
  }
  ctx.check(X.dtype() == DType::Float32 || X.dtype() == DType::Float64 || X.dtype() == DType::Float16,
            "X must be float16, float32 or float64, got {}", dtype_name(X.dtype()));
  ctx.check(X.rank() == 3, "X must have rank 3, got shape {}", shape_str(X.shape()));
  ctx.check(W.rank() == 3 && R.rank() == 3, "W and R must have rank 3, got {} and {}", shape_str(W.shape()),
            shape_str(R.shape()));
  d.seq = d.batch_major ? X.dim(1) : X.dim(0);
  d.batch = d.batch_major ? X.dim(0) : X.dim(1);
  d.input = X.dim(2);
  d.hidden = R.dim(2);
  if (n.has_attr("hidden_size")) {
    int64_t hs = n.attr_i("hidden_size", 0);
    ctx.check(hs == d.hidden, "attribute hidden_size={} does not match R's last dimension {}", hs, d.hidden);
  }
  ctx.check(d.hidden > 0 && d.input > 0, "hidden size ({}) and input size ({}) must be positive", d.hidden, d.input);
  const int64_t gh = d.gates * d.hidden;
  check_shape(ctx, W, "W", {d.dirs, gh, d.input});
  check_shape(ctx, R, "R", {d.dirs, gh, d.hidden});
  if (ctx.has_input(3)) check_shape(ctx, ctx.input(3), "B", {d.dirs, 2 * gh});
  Shape state = d.batch_major ? Shape{d.batch, d.dirs, d.hidden} : Shape{d.dirs, d.batch, d.hidden};
  if (ctx.has_input(5)) check_shape(ctx, ctx.input(5), "initial_h", state);
  if (cell == Cell::LSTM) {
    if (ctx.has_input(6)) check_shape(ctx, ctx.input(6), "initial_c", state);
    if (ctx.has_input(7)) check_shape(ctx, ctx.input(7), "P", {d.dirs, 3 * d.hidden});
  }
  // The GEMM interface takes int dimensions.
  constexpr int64_t kMax = std::numeric_limits<int>::max();
  ctx.check(d.seq * d.batch < kMax && gh < kMax && d.input < kMax, "sizes too large for this kernel");

  lens.assign(static_cast<size_t>(d.batch), d.seq);
  if (ctx.has_input(4)) {
    const Tensor& sl = ctx.input(4);
    ctx.check(sl.dtype() == DType::Int32 || sl.dtype() == DType::Int64, "sequence_lens must be int32, got {}",
              dtype_name(sl.dtype()));
    check_shape(ctx, sl, "sequence_lens", {d.batch});
    for (int64_t b = 0; b < d.batch; ++b) {
      int64_t L = sl.get_i64(b);
      ctx.check(L >= 0 && L <= d.seq, "sequence_lens[{}] = {} is outside [0, {}]", b, L, d.seq);
      lens[static_cast<size_t>(b)] = L;
    }
  }
  return d;
}

struct CellParams {
  std::vector<Activation> acts;  // per direction: RNN f; GRU f g; LSTM f g h
  bool clip = false;
  double clip_value = 0;
  bool linear_before_reset = false;  // GRU
  bool input_forget = false;         // LSTM
};

// Runs one direction. All buffers are seq-major; Y is [seq, dirs, batch, hidden] (may be null),
// Hs/Cs are this direction's [batch, hidden] state, in = initial, out = final.
template <class C>
void run_direction(Cell cell, const Dims& dm, int64_t d, bool reverse, const CellParams& cp, const std::vector<C>& X,
                   const C* W, const C* R, const C* B, const C* P, const std::vector<int64_t>& lens, C* Y, C* Hs,
                   C* Cs) {
  const int64_t H = dm.hidden, G = dm.gates, GH = G * H, batch = dm.batch;
  const Activation* act = &cp.acts[static_cast<size_t>(d) * (cell == Cell::RNN ? 1 : cell == Cell::GRU ? 2 : 3)];
  auto clip = [&](C x) {
    if (!cp.clip) return x;
    C c = static_cast<C>(cp.clip_value);
    return std::min(c, std::max(-c, x));
  };

  // Input projection of all steps at once: xw[t*batch + b, :] = X[t, b, :] · W^T + Wb.
  std::vector<C> xw(static_cast<size_t>(dm.seq * batch * GH));
  gemm(false, true, dm.seq * batch, GH, dm.input, X.data(), dm.input, W, dm.input, xw.data(), GH);
  if (B)
    for (int64_t r = 0; r < dm.seq * batch; ++r)
      for (int64_t k = 0; k < GH; ++k) xw[static_cast<size_t>(r * GH + k)] += B[k];
  const C* Rb = B ? B + GH : nullptr;  // recurrence bias

  std::vector<C> hr(static_cast<size_t>(batch * GH));  // H·R^T (+ Rb) of the current step
  std::vector<C> rh(static_cast<size_t>(batch * H));   // GRU: r ⊙ H_prev
  std::vector<C> hnew(static_cast<size_t>(H)), cnew(static_cast<size_t>(H));

  for (int64_t k = 0; k < dm.seq; ++k) {
    bool any = false;
    for (int64_t b = 0; b < batch; ++b) any |= k < lens[static_cast<size_t>(b)];
    if (!any) break;
    // Recurrent projection. For GRU without linear_before_reset the h gate needs r first, so only
    // the z and r columns are computed here.
    const int64_t ncols = (cell == Cell::GRU && !cp.linear_before_reset) ? 2 * H : GH;
    gemm(false, true, batch, ncols, H, Hs, H, R, H, hr.data(), GH);
    if (Rb)
      for (int64_t b = 0; b < batch; ++b)
        for (int64_t j = 0; j < ncols; ++j) hr[static_cast<size_t>(b * GH + j)] += Rb[j];
    if (cell == Cell::GRU && !cp.linear_before_reset) {
      // rh = r ⊙ H_prev for every row (rows past their length are computed but never used).
      for (int64_t b = 0; b < batch; ++b) {
        int64_t L = lens[static_cast<size_t>(b)];
        int64_t t = k < L ? (reverse ? L - 1 - k : k) : 0;
        const C* x = &xw[static_cast<size_t>((t * batch + b) * GH)];
        for (int64_t j = 0; j < H; ++j) {
          C r = act[0](clip(x[H + j] + hr[static_cast<size_t>(b * GH + H + j)]));
          rh[static_cast<size_t>(b * H + j)] = r * Hs[b * H + j];
        }
      }
      gemm(false, true, batch, H, H, rh.data(), H, R + 2 * H * H, H, hr.data() + 2 * H, GH);
      if (Rb)
        for (int64_t b = 0; b < batch; ++b)
          for (int64_t j = 0; j < H; ++j) hr[static_cast<size_t>(b * GH + 2 * H + j)] += Rb[2 * H + j];
    }

    for (int64_t b = 0; b < batch; ++b) {
      const int64_t L = lens[static_cast<size_t>(b)];
      if (k >= L) continue;  // this entry has finished: its state stays as it was
      const int64_t t = reverse ? L - 1 - k : k;
      const C* x = &xw[static_cast<size_t>((t * batch + b) * GH)];
      const C* h = &hr[static_cast<size_t>(b * GH)];
      C* hp = Hs + b * H;
      switch (cell) {
        case Cell::RNN:
          for (int64_t j = 0; j < H; ++j) hnew[j] = act[0](clip(x[j] + h[j]));
          break;
        case Cell::GRU:
          // Gate order z, r, h. h[2H..] is either (r ⊙ H)·Rh^T + Rbh or H·Rh^T + Rbh (linear_before_reset).
          for (int64_t j = 0; j < H; ++j) {
            C z = act[0](clip(x[j] + h[j]));
            C r = act[0](clip(x[H + j] + h[H + j]));
            C pre = cp.linear_before_reset ? x[2 * H + j] + r * h[2 * H + j] : x[2 * H + j] + h[2 * H + j];
            C hh = act[1](clip(pre));
            hnew[j] = (C(1) - z) * hh + z * hp[j];
          }
          break;
        case Cell::LSTM: {
          // Gate order i, o, f, c; peepholes P = [Pi, Po, Pf].
          C* cp_ = Cs + b * H;
          for (int64_t j = 0; j < H; ++j) {
            C pi = P ? P[j] : C(0), po = P ? P[H + j] : C(0), pf = P ? P[2 * H + j] : C(0);
            C i = act[0](clip(x[j] + h[j] + pi * cp_[j]));
            // input_forget couples the gates: what is written is what is forgotten.
            C f = cp.input_forget ? C(1) - i : act[0](clip(x[2 * H + j] + h[2 * H + j] + pf * cp_[j]));
            C g = act[1](clip(x[3 * H + j] + h[3 * H + j]));
            C c = f * cp_[j] + i * g;
            C o = act[0](clip(x[H + j] + h[H + j] + po * c));
            cnew[j] = c;
            hnew[j] = o * act[2](c);
          }
          std::copy(cnew.begin(), cnew.end(), cp_);
          break;
        }
      }
      std::copy(hnew.begin(), hnew.end(), hp);
      if (Y) std::copy(hnew.begin(), hnew.end(), Y + ((t * dm.dirs + d) * batch + b) * H);
    }
  }
}

template <class C>
void rnn_compute(KernelContext& ctx, Cell cell, const Dims& dm, const CellParams& cp, const std::vector<int64_t>& lens) {
  const int64_t H = dm.hidden, GH = dm.gates * H;
  std::vector<C> X = to_compute<C>(ctx.input(0));
  if (dm.batch_major) X = swap01(X, dm.batch, dm.seq, dm.input);
  std::vector<C> W = to_compute<C>(ctx.input(1)), R = to_compute<C>(ctx.input(2));
  std::vector<C> B, P;
  if (ctx.has_input(3)) B = to_compute<C>(ctx.input(3));
  if (cell == Cell::LSTM && ctx.has_input(7)) P = to_compute<C>(ctx.input(7));
  const size_t state_n = static_cast<size_t>(dm.dirs * dm.batch * H);
  auto initial = [&](size_t idx) {
    if (!ctx.has_input(idx)) return std::vector<C>(state_n, C(0));
    auto v = to_compute<C>(ctx.input(idx));
    return dm.batch_major ? swap01(v, dm.batch, dm.dirs, H) : v;
  };
  std::vector<C> Hs = initial(5);
  std::vector<C> Cs = cell == Cell::LSTM ? initial(6) : std::vector<C>();

  const bool want_y = ctx.output_wanted(0);
  std::vector<C> Y(want_y ? static_cast<size_t>(dm.seq * dm.dirs * dm.batch * H) : 0, C(0));
  const bool reverse_only = ctx.node().attr_s("direction", "forward") == "reverse";
  for (int64_t d = 0; d < dm.dirs; ++d) {
    run_direction<C>(cell, dm, d, reverse_only || d == 1, cp, X, W.data() + d * GH * dm.input, R.data() + d * GH * H,
                     B.empty() ? nullptr : B.data() + d * 2 * GH, P.empty() ? nullptr : P.data() + d * 3 * H, lens,
                     want_y ? Y.data() : nullptr, Hs.data() + d * dm.batch * H,
                     Cs.empty() ? nullptr : Cs.data() + d * dm.batch * H);
  }

  const DType dt = ctx.input(0).dtype();
  if (want_y) {
    Shape s = dm.batch_major ? Shape{dm.batch, dm.seq, dm.dirs, H} : Shape{dm.seq, dm.dirs, dm.batch, H};
    // [seq, dirs, batch, H] -> [batch, seq, dirs, H] is a swap of axis 0 with the merged (seq,dirs).
    if (dm.batch_major) Y = swap01(Y, dm.seq * dm.dirs, dm.batch, H);
    from_compute_into(Y, ctx.alloc_output(0, dt, s));
  }
  Shape ss = dm.batch_major ? Shape{dm.batch, dm.dirs, H} : Shape{dm.dirs, dm.batch, H};
  if (ctx.output_wanted(1)) from_compute_into(dm.batch_major ? swap01(Hs, dm.dirs, dm.batch, H) : Hs, ctx.alloc_output(1, dt, ss));
  if (cell == Cell::LSTM && ctx.output_wanted(2))
    from_compute_into(dm.batch_major ? swap01(Cs, dm.dirs, dm.batch, H) : Cs, ctx.alloc_output(2, dt, ss));
}

void rnn_common(KernelContext& ctx, Cell cell) {
  std::vector<int64_t> lens;
  Dims dm = validate(ctx, cell, lens);
  const auto& n = ctx.node();
  CellParams cp;
  std::vector<std::string> defaults = cell == Cell::RNN   ? std::vector<std::string>{"Tanh"}
                                      : cell == Cell::GRU ? std::vector<std::string>{"Sigmoid", "Tanh"}
                                                          : std::vector<std::string>{"Sigmoid", "Tanh", "Tanh"};
  cp.acts = parse_activations(ctx, defaults, dm.dirs);
  if (n.has_attr("clip")) {
    cp.clip = true;
    cp.clip_value = n.attr_f("clip", 0);
    ctx.check(cp.clip_value > 0, "attribute 'clip' must be positive, got {}", cp.clip_value);
  }
  if (cell == Cell::GRU) {
    int64_t lbr = n.attr_i("linear_before_reset", 0);
    ctx.check(lbr == 0 || lbr == 1, "attribute 'linear_before_reset' must be 0 or 1, got {}", lbr);
    cp.linear_before_reset = lbr == 1;
  }
  if (cell == Cell::LSTM) {
    int64_t inf = n.attr_i("input_forget", 0);
    ctx.check(inf == 0 || inf == 1, "attribute 'input_forget' must be 0 or 1, got {}", inf);
    cp.input_forget = inf == 1;
  }
  if (ctx.input(0).dtype() == DType::Float64) rnn_compute<double>(ctx, cell, dm, cp, lens);
  else rnn_compute<float>(ctx, cell, dm, cp, lens);
}

void rnn_kernel(KernelContext& ctx) { rnn_common(ctx, Cell::RNN); }
void gru_kernel(KernelContext& ctx) { rnn_common(ctx, Cell::GRU); }
void lstm_kernel(KernelContext& ctx) { rnn_common(ctx, Cell::LSTM); }

}  // namespace

void register_rnn(Registry& r) {
  // Opset 1 differs only by the output_sequence attribute (whether Y is produced), which the
  // graph already states by naming or omitting the output; GRU-1 lacks linear_before_reset (it
  // then defaults to 0); opset 14 adds layout.
  r.add({"RNN", "", 1, 17, "float16, float, double", rnn_kernel});
  r.add({"GRU", "", 1, 17, "float16, float, double", gru_kernel});
  r.add({"LSTM", "", 1, 17, "float16, float, double", lstm_kernel});
}

}  // namespace opennpu::cpu
