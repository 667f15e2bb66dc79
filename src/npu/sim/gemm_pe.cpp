// npu/sim/gemm_pe.cpp — the PE-level systolic array (see gemm_pe.h).
//
// Register updates: every PE reads its neighbour's register as it was at the end of the previous
// cycle. Updating the grid from the bottom-right corner backwards (row R-1 to 0, column C-1 to 0)
// means a PE's left and upper neighbours have not been overwritten yet when it reads them, so one
// set of plain arrays is enough (no double buffering, no allocation inside the cycle loop).
#include "npu/sim/gemm_pe.h"

#include <algorithm>
#include <cassert>

#include <fmt/format.h>

#include "npu/sim/gemm_tile.h"
#include "opennpu/errors.h"

namespace opennpu::npu {

namespace {

// A strided read-only matrix view that reads 0 outside its bounds: the zero padding of edge folds.
struct View {
  const float* p;
  int64_t rows, cols, rs, cs;  // element (i, j) is p[i*rs + j*cs]
  float at(int64_t i, int64_t j) const { return (i < rows && j < cols) ? p[i * rs + j * cs] : 0.0f; }
};

// A writable strided view of the output.
struct OutView {
  float* p;
  int64_t rs, cs;
  float& at(int64_t i, int64_t j) const { return p[i * rs + j * cs]; }
};

// The stationary engine, shared by ws and is. For one fold, PE(r, c) holds S(r0 + r, c0 + c);
// X(t, r0 + r) enters row r at stream cycle t + r; Y(t, c0 + c) += sum_r X(t, r0+r) * S(r0+r, c0+c)
// leaves the bottom of column c. Sizes: S is SR x SC, X is T x SR, Y is T x SC.
class StationaryArray {
 public:
  StationaryArray(int64_t R, int64_t C)
      : R_(R), C_(C), w_(R * C), x_(R * C), xtag_(R * C), psum_(R * C), ptag_(R * C) {}

  // Returns the cycles this fold took (fill + stream); adds the fill cycles to *fill and the
  // useful MACs to *useful.
  int64_t run_fold(const View& S, const View& X, const OutView& Y, int64_t r0, int64_t c0, int64_t* fill,
                   int64_t* useful) {
    const int64_t R = R_, C = C_, T = X.rows;
    float* w = w_.data();
    float* x = x_.data();
    int64_t* xtag = xtag_.data();
    float* psum = psum_.data();
    int64_t* ptag = ptag_.data();
    const int64_t rows_real = std::min<int64_t>(R, S.rows - r0);  // rows holding real (unpadded) data
    const int64_t cols_real = std::min<int64_t>(C, S.cols - c0);

    // Fill: each cycle a row of the stationary block enters the top and every row shifts down
    // one PE; the block's last row enters first, so after R cycles row r holds S(r0 + r, .).
    int64_t cycles = 0;
    for (int64_t f = 0; f < R; ++f, ++cycles) {
      for (int64_t r = R - 1; r >= 1; --r)
        for (int64_t c = 0; c < C; ++c) w[r * C + c] = w[(r - 1) * C + c];
      for (int64_t c = 0; c < C; ++c) w[c] = S.at(r0 + (R - 1 - f), c0 + c);
    }
    *fill += cycles;

    // Stream: the array starts empty; run until the last operand has left it.
    for (int64_t i = 0; i < R * C; ++i) { xtag[i] = -1; ptag[i] = -1; x[i] = 0; psum[i] = 0; }
    const int64_t feed_end = T + R - 1;  // row R-1 takes its last value at cycle T-1 + R-1
    for (int64_t s = 0;; ++s) {
      bool busy = false;
      for (int64_t r = R - 1; r >= 0; --r) {
        for (int64_t c = C - 1; c >= 0; --c) {
          const int64_t i = r * C + c;
          // The streaming operand: from the skewed edge feeder in column 0, else from the left.
          if (c == 0) {
            const int64_t t = s - r;
            const bool in = t >= 0 && t < T;
            x[i] = in ? X.at(t, r0 + r) : 0.0f;
            xtag[i] = in ? t : -1;
          } else {
            x[i] = x[i - 1];
            xtag[i] = xtag[i - 1];
          }
          // The partial sum from the PE above (zero entering the top row), plus this PE's product.
          const float pin = r == 0 ? 0.0f : psum[i - C];
          const int64_t pin_tag = r == 0 ? xtag[i] : ptag[i - C];
          if (xtag[i] >= 0) {
            // The skew lines up operand t and partial sum t in every PE; anything else is a bug.
            assert(pin_tag == xtag[i]);
            psum[i] = pin + w[i] * x[i];
            ptag[i] = xtag[i];
            busy = true;
            if (r < rows_real && c < cols_real) ++*useful;
          } else {
            assert(pin_tag < 0);
            psum[i] = 0.0f;
            ptag[i] = -1;
          }
        }
      }
      if (!busy && s >= feed_end) break;
      ++cycles;
      // Sums leaving the bottom row this cycle are finished for this fold; folds over the rows of
      // S (the reduction) add up in the output buffer.
      const int64_t last = (R - 1) * C;
      for (int64_t c = 0; c < cols_real; ++c)
        if (ptag[last + c] >= 0) Y.at(ptag[last + c], c0 + c) += psum[last + c];
    }
    return cycles;
  }

