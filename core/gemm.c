// gemm.c: checked wrappers over cblas_sgemm (see gemm.h).
#include "gemm.h"

#include <cblas.h>  // cblas_sgemm
#include <limits.h> // INT_MAX
#include <time.h>   // clock_gettime

#include "lr.h"
#include "par.h" // lr_par_for

// Products of at least this many multiply-adds are split over the thread
// team, in blocks of rows or columns that are multiples of GEMM_SPLIT_ALIGN.
#define GEMM_SPLIT_MACS (1 << 21)
#define GEMM_SPLIT_ALIGN 16

// Declared by OpenBLAS's cblas.h; repeated here for clarity of what we use.
extern void openblas_set_num_threads(int);

// One GEMM cut into row (M) or column (N) blocks over the thread team.
typedef struct {
  int ta, tb, by_rows;
  int64_t M, N, K, lda, ldb, ldc;
  float alpha, beta;
  const float *A, *B;
  float *C;
} gemm_job;

static void gemm_part(void *vj, int64_t lo, int64_t hi) {
  const gemm_job *j = vj;
  if (j->by_rows) // C rows lo..hi: A rows lo..hi of op(A)
    cblas_sgemm(CblasRowMajor, j->ta ? CblasTrans : CblasNoTrans, j->tb ? CblasTrans : CblasNoTrans,
                (int)(hi - lo), (int)j->N, (int)j->K, j->alpha,
                j->A + (j->ta ? lo : lo * j->lda), (int)j->lda, j->B, (int)j->ldb, j->beta,
                j->C + lo * j->ldc, (int)j->ldc);
  else // C columns lo..hi: columns lo..hi of op(B)
    cblas_sgemm(CblasRowMajor, j->ta ? CblasTrans : CblasNoTrans, j->tb ? CblasTrans : CblasNoTrans,
                (int)j->M, (int)(hi - lo), (int)j->K, j->alpha, j->A, (int)j->lda,
                j->B + (j->tb ? lo * j->ldb : lo), (int)j->ldb, j->beta, j->C + lo, (int)j->ldc);
}

void lr_sgemm(int ta, int tb, int64_t M, int64_t N, int64_t K, float alpha, const float *A,
              int64_t lda, const float *B, int64_t ldb, float beta, float *C, int64_t ldc) {
  LR_ASSERT(M >= 0 && N >= 0 && K >= 0);
  LR_ASSERT(M <= INT_MAX && N <= INT_MAX && K <= INT_MAX);
  LR_ASSERT(lda <= INT_MAX && ldb <= INT_MAX && ldc <= INT_MAX);
  LR_ASSERT(lda >= (ta ? (M > 0 ? M : 1) : (K > 0 ? K : 1)));
  LR_ASSERT(ldb >= (tb ? (K > 0 ? K : 1) : (N > 0 ? N : 1)));
  LR_ASSERT(ldc >= (N > 0 ? N : 1));
  if (M == 0 || N == 0) return;
  if (K == 0) { // BLAS would leave C untouched only for beta == 1; be exact.
    for (int64_t i = 0; i < M; i++)
      for (int64_t j = 0; j < N; j++) C[i * ldc + j] = beta == 0.0f ? 0.0f : beta * C[i * ldc + j];
    return;
  }
  gemm_job j = {ta, tb, M >= N, M, N, K, lda, ldb, ldc, alpha, beta, A, B, C};
  // Large products go over the thread team (OpenBLAS itself runs one thread
  // per call, see lr_set_threads); small ones, and those made inside a
  // parallel range, run here.
  if (lr_par_threads() > 1 && (double)M * (double)N * (double)K >= GEMM_SPLIT_MACS)
    lr_par_for(j.by_rows ? M : N, GEMM_SPLIT_ALIGN, gemm_part, &j);
  else
    gemm_part(&j, 0, j.by_rows ? M : N);
}

void lr_dgemm(int ta, int tb, int64_t M, int64_t N, int64_t K, double alpha, const double *A,
              int64_t lda, const double *B, int64_t ldb, double beta, double *C, int64_t ldc) {
  LR_ASSERT(M >= 0 && N >= 0 && K >= 0);
  LR_ASSERT(M <= INT_MAX && N <= INT_MAX && K <= INT_MAX);
  LR_ASSERT(lda <= INT_MAX && ldb <= INT_MAX && ldc <= INT_MAX);
  LR_ASSERT(lda >= (ta ? (M > 0 ? M : 1) : (K > 0 ? K : 1)));
  LR_ASSERT(ldb >= (tb ? (K > 0 ? K : 1) : (N > 0 ? N : 1)));
  LR_ASSERT(ldc >= (N > 0 ? N : 1));
  if (M == 0 || N == 0) return;
  if (K == 0) {
    for (int64_t i = 0; i < M; i++)
      for (int64_t j = 0; j < N; j++) C[i * ldc + j] = beta == 0.0 ? 0.0 : beta * C[i * ldc + j];
    return;
  }
  cblas_dgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans,
              (int)M, (int)N, (int)K, alpha, A, (int)lda, B, (int)ldb, beta, C, (int)ldc);
}

void lr_sgemm_batched(int64_t batch, int ta, int tb, int64_t M, int64_t N, int64_t K,
                      float alpha, const float *A, int64_t lda, int64_t sA, const float *B,
                      int64_t ldb, int64_t sB, float beta, float *C, int64_t ldc, int64_t sC) {
  for (int64_t i = 0; i < batch; i++)
    lr_sgemm(ta, tb, M, N, K, alpha, A + i * sA, lda, B + i * sB, ldb, beta, C + i * sC, ldc);
}

double lr_sgemm_peak_gflops(int64_t n, double seconds) {
  size_t nn = (size_t)(n * n);
  float *a = lr_calloc(nn, sizeof(float), "sgemm peak A");
  float *b = lr_calloc(nn, sizeof(float), "sgemm peak B");
  float *c = lr_calloc(nn, sizeof(float), "sgemm peak C");
  double rate = -1;
  if (a && b && c) {
    for (size_t i = 0; i < nn; i++) a[i] = (float)(i % 7) * 0.01f, b[i] = (float)(i % 5) * 0.01f;
    lr_sgemm(0, 0, n, n, n, 1.0f, a, n, b, n, 0.0f, c, n);
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    double el = 0;
    int64_t reps = 0;
    do {
      lr_sgemm(0, 0, n, n, n, 1.0f, a, n, b, n, 0.0f, c, n);
      reps++;
      clock_gettime(CLOCK_MONOTONIC, &t1);
      el = (double)(t1.tv_sec - t0.tv_sec) + 1e-9 * (double)(t1.tv_nsec - t0.tv_nsec);
    } while (el < seconds);
    rate = 2.0 * (double)n * (double)n * (double)n * (double)reps / el / 1e9;
  }
  lr_free(a);
  lr_free(b);
  lr_free(c);
  return rate;
}

int lr_set_threads(int n) {
  if (n < 1) n = 1;
  openblas_set_num_threads(1);
  return lr_par_set_threads(n);
}
