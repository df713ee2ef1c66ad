// gemm.h: the one door to OpenBLAS. Row-major single-precision GEMM with shape
// checks (cblas takes int dimensions; ours are int64_t, so every call is
// checked to fit), plus a strided-batched form for per-head work.
#ifndef LR_GEMM_H
#define LR_GEMM_H

#include <stdint.h>

// C(M,N) = alpha * op(A) * op(B) + beta * C, all row-major.
// op(A) is (M,K): A is (M,K) with lda >= K, or (K,M) with lda >= M when ta.
// op(B) is (K,N): B is (K,N) with ldb >= N, or (N,K) with ldb >= K when tb.
// Shapes outside int or inconsistent leading dimensions are bugs (LR_ASSERT).
void lr_sgemm(int ta, int tb, int64_t M, int64_t N, int64_t K, float alpha, const float *A,
              int64_t lda, const float *B, int64_t ldb, float beta, float *C, int64_t ldc);

// `batch` independent GEMMs; matrix i starts at A + i*sA, B + i*sB, C + i*sC.
void lr_sgemm_batched(int64_t batch, int ta, int tb, int64_t M, int64_t N, int64_t K,
                      float alpha, const float *A, int64_t lda, int64_t sA, const float *B,
                      int64_t ldb, int64_t sB, float beta, float *C, int64_t ldc, int64_t sC);

// Double-precision twin of lr_sgemm (the f64 instantiations of the kernels,
// used by the gradient tests).
void lr_dgemm(int ta, int tb, int64_t M, int64_t N, int64_t K, double alpha, const double *A,
              int64_t lda, const double *B, int64_t ldb, double beta, double *C, int64_t ldc);

// This process's sgemm rate in GFLOP/s: square (n,n) products through
// lr_sgemm with the current threads (lr_set_threads), repeated for at least
// `seconds` after one untimed product. Out of memory: returns a negative
// value (message set).
double lr_sgemm_peak_gflops(int64_t n, double seconds);

// The threads of this process: n threads of the team (core/par.h) share
// out the large GEMMs by blocks of rows or columns and the element-wise
// work, while OpenBLAS runs one thread per call (its own threads would
// busy-wait between calls and take the team's cores). n < 1 counts as 1.
// Call it before model_init. LR_ERR_NOMEM / LR_ERR_STATE (thread start).
int lr_set_threads(int n);

#endif