 private:
  int64_t R_, C_;
  std::vector<float> w_, x_;
  std::vector<int64_t> xtag_;
  std::vector<float> psum_;
  std::vector<int64_t> ptag_;
};

// The output-stationary engine. For one fold PE(r, c) computes sum_t A(r0 + r, t) * B(t, c0 + c);
// A(., t) enters row r at cycle t + r and moves right, B(t, .) enters column c at cycle t + c and
// moves down, so the two operands of step t meet in PE(r, c) at cycle t + r + c.
class OutputStationaryArray {
 public:
  OutputStationaryArray(int64_t R, int64_t C)
      : R_(R), C_(C), a_(R * C), atag_(R * C), b_(R * C), btag_(R * C), acc_(R * C) {}

  int64_t run_fold(const View& A, const View& B, const OutView& Y, int64_t r0, int64_t c0, int64_t* useful) {
    const int64_t R = R_, C = C_, T = A.cols;
    float* a = a_.data();
    int64_t* atag = atag_.data();
    float* b = b_.data();
    int64_t* btag = btag_.data();
    float* acc = acc_.data();
    const int64_t rows_real = std::min<int64_t>(R, A.rows - r0);
    const int64_t cols_real = std::min<int64_t>(C, B.cols - c0);
    for (int64_t i = 0; i < R * C; ++i) { atag[i] = btag[i] = -1; a[i] = b[i] = acc[i] = 0; }

    int64_t cycles = 0;
    const int64_t feed_end = T + std::max(R, C) - 1;
    for (int64_t s = 0;; ++s) {
      bool busy = false;
      for (int64_t r = R - 1; r >= 0; --r) {
        for (int64_t c = C - 1; c >= 0; --c) {
          const int64_t i = r * C + c;
          if (c == 0) {
            const int64_t t = s - r;
            const bool in = t >= 0 && t < T;
            a[i] = in ? A.at(r0 + r, t) : 0.0f;
            atag[i] = in ? t : -1;
          } else {
            a[i] = a[i - 1];
            atag[i] = atag[i - 1];
          }
          if (r == 0) {
            const int64_t t = s - c;
            const bool in = t >= 0 && t < T;
            b[i] = in ? B.at(t, c0 + c) : 0.0f;
            btag[i] = in ? t : -1;
          } else {
            b[i] = b[i - C];
            btag[i] = btag[i - C];
          }
          if (atag[i] >= 0 || btag[i] >= 0) busy = true;
          if (atag[i] >= 0 && btag[i] >= 0) {
            assert(atag[i] == btag[i]);  // the skew makes step t's operands meet; anything else is a bug
            acc[i] += a[i] * b[i];
            if (r < rows_real && c < cols_real) ++*useful;
          } else {
            assert(atag[i] < 0 && btag[i] < 0);  // an operand never waits in a PE for its partner
          }
        }
      }
      if (!busy && s >= feed_end) break;
      ++cycles;
    }
    // The finished sums move to shadow registers and shift out while the next fold computes, so
    // the drain costs no array cycles (SCALE-Sim counts it the same way).
    for (int64_t r = 0; r < rows_real; ++r)
      for (int64_t c = 0; c < cols_real; ++c) Y.at(r0 + r, c0 + c) = acc[r * C + c];
    return cycles;
  }

