// Single-GEMM simulators: the PE-level array, the tile-level cost and the SCALE-Sim closed form
// agree on the cycle count for every shape, and the PE array computes the right product.
#include <cfloat>
#include <cmath>
#include <random>
#include <vector>

#include <gtest/gtest.h>

#include "npu/sim/gemm_pe.h"
#include "npu/sim/gemm_tile.h"
#include "opennpu/errors.h"

using namespace opennpu;
using namespace opennpu::npu;

namespace {

std::vector<float> random_values(std::mt19937_64& rng, int64_t n) {
  std::uniform_real_distribution<float> d(-1.0f, 1.0f);
  std::vector<float> v(static_cast<size_t>(n));
  for (auto& x : v) x = d(rng);
  return v;
}

// Every element within the recursive-summation bound of a double-precision triple loop.
void expect_product(const std::vector<float>& a, const std::vector<float>& b, const std::vector<float>& c, int64_t M,
                    int64_t K, int64_t N) {
  ASSERT_EQ(c.size(), static_cast<size_t>(M * N));
  int bad = 0;
  for (int64_t i = 0; i < M; ++i)
    for (int64_t j = 0; j < N; ++j) {
      double ref = 0, mag = 0;
      for (int64_t k = 0; k < K; ++k) {
        double p = static_cast<double>(a[i * K + k]) * b[k * N + j];
        ref += p;
        mag += std::fabs(p);
      }
      double tol = static_cast<double>(K + 1) * FLT_EPSILON * mag + 1e-30;
      if (!(std::fabs(c[i * N + j] - ref) <= tol) && bad++ < 5)
        ADD_FAILURE() << "C[" << i << "," << j << "] = " << c[i * N + j] << ", want " << ref << " (tol " << tol << ")";
    }
}

struct Shape { int64_t M, K, N, R, C; };

// Check PE == tile == formula, the bookkeeping, and the values, for one shape.
void check_shape(const Shape& s, Dataflow df, uint64_t seed) {
  SCOPED_TRACE(::testing::Message() << dataflow_name(df) << " M=" << s.M << " K=" << s.K << " N=" << s.N << " on "
                                    << s.R << "x" << s.C);
  std::mt19937_64 rng(seed);
  auto a = random_values(rng, s.M * s.K);
  auto b = random_values(rng, s.K * s.N);
  GemmPeResult pe = simulate_gemm_pe(a.data(), b.data(), s.M, s.K, s.N, s.R, s.C, df);
  GemmTileCost tile = gemm_tile_cost(s.M, s.K, s.N, s.R, s.C, df);
  int64_t formula = scale_sim_formula_cycles(s.M, s.K, s.N, s.R, s.C, df);
  EXPECT_EQ(pe.compute_cycles, formula);
  EXPECT_EQ(tile.compute_cycles, formula);
  EXPECT_EQ(pe.cycles, pe.compute_cycles);
  EXPECT_EQ(pe.stall_cycles, 0);
  EXPECT_EQ(pe.folds, tile.folds);
  EXPECT_EQ(pe.fill_cycles, tile.fill_cycles_per_fold * tile.folds);
  EXPECT_EQ(pe.useful_macs, s.M * s.K * s.N);
  EXPECT_EQ(tile.useful_macs, s.M * s.K * s.N);
  expect_product(a, b, pe.c, s.M, s.K, s.N);
}

// A dimension value: mostly small/medium, biased towards the array edges (1, R-1, R, R+1, ...).
int64_t draw_dim(std::mt19937_64& rng, int64_t R, int64_t C) {
  const int64_t edge[] = {1, R - 1, R, R + 1, C - 1, C, C + 1, 2 * R, 2 * R + 1, 2 * C + 1};
  int64_t v;
  switch (rng() % 3) {
    case 0: v = edge[rng() % 10]; break;
    case 1: v = 1 + static_cast<int64_t>(rng() % 12); break;
    default: v = 1 + static_cast<int64_t>(rng() % 48); break;
  }
  return std::max<int64_t>(v, 1);
}

void random_shapes(Dataflow df, uint64_t seed) {
  std::mt19937_64 rng(seed);
  const int64_t sizes[] = {1, 2, 3, 4, 5, 7, 8, 12, 16, 32};
  int n = 0, large = 0;
  while (n < 220) {
    Shape s;
    s.R = sizes[rng() % 10];
    s.C = sizes[rng() % 10];
    s.M = draw_dim(rng, s.R, s.C);
    s.K = draw_dim(rng, s.R, s.C);
    s.N = draw_dim(rng, s.R, s.C);
    // Every 20th shape is large: one or two dimensions in the hundreds.
    const bool is_large = n % 20 == 19;
    if (is_large) {
      int64_t* d[] = {&s.M, &s.K, &s.N};
      *d[rng() % 3] = 150 + static_cast<int64_t>(rng() % 400);
      *d[rng() % 3] += static_cast<int64_t>(rng() % 200);
    }
    // Keep the Debug run short: the PE model costs cycles x R x C updates (~20 ns each in Debug).
    if (gemm_pe_work(s.M, s.K, s.N, s.R, s.C, df) > (is_large ? 8e6 : 2e6)) continue;
    large += is_large;
    check_shape(s, df, seed + n);
    if (::testing::Test::HasFailure()) return;  // one shape's report is enough
    ++n;
  }
  EXPECT_GE(large, 10);
}

}  // namespace

TEST(GemmSim, RandomShapesWS) { random_shapes(Dataflow::WS, 1000); }
TEST(GemmSim, RandomShapesOS) { random_shapes(Dataflow::OS, 2000); }
TEST(GemmSim, RandomShapesIS) { random_shapes(Dataflow::IS, 3000); }

