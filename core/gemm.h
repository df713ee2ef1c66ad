// gemm.h: the one matrix product of the float path, row-major, with shape
// checks, plus a strided-batched form for per-head work. It is canonical:
// every element of C is one fused multiply-add chain in k order,
//   acc = 0;  for k = 0 .. K-1: acc = fma(op(A)[i,k], op(B)[k,j], acc)
//   C[i,j] = beta == 0 ? alpha * acc : fma(alpha, acc, beta * C[i,j])
// so an element's bits do not depend on M, N, blocking or threads (the
// basis of bitwise-reproducible training; gemm.c has the kernels).
// OpenBLAS serves the double twin (tests) and the comparison peak.
#ifndef LR_GEMM_H
#define LR_GEMM_H

#include <stdint.h>

// C(M,N) = alpha * op(A) * op(B) + beta * C, all row-major.
// op(A) is (M,K): A is (M,K) with lda >= K, or (K,M) with lda >= M when ta.
// op(B) is (K,N): B is (K,N) with ldb >= N, or (N,K) with ldb >= K when tb.
// Inconsistent leading dimensions are bugs (LR_ASSERT). beta == 0: C is not
// read. Cannot fail (a packing buffer that cannot grow falls back to the
// reference loops, which give the same bits).
void lr_sgemm(int ta, int tb, int64_t M, int64_t N, int64_t K, float alpha, const float *A,
              int64_t lda, const float *B, int64_t ldb, float beta, float *C, int64_t ldc);

// The canonical product by plain loops (fmaf): the reference the kernels
// are tested against bitwise.
void lr_sgemm_ref(int ta, int tb, int64_t M, int64_t N, int64_t K, float alpha, const float *A,
                  int64_t lda, const float *B, int64_t ldb, float beta, float *C, int64_t ldc);

// The kernel lr_sgemm runs on this CPU: "avx512", "avx2" or "reference".
const char *lr_sgemm_kernel_name(void);

// `batch` independent GEMMs; matrix i starts at A + i*sA, B + i*sB, C + i*sC.
void lr_sgemm_batched(int64_t batch, int ta, int tb, int64_t M, int64_t N, int64_t K,
                      float alpha, const float *A, int64_t lda, int64_t sA, const float *B,
                      int64_t ldb, int64_t sB, float beta, float *C, int64_t ldc, int64_t sC);

// The model's matrix products (the projections, the FFN and the loss's
// scores and gradients; the attention's own products stay lr_sgemm): fp32
// (lr_sgemm), or with bf16 operands (lr_sgemm_bf16, gemm_bf16.h) once
// lr_set_matmul_bf16(1). Process-wide; set it before the model runs (the
// command line does, from train.precision). Both are canonical, so a run is
// bitwise the same at any ranks and micro-batch in either precision.
void lr_matmul(int ta, int tb, int64_t M, int64_t N, int64_t K, float alpha, const float *A,
               int64_t lda, const float *B, int64_t ldb, float beta, float *C, int64_t ldc);
// on = 1 needs lr_bf16_supported() (asserted). Cannot fail.
void lr_set_matmul_bf16(int on);
int lr_matmul_is_bf16(void);

// Double-precision twin of lr_sgemm (the f64 instantiations of the kernels,
// used by the gradient tests).
void lr_dgemm(int ta, int tb, int64_t M, int64_t N, int64_t K, double alpha, const double *A,
              int64_t lda, const double *B, int64_t ldb, double beta, double *C, int64_t ldc);

// This process's sgemm rate in GFLOP/s: square (n,n) products through
// lr_sgemm with the current threads (lr_set_threads), repeated for at least
// `seconds` after one untimed product. Out of memory: returns a negative
// value (message set).
double lr_sgemm_peak_gflops(int64_t n, double seconds);
// The same for OpenBLAS's sgemm over the same thread team (for comparison).
double lr_blas_sgemm_peak_gflops(int64_t n, double seconds);

// The threads of this process: n threads of the team (core/par.h) share
// out the large GEMMs by blocks of rows or columns and the element-wise
// work; OpenBLAS is held to one thread per call (its own threads would
// busy-wait between calls and take the team's cores). n < 1 counts as 1.
// Call it before model_init. LR_ERR_NOMEM / LR_ERR_STATE (thread start).
int lr_set_threads(int n);

#endif
