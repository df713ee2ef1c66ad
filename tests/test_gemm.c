// test_gemm.c: lr_sgemm split over the thread team (core/gemm.c): every
// transpose combination, split by rows (M >= N) and by columns (M < N),
// leading dimensions wider than the matrices, alpha/beta not 0/1, against a
// double-precision reference; and below the split size it is OpenBLAS as is.
#include <math.h>   // fabs
#include <stdio.h>  // printf
#include <stdlib.h> // free
#include <string.h> // memcpy

#include "gemm.h"
#include "lr.h"
#include "par.h"
#include "test_util.h"

static double *ref(int ta, int tb, int64_t M, int64_t N, int64_t K, float alpha, const float *A,
                   int64_t lda, const float *B, int64_t ldb, float beta, const float *C0,
                   int64_t ldc) {
  double *C = calloc((size_t)(M * ldc), sizeof *C);
  for (int64_t i = 0; i < M; i++)
    for (int64_t j = 0; j < N; j++) {
      double s = 0;
      for (int64_t k = 0; k < K; k++) {
        double a = ta ? A[k * lda + i] : A[i * lda + k];
        double b = tb ? B[j * ldb + k] : B[k * ldb + j];
        s += a * b;
      }
      C[i * ldc + j] = alpha * s + beta * (double)C0[i * ldc + j];
    }
  return C;
}

static float *fill(int64_t n, int seed) {
  float *x = malloc((size_t)n * sizeof *x);
  for (int64_t i = 0; i < n; i++) x[i] = (float)sin(0.7 * (double)i + seed);
  return x;
}

static void case_(int ta, int tb, int64_t M, int64_t N, int64_t K) {
  const int64_t lda = (ta ? M : K) + 3, ldb = (tb ? K : N) + 5, ldc = N + 7;
  float *A = fill((ta ? K : M) * lda, 1), *B = fill((tb ? N : K) * ldb, 2);
  float *C0 = fill(M * ldc, 3), *C1 = malloc((size_t)(M * ldc) * 4), *C3 = malloc((size_t)(M * ldc) * 4);
  memcpy(C1, C0, (size_t)(M * ldc) * 4), memcpy(C3, C0, (size_t)(M * ldc) * 4);
  lr_sgemm(ta, tb, M, N, K, 0.75f, A, lda, B, ldb, 0.5f, C1, ldc);
  int ok = lr_set_threads(3) == LR_OK;
  lr_sgemm(ta, tb, M, N, K, 0.75f, A, lda, B, ldb, 0.5f, C3, ldc);
  ok &= lr_set_threads(1) == LR_OK;
  double *R = ref(ta, tb, M, N, K, 0.75f, A, lda, B, ldb, 0.5f, C0, ldc);
  double worst = 0;
  for (int64_t i = 0; i < M; i++)
    for (int64_t j = 0; j < ldc; j++) {
      double want = j < N ? R[i * ldc + j] : (double)C0[i * ldc + j]; // padding untouched
      double e1 = fabs(C1[i * ldc + j] - want), e3 = fabs(C3[i * ldc + j] - want);
      worst = e1 > worst ? e1 : worst;
      worst = e3 > worst ? e3 : worst;
    }
  t_check(ok && worst < 1e-3, "sgemm ta=%d tb=%d %lldx%lldx%lld, 1 and 3 threads vs double: max err %.2g",
          ta, tb, (long long)M, (long long)N, (long long)K, worst);
  free(A), free(B), free(C0), free(C1), free(C3), free(R);
}

int main(void) {
  for (int ta = 0; ta < 2; ta++)
    for (int tb = 0; tb < 2; tb++) {
      case_(ta, tb, 301, 97, 130);  // split by rows (M >= N), above the split size
      case_(ta, tb, 45, 517, 200);  // split by columns
      case_(ta, tb, 9, 7, 5);       // small: not split
    }
  return t_done();
}