// Dimensions exactly at and around the array size, every combination, on a non-square array.
TEST(GemmSim, EdgeDimensions) {
  const int64_t R = 4, C = 6;
  const int64_t dims[] = {1, R - 1, R, R + 1, C - 1, C, C + 1, 3 * C + 1};
  for (Dataflow df : {Dataflow::WS, Dataflow::OS, Dataflow::IS})
    for (int64_t M : dims)
      for (int64_t K : dims)
        for (int64_t N : dims) check_shape({M, K, N, R, C}, df, static_cast<uint64_t>(M * 10000 + K * 100 + N));
}

// Degenerate arrays: one PE, one row, one column.
TEST(GemmSim, DegenerateArrays) {
  for (Dataflow df : {Dataflow::WS, Dataflow::OS, Dataflow::IS}) {
    check_shape({5, 7, 3, 1, 1}, df, 1);
    check_shape({5, 7, 3, 1, 4}, df, 2);
    check_shape({5, 7, 3, 4, 1}, df, 3);
    check_shape({1, 1, 1, 1, 1}, df, 4);
  }
}

// The shapes HARDWARE.md checked against SCALE-Sim v2 (whose figure is our count minus one).
TEST(GemmSim, HardwareMdShapes) {
  for (Dataflow df : {Dataflow::WS, Dataflow::OS, Dataflow::IS}) {
    check_shape({64, 64, 64, 32, 32}, df, 1);
    check_shape({100, 200, 50, 32, 32}, df, 2);
    check_shape({64, 64, 64, 64, 64}, df, 3);
  }
  // Large ones at tile level only; values worked out by hand from the formula.
  EXPECT_EQ(gemm_tile_cost(64, 64, 64, 32, 32, Dataflow::WS).compute_cycles, 4 * (64 + 32 + 64 - 2));
  EXPECT_EQ(gemm_tile_cost(64, 64, 64, 32, 32, Dataflow::OS).compute_cycles, 4 * (32 + 32 + 64 - 2));
  EXPECT_EQ(gemm_tile_cost(197, 768, 768, 32, 32, Dataflow::WS).compute_cycles, 24 * 24 * (64 + 32 + 197 - 2));
  EXPECT_EQ(gemm_tile_cost(197, 768, 768, 64, 64, Dataflow::OS).compute_cycles, 4 * 12 * (64 + 64 + 768 - 2));
  EXPECT_EQ(gemm_tile_cost(197, 768, 768, 64, 64, Dataflow::IS).compute_cycles, 12 * 4 * (128 + 64 + 768 - 2));
}

// Small integers multiply and add exactly in float, so the product must be exact.
TEST(GemmSim, ExactOnIntegers) {
  const int64_t M = 13, K = 29, N = 11;
  std::mt19937_64 rng(7);
  std::vector<float> a(M * K), b(K * N);
  for (auto& x : a) x = static_cast<float>(static_cast<int>(rng() % 7) - 3);
  for (auto& x : b) x = static_cast<float>(static_cast<int>(rng() % 7) - 3);
  for (Dataflow df : {Dataflow::WS, Dataflow::OS, Dataflow::IS}) {
    GemmPeResult r = simulate_gemm_pe(a.data(), b.data(), M, K, N, 4, 8, df);
    for (int64_t i = 0; i < M; ++i)
      for (int64_t j = 0; j < N; ++j) {
        float ref = 0;
        for (int64_t k = 0; k < K; ++k) ref += a[i * K + k] * b[k * N + j];
        ASSERT_EQ(r.c[i * N + j], ref) << dataflow_name(df) << " C[" << i << "," << j << "]";
      }
  }
}

TEST(GemmSim, TileBreakdown) {
  GemmTileCost t = gemm_tile_cost(10, 20, 30, 8, 4, Dataflow::WS);  // S_R = K = 20, S_C = N = 30, T = M = 10
  EXPECT_EQ(t.map.s_r, 20);
  EXPECT_EQ(t.map.s_c, 30);
  EXPECT_EQ(t.map.t, 10);
  EXPECT_EQ(t.folds_r, 3);
  EXPECT_EQ(t.folds_c, 8);
  EXPECT_EQ(t.folds, 24);
  EXPECT_EQ(t.fill_cycles_per_fold, 8);
  EXPECT_EQ(t.stream_cycles_per_fold, 8 + 4 + 10 - 2);
  EXPECT_GT(t.utilization, 0.0);
  EXPECT_LE(t.utilization, 1.0);
  GemmTileCost o = gemm_tile_cost(10, 20, 30, 8, 4, Dataflow::OS);
  EXPECT_EQ(o.fill_cycles_per_fold, 0);
  EXPECT_EQ(o.folds, 2 * 8);
}

TEST(GemmSim, BadSizesAreErrors) {
  float x = 1;
  EXPECT_THROW(gemm_tile_cost(0, 1, 1, 4, 4, Dataflow::WS), Error);
  EXPECT_THROW(gemm_tile_cost(1, 1, 1, 0, 4, Dataflow::WS), Error);
  EXPECT_THROW(gemm_tile_cost(-3, 1, 1, 4, 4, Dataflow::OS), Error);
  EXPECT_THROW(gemm_tile_cost(int64_t{1} << 40, int64_t{1} << 40, 4, 4, 4, Dataflow::OS), Error);
  EXPECT_THROW(simulate_gemm_pe(&x, &x, 1, 0, 1, 4, 4, Dataflow::IS), Error);
  EXPECT_THROW(scale_sim_formula_cycles(1, 1, 1, 4, -1, Dataflow::IS), Error);
}
