// cpu/kernels/math.cpp — linear-algebra reference kernels: MatMul, Gemm, Einsum, Det.
// Float32 matrix products go through the OpenBLAS sgemm of cpu/gemm.h, float64 through dgemm;
// float16/bfloat16 are widened to float32, multiplied and rounded back once (float_staging.h).
// Integer MatMul/Gemm (opset 9+) use plain loops in the unsigned type of the same width, i.e.
// two's-complement wrap-around like numpy, never undefined signed overflow.
#include <algorithm>
#include <cmath>
#include <initializer_list>
#include <map>
#include <string>

#include "core/parallel.h"
#include "cpu/gemm.h"
#include "cpu/kernels/float_staging.h"
#include "cpu/util.h"

namespace opennpu::cpu {
namespace {

using DT = DType;

// Wrap-around integer arithmetic type: the unsigned type of T's width.
template <class T> using wrap_t = std::make_unsigned_t<T>;

// ---------------------------------------------------------------------------------------------
// MatMul: numpy.matmul semantics. A 1-D A is a row vector [1,K] and a 1-D B a column vector [K,1];
// the added dim is removed from the result. Leading (batch) dims broadcast.

struct MatMulPlan {
  int64_t M = 0, N = 0, K = 0;
  std::vector<int64_t> off_a, off_b;  // element offset of each batch's A and B matrix
};

void matmul_float_batches(const MatMulPlan& p, const Tensor& A, const Tensor& B, Tensor& Y) {
  dispatch_compute(A.dtype(), [&](auto tag) {
    using Tc = typename decltype(tag)::type;
    std::vector<Tc> ta, tb;
    const Tc* a = widen(A, ta);
    const Tc* b = widen(B, tb);
    OutBuf<Tc> y(Y);
    const int64_t nb = static_cast<int64_t>(p.off_a.size());
    if (p.K == 0 || p.M == 0 || p.N == 0) { y.commit(); return; }  // Y is already all zeros
    // One B for every batch and A's batches back to back: the batches are just more rows of A,
    // so a single large GEMM does it (the common Linear-layer case [batch, seq, K] x [K, N]).
    bool fold = true;
    for (int64_t i = 0; i < nb && fold; ++i) fold = p.off_b[i] == 0 && p.off_a[i] == i * p.M * p.K;
    if (fold) {
      gemm(false, false, nb * p.M, p.N, p.K, Tc(1), a, p.K, b, p.N, Tc(0), y.data(), p.N);
    } else {
      auto body = [&](int64_t lo, int64_t hi) {
        for (int64_t i = lo; i < hi; ++i)
          gemm(false, false, p.M, p.N, p.K, Tc(1), a + p.off_a[i], p.K, b + p.off_b[i], p.N, Tc(0),
               y.data() + i * p.M * p.N, p.N);
      };
      // Many batches: one single-threaded GEMM per batch on each thread. Few: let BLAS thread each.
      if (nb >= num_threads()) parallel_for(nb, body); else body(0, nb);
    }
    y.commit();
  }, "MatMul");
}

template <class T>
void matmul_int_batches(const MatMulPlan& p, const Tensor& A, const Tensor& B, Tensor& Y) {
  using U = wrap_t<T>;
  const T* a = A.data<T>();
  const T* b = B.data<T>();
  T* y = Y.data<T>();
  const int64_t nb = static_cast<int64_t>(p.off_a.size());
  parallel_for(nb * p.M, [&](int64_t lo, int64_t hi) {
    std::vector<U> acc(static_cast<size_t>(p.N));
    for (int64_t r = lo; r < hi; ++r) {
      int64_t bi = r / p.M, i = r % p.M;
      std::fill(acc.begin(), acc.end(), U(0));
      const T* arow = a + p.off_a[bi] + i * p.K;
      for (int64_t k = 0; k < p.K; ++k) {
        const T* brow = b + p.off_b[bi] + k * p.N;
        U av = static_cast<U>(arow[k]);
        for (int64_t j = 0; j < p.N; ++j) acc[j] += av * static_cast<U>(brow[j]);
      }
      for (int64_t j = 0; j < p.N; ++j) y[r * p.N + j] = static_cast<T>(acc[j]);
    }
  });
}

void MatMul(KernelContext& ctx) {
  const Tensor& A = ctx.input(0);
  const Tensor& B = ctx.input(1);
  if (ctx.opset() < 9) check_dtype_in(ctx, A, {DT::Float16, DT::Float32, DT::Float64}, "input A");
  else if (ctx.opset() < 13)
    check_dtype_in(ctx, A, {DT::Float16, DT::Float32, DT::Float64, DT::Int32, DT::Int64, DT::UInt32, DT::UInt64}, "input A");
  else
    check_dtype_in(ctx, A, {DT::Float16, DT::Float32, DT::Float64, DT::BFloat16, DT::Int32, DT::Int64, DT::UInt32, DT::UInt64},
                   "input A");
  ctx.check(B.dtype() == A.dtype(), "inputs A ({}) and B ({}) must have the same dtype", dtype_name(A.dtype()),
            dtype_name(B.dtype()));
  ctx.check(A.rank() >= 1 && B.rank() >= 1, "inputs must have rank >= 1, got A {} and B {}", shape_str(A.shape()),
            shape_str(B.shape()));
  Shape a = A.shape(), b = B.shape();
  const bool a_vec = a.size() == 1, b_vec = b.size() == 1;
  if (a_vec) a.insert(a.begin(), 1);
  if (b_vec) b.push_back(1);
  MatMulPlan p;
  p.M = a[a.size() - 2];
  p.K = a.back();
  p.N = b.back();
  ctx.check(b[b.size() - 2] == p.K, "inner dimensions differ: A {} has K={} but B {} has K={}", shape_str(A.shape()), p.K,
            shape_str(B.shape()), b[b.size() - 2]);
  Shape ba(a.begin(), a.end() - 2), bb(b.begin(), b.end() - 2);
  Shape batch = broadcast_shapes({ba, bb}, ctx.node().where() + ": MatMul batch dims");
  Shape out = batch;
  if (!a_vec) out.push_back(p.M);
  if (!b_vec) out.push_back(p.N);
  Tensor& Y = ctx.alloc_output(0, A.dtype(), out);
  const int64_t nb = checked_numel(batch, "MatMul batch");
  p.off_a.resize(nb);
  p.off_b.resize(nb);
  BroadcastIter it(batch, {broadcast_strides(ba, batch), broadcast_strides(bb, batch)});
  for (int64_t i = 0; i < nb; ++i, it.next()) {
    p.off_a[i] = it.offset(0) * p.M * p.K;
    p.off_b[i] = it.offset(1) * p.K * p.N;
  }
  if (dtype_is_float(A.dtype())) { matmul_float_batches(p, A, B, Y); return; }
  switch (A.dtype()) {
    case DT::Int32: matmul_int_batches<int32_t>(p, A, B, Y); break;
    case DT::Int64: matmul_int_batches<int64_t>(p, A, B, Y); break;
    case DT::UInt32: matmul_int_batches<uint32_t>(p, A, B, Y); break;
    case DT::UInt64: matmul_int_batches<uint64_t>(p, A, B, Y); break;
    default: ctx.fail("unsupported dtype {}", dtype_name(A.dtype()));
  }
}

// ---------------------------------------------------------------------------------------------
// Gemm: Y = alpha * op(A) * op(B) + beta * C, op = optional transpose, C unidirectionally
// broadcast to [M, N] (optional from opset 11; before opset 7 only with broadcast=1, otherwise
// C must already be [M, N]).

template <class T>
void gemm_int(const Tensor& A, const Tensor& B, const Tensor* C, Tensor& Y, bool ta, bool tb, int64_t M, int64_t N,
              int64_t K, T alpha, T beta) {
  using U = wrap_t<T>;
  const T* a = A.data<T>();
  const T* b = B.data<T>();
  T* y = Y.data<T>();
  std::vector<int64_t> cs = C ? broadcast_strides(C->shape(), {M, N}) : std::vector<int64_t>{0, 0};
  parallel_for(M, [&](int64_t lo, int64_t hi) {
    for (int64_t i = lo; i < hi; ++i)
      for (int64_t j = 0; j < N; ++j) {
        U acc = 0;
        for (int64_t k = 0; k < K; ++k) {
          T av = ta ? a[k * M + i] : a[i * K + k];
          T bv = tb ? b[j * K + k] : b[k * N + j];
          acc += static_cast<U>(av) * static_cast<U>(bv);
        }
        U r = static_cast<U>(alpha) * acc;
        if (C) r += static_cast<U>(beta) * static_cast<U>(C->data<T>()[i * cs[0] + j * cs[1]]);
        y[i * N + j] = static_cast<T>(r);
      }
  });
}

void Gemm(KernelContext& ctx) {
  const Tensor& A = ctx.input(0);
  const Tensor& B = ctx.input(1);
  const Tensor* C = ctx.opset() >= 11 ? ctx.optional_input(2) : &ctx.input(2);
  if (ctx.opset() < 9) check_dtype_in(ctx, A, {DT::Float16, DT::Float32, DT::Float64}, "input A");
  else if (ctx.opset() < 13)
    check_dtype_in(ctx, A, {DT::Float16, DT::Float32, DT::Float64, DT::Int32, DT::Int64, DT::UInt32, DT::UInt64}, "input A");
  else
    check_dtype_in(ctx, A, {DT::Float16, DT::Float32, DT::Float64, DT::BFloat16, DT::Int32, DT::Int64, DT::UInt32, DT::UInt64},
                   "input A");
  ctx.check(B.dtype() == A.dtype() && (!C || C->dtype() == A.dtype()), "inputs A, B, C must share one dtype");
  ctx.check(A.rank() == 2 && B.rank() == 2, "A and B must be 2-D, got {} and {}", shape_str(A.shape()),
            shape_str(B.shape()));
  const bool ta = ctx.node().attr_i("transA", 0) != 0, tb = ctx.node().attr_i("transB", 0) != 0;
  const float alpha = ctx.node().attr_f("alpha", 1.0f), beta = ctx.node().attr_f("beta", 1.0f);
  const int64_t M = ta ? A.dim(1) : A.dim(0), K = ta ? A.dim(0) : A.dim(1);
  const int64_t N = tb ? B.dim(0) : B.dim(1), KB = tb ? B.dim(1) : B.dim(0);
  ctx.check(K == KB, "inner dimensions differ: op(A) is [{},{}] but op(B) is [{},{}] (transA={}, transB={})", M, K, KB, N,
            int(ta), int(tb));
  if (C) {
    ctx.check(C->rank() <= 2, "C must have rank <= 2, got {}", shape_str(C->shape()));
    Shape mn = {M, N};
    bool ok = true;
    for (int64_t i = 0; i < C->rank(); ++i) {
      int64_t d = C->dim(C->rank() - 1 - i);
      ok = ok && (d == 1 || d == mn[1 - i]);
    }
    ctx.check(ok, "C {} cannot be broadcast to [{},{}]", shape_str(C->shape()), M, N);
    if (ctx.opset() < 7 && ctx.node().attr_i("broadcast", 0) == 0)
      ctx.check(C->shape() == mn, "C {} must be [{},{}] when broadcast=0", shape_str(C->shape()), M, N);
  }
  Tensor& Y = ctx.alloc_output(0, A.dtype(), {M, N});
  if (!dtype_is_float(A.dtype())) {
    switch (A.dtype()) {
      case DT::Int32: gemm_int<int32_t>(A, B, C, Y, ta, tb, M, N, K, int32_t(alpha), int32_t(beta)); break;
      case DT::Int64: gemm_int<int64_t>(A, B, C, Y, ta, tb, M, N, K, int64_t(alpha), int64_t(beta)); break;
      case DT::UInt32: gemm_int<uint32_t>(A, B, C, Y, ta, tb, M, N, K, uint32_t(alpha), uint32_t(beta)); break;
      case DT::UInt64: gemm_int<uint64_t>(A, B, C, Y, ta, tb, M, N, K, uint64_t(alpha), uint64_t(beta)); break;
      default: ctx.fail("unsupported dtype {}", dtype_name(A.dtype()));
    }
    return;
  }
  dispatch_compute(A.dtype(), [&](auto tag) {
    using Tc = typename decltype(tag)::type;
    std::vector<Tc> ta_buf, tb_buf, tc_buf;
    const Tc* a = widen(A, ta_buf);
    const Tc* b = widen(B, tb_buf);
    OutBuf<Tc> y(Y);
    Tc* yp = y.data();
    if (C) {
      // Y starts as beta * broadcast(C) (computed even for beta = 0 so a NaN/Inf in C propagates
      // as in the definition), then the GEMM accumulates into it.
      const Tc* c = widen(*C, tc_buf);
      std::vector<int64_t> cs = broadcast_strides(C->shape(), {M, N});
      for (int64_t i = 0; i < M; ++i)
        for (int64_t j = 0; j < N; ++j) yp[i * N + j] = Tc(beta) * c[i * cs[0] + j * cs[1]];
    }
    if (K > 0) gemm(ta, tb, M, N, K, Tc(alpha), a, A.dim(1), b, B.dim(1), C ? Tc(1) : Tc(0), yp, N);
    y.commit();
  }, "Gemm");
}

// ---------------------------------------------------------------------------------------------
// Einsum (opset 12): numpy.einsum semantics. Labels are letters (case-sensitive); "..." stands
// for the broadcast dims not named by letters (right-aligned across inputs, as in numpy). A label
// repeated inside one term takes the diagonal; labels missing from the output are summed over.
// Implicit output ("ij,jk"): the "..." dims, then the letters used exactly once, sorted (ASCII:
// upper case first). A plain two-operand contraction of floats runs as a batched GEMM
// (einsum_as_gemm); everything else (diagonals, broadcasting, 1 or 3+ operands, integers) by one
// loop over (output index, summed index), accumulating in double for floats and with
// wrap-around for integers.

constexpr int kEllipsisBase = 256;  // label ids >= this are "..." dims; letters keep their ASCII code

struct EinsumTerm {
  std::vector<int> before, after;  // letters before / after the "..."
  bool ellipsis = false;
};

EinsumTerm parse_einsum_term(const KernelContext& ctx, const std::string& s, const std::string& eq) {
  EinsumTerm t;
  for (size_t i = 0; i < s.size(); ++i) {
    char ch = s[i];
    if ((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z')) {
      (t.ellipsis ? t.after : t.before).push_back(static_cast<unsigned char>(ch));
    } else if (ch == '.') {
      ctx.check(s.compare(i, 3, "...") == 0 && !t.ellipsis, "equation '{}': '.' must appear as one '...' per term", eq);
      t.ellipsis = true;
      i += 2;
    } else {
      ctx.fail("equation '{}': unexpected character '{}' (labels must be letters)", eq, ch);
    }
  }
  return t;
}

struct EinsumPlan {
  std::vector<int> out_labels;                 // output dims in order
  std::vector<int> sum_labels;                 // summed labels
  std::map<int, int64_t> size;                 // label -> extent
  std::vector<std::map<int, int64_t>> stride;  // per input: label -> element stride (summed for diagonals)
  std::vector<std::vector<int>> labels;        // per input: the label of each dim
};

EinsumPlan plan_einsum(const KernelContext& ctx, const std::string& equation, const std::vector<const Tensor*>& ins) {
  std::string eq;
  for (char ch : equation)
    if (ch != ' ') eq += ch;
  std::string lhs = eq, rhs;
  const size_t arrow = eq.find("->");
  const bool explicit_out = arrow != std::string::npos;
  if (explicit_out) {
    lhs = eq.substr(0, arrow);
    rhs = eq.substr(arrow + 2);
  }
  std::vector<std::string> terms{""};
  for (char ch : lhs) {
    if (ch == ',') terms.emplace_back(); else terms.back() += ch;
  }
  ctx.check(terms.size() == ins.size(), "equation '{}' has {} input terms but the node has {} inputs", equation,
            terms.size(), ins.size());
  // Expand every term to one label per dim.
  std::vector<std::vector<int>> labels(ins.size());
  std::vector<EinsumTerm> parsed;
  int64_t ell_rank = 0;
  for (size_t i = 0; i < ins.size(); ++i) {
    parsed.push_back(parse_einsum_term(ctx, terms[i], equation));
    const EinsumTerm& t = parsed.back();
    const int64_t named = static_cast<int64_t>(t.before.size() + t.after.size());
    if (t.ellipsis)
      ctx.check(ins[i]->rank() >= named, "equation '{}': term '{}' names {} dims but input {} has rank {}", equation,
                terms[i], named, i, ins[i]->rank());
    else
      ctx.check(ins[i]->rank() == named, "equation '{}': term '{}' names {} dims but input {} has rank {}", equation,
                terms[i], named, i, ins[i]->rank());
    ell_rank = std::max(ell_rank, ins[i]->rank() - named);
  }
  for (size_t i = 0; i < ins.size(); ++i) {
    const EinsumTerm& t = parsed[i];
    const int64_t e = ins[i]->rank() - static_cast<int64_t>(t.before.size() + t.after.size());
    labels[i] = t.before;
    for (int64_t j = 0; j < e; ++j) labels[i].push_back(kEllipsisBase + static_cast<int>(ell_rank - e + j));
    labels[i].insert(labels[i].end(), t.after.begin(), t.after.end());
  }
  EinsumPlan p;
  p.labels = labels;
  p.stride.resize(ins.size());
  std::map<int, int> count;  // letter -> number of appearances over all terms
  std::vector<int> first_seen;
  for (size_t i = 0; i < ins.size(); ++i) {
    std::vector<int64_t> st = strides_of(ins[i]->shape());
    std::map<int, int64_t> extent_here;
    for (size_t d = 0; d < labels[i].size(); ++d) {
      const int l = labels[i][d];
      const int64_t n = ins[i]->dim(static_cast<int64_t>(d));
      if (l < kEllipsisBase) ++count[l];
      if (!p.size.count(l)) { p.size[l] = n; first_seen.push_back(l); }
      // Extents broadcast numpy-style: equal, or 1 (which then repeats along that label).
      int64_t& s = p.size[l];
      ctx.check(n == s || n == 1 || s == 1, "equation '{}': label '{}' has extent {} in input {} but {} elsewhere", equation,
                l < kEllipsisBase ? std::string(1, char(l)) : std::string("..."), n, i, s);
      if (s == 1) s = n;
      if (extent_here.count(l))
        ctx.check(extent_here[l] == n, "equation '{}': repeated label '{}' in input {} has extents {} and {}", equation,
                  char(l), i, extent_here[l], n);
      extent_here[l] = n;
      if (n != 1) p.stride[i][l] += st[d];
    }
  }
  if (explicit_out) {
    EinsumTerm t = parse_einsum_term(ctx, rhs, equation);
    p.out_labels = t.before;
    if (t.ellipsis)
      for (int64_t j = 0; j < ell_rank; ++j) p.out_labels.push_back(kEllipsisBase + static_cast<int>(j));
    else
      ctx.check(ell_rank == 0, "equation '{}': inputs have '...' dims but the output does not name '...'", equation);
    p.out_labels.insert(p.out_labels.end(), t.after.begin(), t.after.end());
    for (size_t i = 0; i < p.out_labels.size(); ++i) {
      const int l = p.out_labels[i];
      ctx.check(p.size.count(l) != 0, "equation '{}': output label '{}' appears in no input", equation, char(l));
      ctx.check(std::count(p.out_labels.begin(), p.out_labels.end(), l) == 1,
                "equation '{}': output label '{}' is repeated", equation, char(l));
    }
  } else {
    for (int64_t j = 0; j < ell_rank; ++j) p.out_labels.push_back(kEllipsisBase + static_cast<int>(j));
    for (const auto& [l, c] : count)  // std::map: ASCII order
      if (c == 1) p.out_labels.push_back(l);
  }
  for (int l : first_seen)
    if (std::find(p.out_labels.begin(), p.out_labels.end(), l) == p.out_labels.end()) p.sum_labels.push_back(l);
  return p;
}

template <class T, class Acc>
void einsum_loop(const EinsumPlan& p, const std::vector<const Tensor*>& ins, Tensor& Y) {
  const size_t nin = ins.size();
  const size_t nout = p.out_labels.size(), nsum = p.sum_labels.size();
  auto stride_of = [&](size_t i, int l) {
    auto it = p.stride[i].find(l);
    return it == p.stride[i].end() ? int64_t(0) : it->second;
  };
  std::vector<int64_t> out_ext(nout), sum_ext(nsum);
  std::vector<std::vector<int64_t>> out_st(nin, std::vector<int64_t>(nout)), sum_st(nin, std::vector<int64_t>(nsum));
  int64_t sum_count = 1;
  for (size_t d = 0; d < nout; ++d) {
    out_ext[d] = p.size.at(p.out_labels[d]);
    for (size_t i = 0; i < nin; ++i) out_st[i][d] = stride_of(i, p.out_labels[d]);
  }
  for (size_t d = 0; d < nsum; ++d) {
    sum_ext[d] = p.size.at(p.sum_labels[d]);
    sum_count *= sum_ext[d];
    for (size_t i = 0; i < nin; ++i) sum_st[i][d] = stride_of(i, p.sum_labels[d]);
  }
  std::vector<const T*> data(nin);
  for (size_t i = 0; i < nin; ++i) data[i] = ins[i]->data<T>();
  T* y = Y.data<T>();
  parallel_for(Y.numel(), [&](int64_t lo, int64_t hi) {
    std::vector<int64_t> base(nin), off(nin), idx(nsum);
    for (int64_t o = lo; o < hi; ++o) {
      // Offsets of this output element in every input.
      std::fill(base.begin(), base.end(), 0);
      int64_t rem = o;
      for (int64_t d = static_cast<int64_t>(nout) - 1; d >= 0; --d) {
        const int64_t c = rem % out_ext[d];
        rem /= out_ext[d];
        for (size_t i = 0; i < nin; ++i) base[i] += c * out_st[i][d];
      }
      Acc acc = 0;
      off = base;
      std::fill(idx.begin(), idx.end(), 0);
      for (int64_t s = 0; s < sum_count; ++s) {
        Acc prod = 1;
        for (size_t i = 0; i < nin; ++i) prod *= static_cast<Acc>(static_cast<compute_t<T>>(data[i][off[i]]));
        acc += prod;
        for (int64_t d = static_cast<int64_t>(nsum) - 1; d >= 0; --d) {  // odometer over summed labels
          if (++idx[d] < sum_ext[d]) {
            for (size_t i = 0; i < nin; ++i) off[i] += sum_st[i][d];
            break;
          }
          for (size_t i = 0; i < nin; ++i) off[i] -= sum_st[i][d] * (sum_ext[d] - 1);
          idx[d] = 0;
        }
      }
      y[o] = static_cast<T>(static_cast<compute_t<T>>(acc));
    }
  });
}

// Copies the strided view (ext, st) of src into dst in row-major order of ext.
template <class T>
void gather_view(const T* src, const std::vector<int64_t>& ext, const std::vector<int64_t>& st, T* dst) {
  int64_t total = 1;
  for (int64_t e : ext) total *= e;
  std::vector<int64_t> idx(ext.size(), 0);
  int64_t off = 0;
  for (int64_t i = 0; i < total; ++i) {
    dst[i] = src[off];
    for (int64_t d = static_cast<int64_t>(ext.size()) - 1; d >= 0; --d) {
      if (++idx[d] < ext[d]) { off += st[d]; break; }
      off -= st[d] * (ext[d] - 1);
      idx[d] = 0;
    }
  }
}

// Two float operands without diagonals, broadcasting or one-sided sums are a batched matrix
// product: labels in A, B and the output are batch dims, A-and-output ones M, B-and-output ones
// N, A-and-B ones the contraction K. A and B are copied into [batch, M, K] / [batch, K, N]
// layout, multiplied with GEMM, and the product is permuted into the output order. Returns false
// (nothing done) when the equation does not have that form; the general loop handles it then.
bool einsum_as_gemm(const EinsumPlan& p, const std::vector<const Tensor*>& ins, Tensor& Y) {
  if (ins.size() != 2 || !dtype_is_float(Y.dtype())) return false;
  for (size_t i = 0; i < 2; ++i)
    for (size_t d = 0; d < p.labels[i].size(); ++d) {
      const int l = p.labels[i][d];
      if (std::count(p.labels[i].begin(), p.labels[i].end(), l) != 1) return false;  // diagonal
      if (ins[i]->dim(static_cast<int64_t>(d)) != p.size.at(l)) return false;          // broadcast
    }
  auto in = [&](size_t i, int l) { return std::find(p.labels[i].begin(), p.labels[i].end(), l) != p.labels[i].end(); };
  std::vector<int> batch, ms, ns, ks;
  for (int l : p.out_labels) (in(0, l) && in(1, l) ? batch : in(0, l) ? ms : ns).push_back(l);
  for (int l : p.sum_labels) {
    if (!in(0, l) || !in(1, l)) return false;  // summed over in one operand only
    ks.push_back(l);
  }
  auto extent = [&](const std::vector<int>& ls) {
    int64_t n = 1;
    for (int l : ls) n *= p.size.at(l);
    return n;
  };
  const int64_t nb = extent(batch), M = extent(ms), N = extent(ns), K = extent(ks);
  auto view = [&](size_t i, std::initializer_list<const std::vector<int>*> groups, std::vector<int64_t>& ext,
                  std::vector<int64_t>& st) {
    for (const auto* g : groups)
      for (int l : *g) {
        auto it = p.stride[i].find(l);  // absent for extent-1 dims
        ext.push_back(p.size.at(l));
        st.push_back(it == p.stride[i].end() ? 0 : it->second);
      }
  };
  dispatch_compute(Y.dtype(), [&](auto tag) {
    using Tc = typename decltype(tag)::type;
    std::vector<Tc> ta, tb;
    const Tc* a = widen(*ins[0], ta);
    const Tc* b = widen(*ins[1], tb);
    std::vector<Tc> a2(static_cast<size_t>(nb * M * K)), b2(static_cast<size_t>(nb * K * N)), c2(static_cast<size_t>(nb * M * N));
    std::vector<int64_t> ea, sa, eb, sb;
    view(0, {&batch, &ms, &ks}, ea, sa);
    view(1, {&batch, &ks, &ns}, eb, sb);
    gather_view(a, ea, sa, a2.data());
    gather_view(b, eb, sb, b2.data());
    if (K > 0 && M > 0 && N > 0) {
      auto body = [&](int64_t lo, int64_t hi) {
        for (int64_t i = lo; i < hi; ++i)
          gemm(false, false, M, N, K, Tc(1), a2.data() + i * M * K, K, b2.data() + i * K * N, N, Tc(0),
               c2.data() + i * M * N, N);
      };
      if (nb >= num_threads()) parallel_for(nb, body); else body(0, nb);
    }
    // c2 is [batch..., m..., n...]; read it in output-label order.
    std::vector<int> c_labels = batch;
    c_labels.insert(c_labels.end(), ms.begin(), ms.end());
    c_labels.insert(c_labels.end(), ns.begin(), ns.end());
    Shape c_shape;
    for (int l : c_labels) c_shape.push_back(p.size.at(l));
    const std::vector<int64_t> c_st = strides_of(c_shape);
    std::vector<int64_t> eo, so;
    for (int l : p.out_labels) {
      eo.push_back(p.size.at(l));
      so.push_back(c_st[std::find(c_labels.begin(), c_labels.end(), l) - c_labels.begin()]);
    }
    OutBuf<Tc> y(Y);
    gather_view(c2.data(), eo, so, y.data());
    y.commit();
  }, "Einsum");
  return true;
}

void Einsum(KernelContext& ctx) {
  ctx.check(ctx.num_inputs() >= 1, "needs at least one input");
  std::vector<const Tensor*> ins;
  for (size_t i = 0; i < ctx.num_inputs(); ++i) {
    ins.push_back(&ctx.input(i));
    ctx.check(ins[i]->dtype() == ins[0]->dtype(), "input {} has dtype {} but input 0 has {}", i,
              dtype_name(ins[i]->dtype()), dtype_name(ins[0]->dtype()));
  }
  check_dtype_in(ctx, *ins[0],
                 {DT::Float16, DT::Float32, DT::Float64, DT::BFloat16, DT::Int8, DT::Int16, DT::Int32, DT::Int64, DT::UInt8,
                  DT::UInt16, DT::UInt32, DT::UInt64},
                 "input 0");
  const std::string equation = ctx.node().attr_s("equation", "");
  ctx.check(!equation.empty(), "attribute 'equation' is required");
  EinsumPlan p = plan_einsum(ctx, equation, ins);
  Shape out;
  for (int l : p.out_labels) out.push_back(p.size.at(l));
  Tensor& Y = ctx.alloc_output(0, ins[0]->dtype(), out);
  if (Y.numel() == 0 || einsum_as_gemm(p, ins, Y)) return;
  dispatch_numeric(ins[0]->dtype(), [&](auto tag) {
    using T = typename decltype(tag)::type;
    if constexpr (std::is_same_v<T, bool>) {
      ctx.fail("bool is not a numeric type for Einsum");
    } else if constexpr (std::is_integral_v<T>) {
      // Sign-extend to 64 bits, multiply/add modulo 2^64, truncate: wrap-around in T's width.
      einsum_loop<T, uint64_t>(p, ins, Y);
    } else {
      einsum_loop<T, double>(p, ins, Y);
    }
  }, "Einsum");
}

// ---------------------------------------------------------------------------------------------
// Det (opset 11): determinant of each [M, M] matrix in the trailing two dims, by LU decomposition
// with partial pivoting in double precision.

double determinant(std::vector<double>& a, int64_t n) {
  double det = 1.0;
  for (int64_t c = 0; c < n; ++c) {
    int64_t piv = c;
    for (int64_t r = c + 1; r < n; ++r)
      if (std::fabs(a[r * n + c]) > std::fabs(a[piv * n + c])) piv = r;
    if (a[piv * n + c] == 0.0) return 0.0;  // singular
    if (piv != c) {
      for (int64_t k = 0; k < n; ++k) std::swap(a[c * n + k], a[piv * n + k]);
      det = -det;
    }
    const double d = a[c * n + c];
    det *= d;
    for (int64_t r = c + 1; r < n; ++r) {
      const double f = a[r * n + c] / d;
      if (f == 0.0) continue;
      for (int64_t k = c + 1; k < n; ++k) a[r * n + k] -= f * a[c * n + k];
    }
  }
  return det;
}

void Det(KernelContext& ctx) {
  const Tensor& X = ctx.input(0);
  check_dtype_in(ctx, X, {DT::Float16, DT::Float32, DT::Float64}, "input X");
  ctx.check(X.rank() >= 2 && X.dim(X.rank() - 1) == X.dim(X.rank() - 2),
            "input must be [*, M, M] (square matrices), got {}", shape_str(X.shape()));
  const int64_t n = X.dim(X.rank() - 1);
  Shape out(X.shape().begin(), X.shape().end() - 2);
  Tensor& Y = ctx.alloc_output(0, X.dtype(), out);
  dispatch_float(X.dtype(), [&](auto tag) {
    using T = typename decltype(tag)::type;
    const T* x = X.data<T>();
    T* y = Y.data<T>();
    parallel_for(Y.numel(), [&](int64_t lo, int64_t hi) {
      std::vector<double> a(static_cast<size_t>(n * n));
      for (int64_t b = lo; b < hi; ++b) {
        for (int64_t i = 0; i < n * n; ++i) a[i] = static_cast<double>(static_cast<compute_t<T>>(x[b * n * n + i]));
        y[b] = T(static_cast<compute_t<T>>(determinant(a, n)));
      }
    });
  }, "Det");
}

}  // namespace

void register_math(Registry& r) {
  const std::string f = "float16, float32, float64";
  const std::string fi = f + ", int32, int64, uint32, uint64";
  r.add({"MatMul", "", 1, 8, f, MatMul});
  r.add({"MatMul", "", 9, 12, fi, MatMul});
  r.add({"MatMul", "", 13, 17, fi + ", bfloat16", MatMul});
  r.add({"Gemm", "", 1, 6, f + " (C required; broadcast attribute)", Gemm});
  r.add({"Gemm", "", 7, 8, f + " (C required)", Gemm});
  r.add({"Gemm", "", 9, 10, fi + " (C required)", Gemm});
  r.add({"Gemm", "", 11, 12, fi, Gemm});
  r.add({"Gemm", "", 13, 17, fi + ", bfloat16", Gemm});
  r.add({"Einsum", "", 12, 17, "float16, bfloat16, float32, float64, int8-64, uint8-64", Einsum});
  r.add({"Det", "", 11, 17, f, Det});
}

}  // namespace opennpu::cpu
