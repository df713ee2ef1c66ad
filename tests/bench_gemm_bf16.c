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

// GFLOP/s of C(M,N) = A(M,K) B(K,N)^T (the model's linear layers: W is (N,K)).
static double rate(int bf16, long M, long N, long K, const float *A, const float *B, float *C,
                   double seconds) {
  long reps = 0;
  const double t0 = now();
  double t;
  do {
    if (bf16) lr_sgemm_bf16(0, 1, M, N, K, 1.0f, A, K, B, K, 0.0f, C, N);
    else lr_sgemm(0, 1, M, N, K, 1.0f, A, K, B, K, 0.0f, C, N);
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
  // (rows, out, in): d = 64 (QKV, FFN in, FFN out) and d = 512, 6400 rows (32 sequences of 200)
  static const long shapes[][3] = {{6400, 192, 64}, {6400, 256, 64}, {6400, 64, 256},
                                   {6400, 1536, 512}, {6400, 512, 512}, {6400, 512, 2048}};
  printf("%-22s %12s %12s %8s %10s\n", "M x N x K", "fp32 GF/s", "bf16 GF/s", "ratio",
         "bf16/peak");
  for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
    const long M = shapes[s][0], N = shapes[s][1], K = shapes[s][2];
    float *A = calloc((size_t)(M * K), 4), *B = calloc((size_t)(N * K), 4);
    float *C = calloc((size_t)(M * N), 4);
    if (!A || !B || !C) return 1;
    t_fill_f(A, M * K, 1, 1.0f);
    t_fill_f(B, N * K, 2, 0.1f);
    double f[2] = {0, 0}, b[2] = {0, 0};
    for (int rep = 0; rep < 2; rep++) { // A B A B
      f[rep] = rate(0, M, N, K, A, B, C, sec);
      b[rep] = rate(1, M, N, K, A, B, C, sec);
    }
    const double fb = f[0] > f[1] ? f[0] : f[1], bb = b[0] > b[1] ? b[0] : b[1];
    char name[40];
    snprintf(name, sizeof name, "%ld x %ld x %ld", M, N, K);
    printf("%-22s %12.1f %12.1f %7.2fx %9.2f\n", name, fb, bb, bb / fb, bb / pb);
    free(A), free(B), free(C);
  }
  return 0;
}
