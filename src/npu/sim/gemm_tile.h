// npu/sim/gemm_tile.h — the analytical cost of one GEMM on one systolic MAC array (tile level).
//
// C[M,N] = A[M,K] * B[K,N] on an R x C array is mapped as in SCALE-Sim (Samajdar et al., ISPASS
// 2020): two GEMM dimensions in space (S_R onto the rows, S_C onto the columns), one in time (T):
//   weight stationary  ws: S_R = K, S_C = N, T = M
//   output stationary  os: S_R = M, S_C = N, T = K
//   input stationary   is: S_R = K, S_C = M, T = N
// A fold is one R x C block of the spatial dimensions; folds = ceil(S_R/R) * ceil(S_C/C), and an
// edge fold costs as much as a full one (the array streams its full skewed wavefront, zero padded).
// Per fold: ws/is fill the stationary operand in R cycles, then stream for R + C + T - 2 cycles
// (T values plus the skew across R rows and C columns); os has no fill, and its finished outputs
// drain while the next fold starts. Folds do not overlap. The fast simulator and the compiler call
// gemm_tile_cost() for every MAC-array task; the PE-level model (gemm_pe.h) takes exactly this many
// cycles, and the tests hold the two (and the closed form below) equal.
#pragma once
#include <cstdint>

#include "npu/arch/hardware.h"

namespace opennpu::npu {

struct GemmMapping {
  int64_t s_r = 0;  // spatial dimension laid along the array rows
  int64_t s_c = 0;  // spatial dimension laid along the array columns
  int64_t t = 0;    // temporal dimension
};
GemmMapping map_gemm(int64_t M, int64_t K, int64_t N, Dataflow df);

struct GemmTileCost {
  GemmMapping map;
  int64_t folds_r = 0, folds_c = 0, folds = 0;
  int64_t fill_cycles_per_fold = 0;    // loading the stationary operand (0 for os)
  int64_t stream_cycles_per_fold = 0;  // operands flowing through until the array is empty
  int64_t cycles_per_fold = 0;
  int64_t compute_cycles = 0;          // folds * cycles_per_fold (no memory stalls at this level)
  int64_t useful_macs = 0;             // M * K * N
  double utilization = 0;              // useful_macs / (compute_cycles * R * C)
};

// Throws opennpu::Error when a dimension is < 1 or the cycle count would overflow.
GemmTileCost gemm_tile_cost(int64_t M, int64_t K, int64_t N, int64_t R, int64_t C, Dataflow df);

// HARDWARE.md's closed form, written out on its own so tests can hold the two against each other:
// ws/is: folds * (2R + C + T - 2); os: folds * (R + C + T - 2).
int64_t scale_sim_formula_cycles(int64_t M, int64_t K, int64_t N, int64_t R, int64_t C, Dataflow df);

}  // namespace opennpu::npu
