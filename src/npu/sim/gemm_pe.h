// npu/sim/gemm_pe.h — a cycle-by-cycle model of one GEMM on one systolic MAC array (PE level).
//
// The array is an R x C grid of processing elements, each with its own registers. Operands enter
// at the array edges skewed by one cycle per row/column and move exactly one PE per cycle; each
// PE does one multiply-accumulate per cycle. The three dataflows (SCALE-Sim's mapping, see
// gemm_tile.h) are built from two engines:
//   stationary (ws, is): the stationary block is shifted in from the top (R cycles), the streaming
//     operand moves left to right, partial sums move top to bottom and leave the bottom row;
//   output stationary (os): A moves left to right, B top to bottom, each PE keeps its own sum; the
//     finished sums are copied to shadow registers and drain while the next fold runs.
// Edge folds stream the full (zero-padded) wavefront, as the hardware does. A fold ends when no
// operand is left in the array, so the cycle count is observed, not computed; it equals the
// closed form in HARDWARE.md, and the tests check that. This is the slow, validating fidelity
// level: use gemm_tile_cost() for speed. Values: float inputs, float (fp32) accumulation.
#pragma once
#include <cstdint>
#include <vector>

#include "npu/arch/hardware.h"

namespace opennpu::npu {

struct GemmPeResult {
  int64_t cycles = 0;          // compute_cycles + stall_cycles
  int64_t compute_cycles = 0;  // cycles the array was filling or had operands in flight
  int64_t stall_cycles = 0;    // waiting for memory: always 0 here (no memory model)
  int64_t folds = 0;
  int64_t fill_cycles = 0;     // of compute_cycles, spent shifting in stationary operands
  int64_t useful_macs = 0;     // MACs on real (not padding) operands, counted by the PEs: M*K*N
  std::vector<float> c;        // the product, M x N row-major
};

// C = A * B with A row-major M x K and B row-major K x N, on an R x C array. Throws opennpu::Error
// on non-positive sizes.
GemmPeResult simulate_gemm_pe(const float* a, const float* b, int64_t M, int64_t K, int64_t N, int64_t R, int64_t C,
                              Dataflow df);

// PE updates (cycles x R x C) the PE model would perform: lets a caller refuse a run that would
// take too long before starting it.
double gemm_pe_work(int64_t M, int64_t K, int64_t N, int64_t R, int64_t C, Dataflow df);

}  // namespace opennpu::npu