 private:
  int64_t R_, C_;
  std::vector<float> a_;
  std::vector<int64_t> atag_;
  std::vector<float> b_;
  std::vector<int64_t> btag_;
  std::vector<float> acc_;
};

void check(int64_t M, int64_t K, int64_t N, int64_t R, int64_t C) {
  if (M < 1 || K < 1 || N < 1) throw Error(fmt::format("GEMM dimensions must be >= 1, got M={} K={} N={}", M, K, N));
  if (R < 1 || C < 1) throw Error(fmt::format("MAC array must be at least 1x1, got {}x{}", R, C));
  if (R > 4096 || C > 4096) throw Error(fmt::format("MAC array {}x{} is too large for the PE-level model", R, C));
  const double elems = static_cast<double>(M) * static_cast<double>(N);
  if (elems > 1e9) throw Error(fmt::format("GEMM output {}x{} is too large for the PE-level model", M, N));
}

}  // namespace

double gemm_pe_work(int64_t M, int64_t K, int64_t N, int64_t R, int64_t C, Dataflow df) {
  GemmTileCost t = gemm_tile_cost(M, K, N, R, C, df);
  return static_cast<double>(t.compute_cycles) * static_cast<double>(R) * static_cast<double>(C);
}

GemmPeResult simulate_gemm_pe(const float* a, const float* b, int64_t M, int64_t K, int64_t N, int64_t R, int64_t C,
                              Dataflow df) {
  check(M, K, N, R, C);
  GemmPeResult res;
  res.c.assign(static_cast<size_t>(M * N), 0.0f);
  const View A{a, M, K, K, 1};  // A(m, k)
  const View B{b, K, N, N, 1};  // B(k, n)
  OutView Cout{res.c.data(), N, 1};

  auto fold_loop = [&](int64_t SR, int64_t SC, auto&& run) {
    for (int64_t r0 = 0; r0 < SR; r0 += R)
      for (int64_t c0 = 0; c0 < SC; c0 += C) {
        res.compute_cycles += run(r0, c0);
        ++res.folds;
      }
  };

  if (df == Dataflow::OS) {
    OutputStationaryArray arr(R, C);
    fold_loop(M, N, [&](int64_t r0, int64_t c0) { return arr.run_fold(A, B, Cout, r0, c0, &res.useful_macs); });
  } else if (df == Dataflow::WS) {
    // Stationary S = B (K x N), streaming X = A (T = M rows), Y = C (M x N).
    StationaryArray arr(R, C);
    fold_loop(K, N, [&](int64_t r0, int64_t c0) {
      return arr.run_fold(B, A, Cout, r0, c0, &res.fill_cycles, &res.useful_macs);
    });
  } else {
    // Stationary S(k, m) = A(m, k), streaming X(n, k) = B(k, n) (T = N), Y(n, m) = C(m, n).
    const View S{a, K, M, 1, K};
    const View X{b, N, K, 1, N};
    OutView Y{res.c.data(), 1, N};
    StationaryArray arr(R, C);
    fold_loop(K, M, [&](int64_t r0, int64_t c0) {
      return arr.run_fold(S, X, Y, r0, c0, &res.fill_cycles, &res.useful_macs);
    });
  }
  res.stall_cycles = 0;
  res.cycles = res.compute_cycles + res.stall_cycles;
  return res;
}

}  // namespace opennpu::npu
