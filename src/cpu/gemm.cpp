#include "cpu/gemm.h"

#include <cblas.h>

#include "core/parallel.h"

namespace opennpu::cpu {

namespace {
// OpenBLAS threads follow opennpu's thread setting; it is only ever called from one thread at a
// time per Executor run, and parallel_for regions never nest a GEMM on several threads at once
// with more threads than configured.
void sync_threads() {
  static thread_local int last = -1;
  int want = num_threads();
  if (in_parallel_region()) want = 1;
  if (want != last) { openblas_set_num_threads(want); last = want; }
}
}  // namespace

void sgemm(bool ta, bool tb, int64_t M, int64_t N, int64_t K, float alpha, const float* A, int64_t lda, const float* B,
           int64_t ldb, float beta, float* C, int64_t ldc) {
  if (M <= 0 || N <= 0) return;
  sync_threads();
  cblas_sgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans, (int)M, (int)N, (int)K,
              alpha, A, (int)lda, B, (int)ldb, beta, C, (int)ldc);
}

void dgemm(bool ta, bool tb, int64_t M, int64_t N, int64_t K, double alpha, const double* A, int64_t lda,
           const double* B, int64_t ldb, double beta, double* C, int64_t ldc) {
  if (M <= 0 || N <= 0) return;
  sync_threads();
  cblas_dgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans, (int)M, (int)N, (int)K,
              alpha, A, (int)lda, B, (int)ldb, beta, C, (int)ldc);
}

}  // namespace opennpu::cpu
