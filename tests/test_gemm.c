// test_gemm.c: the canonical GEMM of core/gemm.c.
//   - every transpose combination, split over the thread team by rows
//     (M >= N) and by columns (M < N), leading dimensions wider than the
//     matrices, alpha/beta not 0/1, against a double-precision reference;
//   - bitwise equal to the plain-loop reference lr_sgemm_ref on random
//     shapes (tails in every dimension, K = 0, beta 0 / 1 / 0.5) with 1 and
//     3 threads, in whatever kernel this CPU or build uses;
//   - the narrow products (op(B) of at most 32 columns: the attention's
//     per-head shapes, kernels without packing) and the packed ones whose
//     panels are filled by the transposing packs (untransposed A,
//     transposed B) bitwise equal to the reference over tails of rows,
//     columns and k, in exactly sized buffers (a read past the last row of
//     op(A) or column of op(B) is an ASan error in the sanitizer build);
//   - an element's bits do not depend on its neighbours: rows computed alone,
//     in another block of rows or against a subset of the columns are
//     bitwise the rows of the whole product (what makes training
//     reproducible; OpenBLAS fails this).
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

static uint64_t g_rng = 12345;
static int64_t rnd(int64_t n) {
  g_rng = g_rng * 6364136223846793005ULL + 1442695040888963407ULL;
  return (int64_t)((g_rng >> 33) % (uint64_t)n);
}

// lr_sgemm on C against lr_sgemm_ref on a copy of C: bitwise equal?
static int same_as_ref(int ta, int tb, int64_t M, int64_t N, int64_t K, float alpha,
                       const float *A, int64_t lda, const float *B, int64_t ldb, float beta,
                       float *C, int64_t ldc) {
  float *R = malloc((size_t)(M * ldc) * 4);
  memcpy(R, C, (size_t)(M * ldc) * 4);
  lr_sgemm(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
  lr_sgemm_ref(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, R, ldc);
  const int same = !memcmp(C, R, (size_t)(M * ldc) * 4);
  free(R);
  return same;
}

static void random_vs_ref(int threads) {
  int ok = lr_set_threads(threads) == LR_OK, n = 0;
  for (int it = 0; it < 150; it++) {
    const int ta = (int)rnd(2), tb = (int)rnd(2);
    const int64_t M = 1 + rnd(90), N = 1 + rnd(90), K = rnd(160);
    const int64_t lda = (ta ? M : (K ? K : 1)) + rnd(3), ldb = (tb ? (K ? K : 1) : N) + rnd(3);
    const int64_t ldc = N + rnd(3);
    const float alpha = rnd(3) ? 1.0f : 0.37f, beta = (float)rnd(3) * 0.5f;
    float *A = fill((ta ? K + 1 : M) * lda, it), *B = fill((tb ? N : K + 1) * ldb, it + 1);
    float *C = fill(M * ldc, it + 2);
    ok &= same_as_ref(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
    n++;
    free(A), free(B), free(C);
  }
  ok &= lr_set_threads(1) == LR_OK;
  t_check(ok, "sgemm (%s kernel), %d random shapes, %d threads: bitwise = the reference loops",
          lr_sgemm_kernel_name(), n, threads);
}

static void narrow_vs_ref(void) {
  const int64_t Ms[] = {1, 5, 8, 13, 200}, Ns[] = {1, 7, 16, 17, 31, 32, 33, 97};
  const int64_t Ks[] = {1, 16, 200};
  int ok = 1, n = 0;
  for (int ta = 0; ta < 2; ta++)
    for (int tb = 0; tb < 2; tb++)
      for (size_t im = 0; im < sizeof Ms / sizeof *Ms; im++)
        for (size_t in = 0; in < sizeof Ns / sizeof *Ns; in++)
          for (size_t ik = 0; ik < sizeof Ks / sizeof *Ks; ik++) {
            const int64_t M = Ms[im], N = Ns[in], K = Ks[ik];
            const int64_t lda = (ta ? M : K) + (int64_t)(n % 3), ldb = (tb ? K : N) + (int64_t)(n % 2);
            const float alpha = n % 4 ? 1.0f : 0.37f, beta = (float)(n % 3) * 0.5f;
            // exactly sized: the last row of A (B) ends the allocation
            float *A = fill((ta ? K - 1 : M - 1) * lda + (ta ? M : K), n);
            float *B = fill((tb ? N - 1 : K - 1) * ldb + (tb ? K : N), n + 1);
            float *C = fill(M * N, n + 2);
            ok &= same_as_ref(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, N);
            n++;
            free(A), free(B), free(C);
          }
  t_check(ok, "sgemm (%s kernel), %d shapes around the narrow limit (N <= 32 and above; tails of "
              "rows, columns and k) in exactly sized buffers: bitwise = the reference loops",
          lr_sgemm_kernel_name(), n);
}

// Rows r0..r0+m of C = A B^T (the model's linear layer) computed alone and
// against columns c0..c0+n only equal the full product's, bitwise.
static void neighbours(void) {
  const int64_t M = 403, N = 384, K = 128;
  float *A = fill(M * K, 7), *B = fill(N * K, 8), *C = malloc((size_t)(M * N) * 4);
  float *P = malloc((size_t)(M * N) * 4);
  lr_sgemm(0, 1, M, N, K, 1.0f, A, K, B, K, 0.0f, C, N);
  int ok = 1;
  const int64_t cuts[][4] = {{0, 1, 0, N}, {5, 7, 0, N}, {200, 203, 0, N}, {17, 13, 33, 100},
                             {400, 3, 381, 3}, {0, M, 16, 17}};
  for (size_t k = 0; k < sizeof cuts / sizeof cuts[0]; k++) {
    const int64_t r0 = cuts[k][0], m = cuts[k][1], c0 = cuts[k][2], n = cuts[k][3];
    lr_sgemm(0, 1, m, n, K, 1.0f, A + r0 * K, K, B + c0 * K, K, 0.0f, P, n);
    for (int64_t i = 0; i < m; i++)
      ok &= !memcmp(P + i * n, C + (r0 + i) * N + c0, (size_t)n * 4);
  }
  t_check(ok, "sgemm: rows alone, in other blocks, against column subsets = the full product, "
              "bitwise");
  free(A), free(B), free(C), free(P);
}

int main(void) {
  random_vs_ref(1);
  random_vs_ref(3);
  narrow_vs_ref();
  neighbours();
  for (int ta = 0; ta < 2; ta++)
    for (int tb = 0; tb < 2; tb++) {
      case_(ta, tb, 301, 97, 130);  // split by rows (M >= N), above the split size
      case_(ta, tb, 45, 517, 200);  // split by columns
      case_(ta, tb, 9, 7, 5);       // small: not split
    }
  return t_done();
}
