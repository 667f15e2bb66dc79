// cpu/gemm.h — the one float GEMM every reference kernel (MatMul, Gemm, Conv via im2col, RNNs)
// goes through. Backed by OpenBLAS (which picks its kernels from the CPU at run time) and run
// single-threaded inside a kernel; parallelism is the caller's (see core/parallel.h).
#pragma once
#include <cstdint>

namespace opennpu::cpu {

// C[M,N] = alpha * op(A)[M,K] * op(B)[K,N] + beta * C, row-major, leading dims in elements.
void sgemm(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha, const float* A, int64_t lda,
           const float* B, int64_t ldb, float beta, float* C, int64_t ldc);
void dgemm(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, double alpha, const double* A, int64_t lda,
           const double* B, int64_t ldb, double beta, double* C, int64_t ldc);

}  // namespace opennpu::cpu
