// npu/sim/gemm_tile.cpp — per-fold cost of a GEMM on a systolic array (see gemm_tile.h).
#include "npu/sim/gemm_tile.h"

#include <fmt/format.h>

#include "opennpu/errors.h"

namespace opennpu::npu {

namespace {

void check_dims(int64_t M, int64_t K, int64_t N, int64_t R, int64_t C) {
  if (M < 1 || K < 1 || N < 1) throw Error(fmt::format("GEMM dimensions must be >= 1, got M={} K={} N={}", M, K, N));
  if (R < 1 || C < 1) throw Error(fmt::format("MAC array must be at least 1x1, got {}x{}", R, C));
  // Keep every product below 2^62 so cycle counts cannot overflow.
  constexpr int64_t kMax = int64_t{1} << 20;
  const double macs = static_cast<double>(M) * static_cast<double>(K) * static_cast<double>(N);
  if (macs > 4e18 || M > (int64_t{1} << 40) || K > (int64_t{1} << 40) || N > (int64_t{1} << 40) || R > kMax ||
      C > kMax)
    throw Error(fmt::format("GEMM {}x{}x{} on a {}x{} array is too large to cost", M, K, N, R, C));
}

int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

}  // namespace

GemmMapping map_gemm(int64_t M, int64_t K, int64_t N, Dataflow df) {
  switch (df) {
    case Dataflow::WS: return {K, N, M};
    case Dataflow::OS: return {M, N, K};
    case Dataflow::IS: return {K, M, N};
  }
  return {};
}

GemmTileCost gemm_tile_cost(int64_t M, int64_t K, int64_t N, int64_t R, int64_t C, Dataflow df) {
  check_dims(M, K, N, R, C);
  GemmTileCost g;
  g.map = map_gemm(M, K, N, df);
  g.folds_r = ceil_div(g.map.s_r, R);
  g.folds_c = ceil_div(g.map.s_c, C);
  g.folds = g.folds_r * g.folds_c;
  // Stationary dataflows shift the stationary block in from the array edge: R cycles.
  g.fill_cycles_per_fold = (df == Dataflow::OS) ? 0 : R;
  // The last of T skewed values enters row R-1 at cycle (T-1)+(R-1) and needs C-1 more cycles to
  // cross the columns; for os that is also the cycle of the last MAC (outputs drain in the shadow
  // of the next fold), for ws/is the partial sum leaves the bottom of column C-1 in that cycle.
  g.stream_cycles_per_fold = R + C + g.map.t - 2;
  g.cycles_per_fold = g.fill_cycles_per_fold + g.stream_cycles_per_fold;
  const double total = static_cast<double>(g.folds) * static_cast<double>(g.cycles_per_fold);
  if (total > 4e18) throw Error(fmt::format("GEMM {}x{}x{} on a {}x{} array: cycle count overflows", M, K, N, R, C));
  g.compute_cycles = g.folds * g.cycles_per_fold;
  g.useful_macs = M * K * N;
  g.utilization = static_cast<double>(M) * static_cast<double>(K) * static_cast<double>(N) /
                  (static_cast<double>(g.compute_cycles) * static_cast<double>(R) * static_cast<double>(C));
  return g;
}

int64_t scale_sim_formula_cycles(int64_t M, int64_t K, int64_t N, int64_t R, int64_t C, Dataflow df) {
  check_dims(M, K, N, R, C);
  int64_t sr, sc, t;
  if (df == Dataflow::WS) { sr = K; sc = N; t = M; }
  else if (df == Dataflow::OS) { sr = M; sc = N; t = K; }
  else { sr = K; sc = M; t = N; }
  int64_t folds = ((sr + R - 1) / R) * ((sc + C - 1) / C);
  return df == Dataflow::OS ? folds * (R + C + t - 2) : folds * (2 * R + C + t - 2);
}

}  // namespace opennpu::npu
