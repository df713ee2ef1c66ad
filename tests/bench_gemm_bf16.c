// bench_gemm_bf16.c: the bf16 product (core/gemm_bf16.h) against the fp32
// one (core/gemm.h) on the model's shapes, one thread, A B A B in one run;
// and the physical limits: the bf16 dot-product loop of lr_bf16_peak_gflops
// and the same loop of fp32 FMAs. Built, not run by ctest. Usage:
// bench_gemm_bf16 [seconds per figure (default 0.5)]
#include <stdio.h>  // printf
#include <stdlib.h> // atof, calloc
#include <time.h>   // clock_gettime

#include "gemm.h"
#include "gemm_bf16.h"
#include "test_util.h"

static double now(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

// GFLOP/s of C(M,N) = op(A)(M,K) op(B)(K,N), both stored untransposed or
// transposed as the flags say, leading dimensions tight.
static double rate(int bf16, int ta, int tb, long M, long N, long K, const float *A,
                   const float *B, float *C, double seconds) {
  const long lda = ta ? M : K, ldb = tb ? K : N;
  long reps = 0;
  const double t0 = now();
  double t;
  do {
    if (bf16) lr_sgemm_bf16(ta, tb, M, N, K, 1.0f, A, lda, B, ldb, 0.0f, C, N);
    else lr_sgemm(ta, tb, M, N, K, 1.0f, A, lda, B, ldb, 0.0f, C, N);
    reps++;
  } while ((t = now() - t0) < seconds);
  return 2.0 * (double)M * (double)N * (double)K * (double)reps / t * 1e-9;
}

int main(int argc, char **argv) {
  const double sec = argc > 1 ? atof(argv[1]) : 0.5;
  if (!lr_bf16_supported()) {
    printf("no AVX512-BF16 on this CPU\n");
    return 0;
  }
  lr_set_threads(1);
  const double pf = lr_fma_peak_gflops(sec), pb = lr_bf16_peak_gflops(sec);
  printf("peak, one thread: fp32 FMA loop %.1f GFLOP/s, bf16 dot-product loop %.1f GFLOP/s "
         "(%.2fx)\n", pf, pb, pb / pf);
  // A linear layer out (R,O) = in (R,I) W^T, W (O,I), and its two backward
  // products: fwd (0,1) R x O x I, din = dout W (0,0) R x I x O, dW = dout^T in
  // (1,0) O x I x R. Rows R: 6400 (32 sequences of 200, a forward chunk) and
  // 200 (one sequence: the backward's per-sequence weight gradient).
  static const long shapes[][4] = { // (R, O, I, product: 0 fwd, 1 din, 2 dW)
      {6400, 192, 64, 0},   {6400, 256, 64, 0},  {6400, 64, 256, 0},  {6400, 384, 128, 0},
      {6400, 128, 128, 0},  {6400, 256, 128, 0}, {6400, 128, 256, 0}, {6400, 384, 128, 1},
      {6400, 256, 128, 1},  {200, 384, 128, 2},  {200, 256, 128, 2},  {200, 128, 256, 2},
      {6400, 1536, 512, 0}, {6400, 512, 512, 0}, {6400, 512, 2048, 0}};
  static const char *what[] = {"fwd", "din", "dW"};
  printf("%-26s %12s %12s %8s %10s\n", "product M x N x K", "fp32 GF/s", "bf16 GF/s", "ratio",
         "bf16/peak");
  for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
    const long R = shapes[s][0], O = shapes[s][1], I = shapes[s][2], kind = shapes[s][3];
    const int ta = kind == 2, tb = kind == 0;
    const long M = kind == 0 ? R : kind == 1 ? R : O, N = kind == 0 ? O : I,
               K = kind == 0 ? I : kind == 1 ? O : R;
    float *A = calloc((size_t)(M * K), 4), *B = calloc((size_t)(N * K), 4);
    float *C = calloc((size_t)(M * N), 4);
    if (!A || !B || !C) return 1;
    t_fill_f(A, M * K, 1, 1.0f);
    t_fill_f(B, N * K, 2, 0.1f);
    double f[2] = {0, 0}, b[2] = {0, 0};
    for (int rep = 0; rep < 2; rep++) { // A B A B
      f[rep] = rate(0, ta, tb, M, N, K, A, B, C, sec);
      b[rep] = rate(1, ta, tb, M, N, K, A, B, C, sec);
    }
    const double fb = f[0] > f[1] ? f[0] : f[1], bb = b[0] > b[1] ? b[0] : b[1];
    char name[48];
    snprintf(name, sizeof name, "%-3s %ld x %ld x %ld", what[kind], M, N, K);
    printf("%-26s %12.1f %12.1f %7.2fx %9.2f\n", name, fb, bb, bb / fb, bb / pb);
    free(A), free(B), free(C);
  }
  return 0;
}
