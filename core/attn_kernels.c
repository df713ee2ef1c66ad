// attn_kernels.c: the shared attention kernels of attn_kernels.h. The
// exponential runs are written here per type; the rest is attn_kernels.inc,
// instantiated for float and for double.
#include "attn_kernels.h"

#include <math.h>   // sqrtf, sqrt, exp, expm1
#include <string.h> // memcpy, memset

#include "gemm.h"  // lr_sgemm, lr_sgemm_batched, lr_dgemm
#include "lr.h"    // LR_ASSERT
#include "vmath.h" // lr_exp_parts, lr_vlt, LR_VL, LR_HOT_CLONES

// ---- exponential runs ------------------------------------------------------------------
// Float: libm's expm1f/expf are scalar and cost ~10 ns each, more than all
// the GEMMs of the linear kinds together, so the float path evaluates them
// LR_VL lanes at a time through vmath.h's lr_exp_parts (cloned for AVX-512
// and AVX2). Measured error over [-80, 1]: < 9e-8 relative (1.5 ulp) for
// elu, elu' and exp. Selections are done on the bit patterns, and 0*x is
// added so a NaN input stays NaN.
typedef float vf_ __attribute__((vector_size(4 * LR_VL))); // LR_VL lanes (vmath.h)
typedef int32_t vi_ __attribute__((vector_size(4 * LR_VL)));
enum { EXPV_ELU, EXPV_ELU_GRAD, EXPV_EXP };

__attribute__((always_inline)) static inline vf_ expv(vf_ x, int what) {
  vf_ two_k, q = lr_exp_parts(x, &two_k);
  vf_ nan_keep = 0.0f * x;
  if (what == EXPV_EXP) return two_k * q + two_k + nan_keep;
  vi_ pos = lr_vlt((vf_){0}, x); // x > 0 (a NaN is not: it takes e, which is NaN)
  if (what == EXPV_ELU) {
    vf_ e = two_k * q + (two_k - 1.0f) + nan_keep; // 2^k q + (2^k - 1): exact near 0
    return (vf_)(((vi_)x & pos) | ((vi_)e & ~pos));
  }
  vf_ e = two_k * q + two_k + nan_keep;
  vi_ one = (vi_){0} + 0x3f800000;
  return (vf_)((one & pos) | ((vi_)e & ~pos));
}

// Inlined into each wrapper below so `what` is a constant there.
__attribute__((always_inline)) static inline void expv_run(float *y, const float *x, int64_t n,
                                                           int what) {
  int64_t i = 0;
  for (; i + LR_VL <= n; i += LR_VL) {
    vf_ v;
    memcpy(&v, x + i, sizeof v);
    v = expv(v, what);
    memcpy(y + i, &v, sizeof v);
  }
  if (i < n) { // tail through a zero-padded vector, so every element sees the same code
    vf_ v = {0};
    memcpy(&v, x + i, (size_t)(n - i) * sizeof(float));
    v = expv(v, what);
    memcpy(y + i, &v, (size_t)(n - i) * sizeof(float));
  }
}

LR_HOT_CLONES void attn_elu_run(float *y, const float *x, int64_t n) {
  expv_run(y, x, n, EXPV_ELU);
}
LR_HOT_CLONES void attn_elu_grad_run(float *y, const float *x, int64_t n) {
  expv_run(y, x, n, EXPV_ELU_GRAD);
}
LR_HOT_CLONES void attn_exp_run(float *y, const float *x, int64_t n) {
  expv_run(y, x, n, EXPV_EXP);
}

// Double (the gradient-test path): libm, exact to the last bit that matters.
void attn_elu_run_f64(double *y, const double *x, int64_t n) {
  for (int64_t i = 0; i < n; i++)
    y[i] = x[i] > 0 ? x[i] : expm1(x[i]);
}
void attn_elu_grad_run_f64(double *y, const double *x, int64_t n) {
  for (int64_t i = 0; i < n; i++)
    y[i] = x[i] > 0 ? 1.0 : exp(x[i]);
}
void attn_exp_run_f64(double *y, const double *x, int64_t n) {
  for (int64_t i = 0; i < n; i++)
    y[i] = exp(x[i]);
}

// ---- the two instantiations ------------------------------------------------------------

// lr_dgemm has no batched twin in gemm.h; the double path loops like
// lr_sgemm_batched does.
static void dgemm_batched(int64_t batch, int ta, int tb, int64_t M, int64_t N, int64_t K,
                          double alpha, const double *A, int64_t lda, int64_t sA, const double *B,
                          int64_t ldb, int64_t sB, double beta, double *C, int64_t ldc,
                          int64_t sC) {
  for (int64_t i = 0; i < batch; i++)
    lr_dgemm(ta, tb, M, N, K, alpha, A + i * sA, lda, B + i * sB, ldb, beta, C + i * sC, ldc);
}

// clang-format off
#define LR_F64 0
#define GEMM_BATCHED lr_sgemm_batched
#include "real_begin.inc"
#include "attn_kernels.inc"
#include "real_end.inc"
#undef GEMM_BATCHED
#undef LR_F64

#define LR_F64 1
#define GEMM_BATCHED dgemm_batched
#include "real_begin.inc"
#include "attn_kernels.inc"
#include "real_end.inc"
#undef GEMM_BATCHED
#undef LR_F64
// clang-format on
